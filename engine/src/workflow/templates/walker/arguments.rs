//! Literal arguments of `date`, `number` and `money`, checked (or
//! formatted) at load, so what would fail for every event fails validation.
use handlebars::template::{HelperTemplate, Parameter};

use super::Walker;

impl Walker<'_> {
    /// `number` and `money`: the only hash argument is `locale=`, and the
    /// arguments written literally (decimals, currency code, locale, even a
    /// literal amount) are formatted now, so what would fail for every
    /// event fails validation instead.
    pub(super) fn formatting_arguments(
        &mut self,
        name: &str,
        h: &HelperTemplate,
        at: (Option<usize>, Option<usize>),
    ) {
        use crate::workflow::format;
        if name != "number" && name != "money" {
            return;
        }
        let literal = |p: Option<&Parameter>| match p {
            Some(Parameter::Literal(v)) => Some(v.clone()),
            _ => None,
        };
        let mut locale = None;
        for (key, p) in &h.hash {
            if key != "locale" {
                self.problem(
                    at,
                    format!("{name}: unknown argument {key}= (only locale=\"de-AT\")"),
                );
                continue;
            }
            match literal(Some(p)) {
                Some(serde_json::Value::String(tag)) => match format::check_locale(&tag) {
                    Ok(l) => locale = Some(l),
                    Err(e) => self.problem(at, format!("{name}: {e}")),
                },
                Some(v) => self.problem(at, format!("{name}: locale must be a string, got {v}")),
                None => {}
            }
        }
        let first = literal(h.params.first());
        let second = literal(h.params.get(1));
        let result = if name == "number" {
            let decimals = match &second {
                Some(v) => match format::check_decimals(v) {
                    Ok(d) => Some(d),
                    Err(e) => return self.problem(at, format!("number: {e}")),
                },
                None => None,
            };
            match first {
                Some(v) => format::number(&v, decimals, locale.as_ref()).map(drop),
                None => Ok(()),
            }
        } else {
            let currency = match &second {
                Some(serde_json::Value::String(code)) => match format::check_currency(code) {
                    Ok(_) => code.clone(),
                    Err(e) => return self.problem(at, format!("money: {e}")),
                },
                Some(v) => {
                    return self.problem(
                        at,
                        format!("money: the currency must be a string (an ISO 4217 code), got {v}"),
                    );
                }
                None => return,
            };
            match first {
                Some(v) => format::money(&v, &currency, locale.as_ref()).map(drop),
                None => Ok(()),
            }
        };
        if let Err(e) = result {
            self.problem(at, e.to_string());
        }
    }

    /// Literal arguments a helper would refuse at render time, refused now.
    pub(super) fn literal_arguments(
        &mut self,
        name: &str,
        params: &[Parameter],
        at: (Option<usize>, Option<usize>),
    ) {
        let literal = |i: usize| match params.get(i) {
            Some(Parameter::Literal(v)) => Some(v),
            _ => None,
        };
        if name != "date" {
            return;
        }
        if let Some(v) = literal(1) {
            match v.as_str() {
                Some(pattern) => {
                    if let Err(e) = crate::workflow::helpers::check_date_pattern(pattern) {
                        self.problem(at, format!("date: {e}"));
                    }
                }
                None => self.problem(at, format!("date: the pattern must be a string, got {v}")),
            }
        }
        if let Some(v) = literal(2) {
            match v.as_str() {
                Some(tz) => {
                    if let Err(e) = crate::workflow::helpers::check_time_zone(tz) {
                        self.problem(at, format!("date: {e}"));
                    }
                }
                None => self.problem(at, format!("date: the time zone must be a string, got {v}")),
            }
        }
    }
}
