//! Handlebars helpers for email authors: `upper`, `lower`, `urlencode`, `json`,
//! `default`, `pluralize`, `date`, `number`, `money`.
use handlebars::{
    Context, Handlebars, Helper, HelperResult, Output, RenderContext, RenderError,
    RenderErrorReason, handlebars_helper,
};

use super::format;

handlebars_helper!(upper: |s: str| s.to_uppercase());
handlebars_helper!(lower: |s: str| s.to_lowercase());
handlebars_helper!(urlencode: |s: str| {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
});
handlebars_helper!(json: |v: Json| v.to_string());
// {{pluralize count "code" "codes"}}
handlebars_helper!(pluralize: |n: i64, one: str, many: str| {
    if n == 1 { one.to_string() } else { many.to_string() }
});

/// `{{default value "fallback"}}`: the fallback when the value is missing,
/// null or empty (strict mode still reports misspelt paths elsewhere).
fn default_helper(
    h: &Helper,
    _: &Handlebars,
    _: &Context,
    _: &mut RenderContext,
    out: &mut dyn Output,
) -> HelperResult {
    let value = h
        .param(0)
        .map(|p| p.value().clone())
        .unwrap_or(serde_json::Value::Null);
    let fallback = h
        .param(1)
        .map(|p| render_plain(p.value()))
        .ok_or_else(|| RenderErrorReason::ParamNotFoundForIndex("default", 1))?;
    let empty =
        matches!(&value, serde_json::Value::Null) || value.as_str().is_some_and(str::is_empty);
    out.write(&if empty {
        fallback
    } else {
        render_plain(&value)
    })?;
    Ok(())
}

fn render_plain(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// A strftime pattern chrono can format: chrono panics (at `to_string`)
/// on an unknown specifier, so every pattern is parsed first.
pub fn check_date_pattern(pattern: &str) -> Result<(), String> {
    use chrono::format::{Item, StrftimeItems};
    if pattern.len() > 256 {
        return Err("the pattern is longer than 256 characters".into());
    }
    match StrftimeItems::new(pattern).find(|i| matches!(i, Item::Error)) {
        Some(_) => Err(format!(
            "invalid date pattern {pattern:?} (strftime: %Y-%m-%d, %e %B %Y, %H:%M, …)"
        )),
        None => Ok(()),
    }
}

/// An IANA time zone name chrono-tz knows (`Europe/Paris`, `UTC`).
pub fn check_time_zone(name: &str) -> Result<chrono_tz::Tz, String> {
    name.parse().map_err(|_| {
        format!("unknown time zone {name:?} (IANA names: Europe/Paris, America/New_York, UTC)")
    })
}

/// `{{date value "%e %B %Y" "Europe/Paris"}}`: format an RFC 3339 timestamp
/// (or unix seconds) with a strftime pattern in a time zone (default UTC).
/// Literal patterns and zones are checked when the workflow loads; these
/// checks cover values that come from the payload.
fn date_helper(
    h: &Helper,
    _: &Handlebars,
    _: &Context,
    _: &mut RenderContext,
    out: &mut dyn Output,
) -> HelperResult {
    use std::fmt::Write as _;
    let value = h
        .param(0)
        .map(|p| p.value().clone())
        .ok_or_else(|| RenderErrorReason::ParamNotFoundForIndex("date", 0))?;
    let fmt = match h.param(1).map(|p| p.value()) {
        None => "%Y-%m-%d %H:%M",
        Some(serde_json::Value::String(s)) => s.as_str(),
        Some(other) => {
            return Err(RenderErrorReason::Other(format!(
                "date: the pattern must be a string, got {other}"
            ))
            .into());
        }
    };
    check_date_pattern(fmt).map_err(|e| RenderErrorReason::Other(format!("date: {e}")))?;
    let tz = match h.param(2).map(|p| p.value()) {
        None => chrono_tz::UTC,
        Some(serde_json::Value::String(s)) => {
            check_time_zone(s).map_err(|e| RenderErrorReason::Other(format!("date: {e}")))?
        }
        Some(other) => {
            return Err(RenderErrorReason::Other(format!(
                "date: the time zone must be a string, got {other}"
            ))
            .into());
        }
    };
    let dt = match &value {
        serde_json::Value::String(s) => chrono::DateTime::parse_from_rfc3339(s)
            .map(|d| d.with_timezone(&chrono::Utc))
            .map_err(|e| RenderErrorReason::Other(format!("date: {s:?} is not RFC 3339: {e}")))?,
        serde_json::Value::Number(n) => n
            .as_i64()
            .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
            .ok_or_else(|| RenderErrorReason::Other(format!("date: {n} is out of range")))?,
        other => {
            return Err(RenderErrorReason::Other(format!("date: cannot format {other}")).into());
        }
    };
    // `write!` reports a formatting failure as an error; `to_string` would panic.
    let mut text = String::new();
    write!(text, "{}", dt.with_timezone(&tz).format(fmt))
        .map_err(|_| RenderErrorReason::Other(format!("date: cannot format with {fmt:?}")))?;
    out.write(&text)?;
    Ok(())
}

/// The locale `number` and `money` format for: their `locale=` argument,
/// else the workflow's (`meta.locale`, rendered from its `locale` key),
/// else none (the root locale: `1,234.5`). A tag in `meta.locale` that is
/// not well formed falls back as its templates do; a `locale=` argument
/// that is not is an error.
fn locale_of(
    helper: &'static str,
    h: &Helper,
    ctx: &Context,
) -> Result<Option<icu_locale_core::Locale>, RenderError> {
    match h.hash_get("locale").map(|p| p.value()) {
        Some(serde_json::Value::String(tag)) => format::check_locale(tag)
            .map(Some)
            .map_err(|message| value_error(helper, message)),
        Some(other) => Err(value_error(
            helper,
            format!("locale must be a string, got {other}"),
        )),
        None => Ok(ctx
            .data()
            .pointer("/meta/locale")
            .and_then(serde_json::Value::as_str)
            .and_then(|tag| format::check_locale(tag).ok())),
    }
}

/// A formatting helper's refusal, kept typed through Handlebars so the
/// renderer reports it as [`super::render::RenderError::Value`].
fn value_error(helper: &'static str, message: String) -> RenderError {
    RenderErrorReason::NestedError(Box::new(format::ValueError { helper, message })).into()
}

fn param<'a>(
    h: &'a Helper,
    helper: &'static str,
    i: usize,
) -> Result<&'a serde_json::Value, RenderError> {
    h.param(i)
        .map(|p| p.value())
        .ok_or_else(|| RenderErrorReason::ParamNotFoundForIndex(helper, i).into())
}

/// `{{number value}}`, `{{number value 2}}`, `{{number value 2 locale="de"}}`.
fn number_helper(
    h: &Helper,
    _: &Handlebars,
    ctx: &Context,
    _: &mut RenderContext,
    out: &mut dyn Output,
) -> HelperResult {
    let value = param(h, "number", 0)?;
    let decimals = match h.param(1) {
        Some(p) => Some(format::check_decimals(p.value()).map_err(|m| value_error("number", m))?),
        None => None,
    };
    let locale = locale_of("number", h, ctx)?;
    let text = format::number(value, decimals, locale.as_ref())
        .map_err(|e| value_error(e.helper, e.message))?;
    out.write(&text)?;
    Ok(())
}

/// `{{money amount "EUR"}}`, `{{money amount event.currency locale="de"}}`.
fn money_helper(
    h: &Helper,
    _: &Handlebars,
    ctx: &Context,
    _: &mut RenderContext,
    out: &mut dyn Output,
) -> HelperResult {
    let amount = param(h, "money", 0)?;
    let currency = match param(h, "money", 1)? {
        serde_json::Value::String(s) => s.as_str(),
        other => {
            return Err(value_error(
                "money",
                format!("the currency must be a string (an ISO 4217 code), got {other}"),
            ));
        }
    };
    let locale = locale_of("money", h, ctx)?;
    let text = format::money(amount, currency, locale.as_ref())
        .map_err(|e| value_error(e.helper, e.message))?;
    out.write(&text)?;
    Ok(())
}

pub fn register(hb: &mut Handlebars) {
    hb.register_helper("number", Box::new(number_helper));
    hb.register_helper("money", Box::new(money_helper));
    hb.register_helper("upper", Box::new(upper));
    hb.register_helper("lower", Box::new(lower));
    hb.register_helper("urlencode", Box::new(urlencode));
    hb.register_helper("json", Box::new(json));
    hb.register_helper("pluralize", Box::new(pluralize));
    hb.register_helper("default", Box::new(default_helper));
    hb.register_helper("date", Box::new(date_helper));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(tpl: &str, ctx: serde_json::Value) -> Result<String, String> {
        let mut hb = Handlebars::new();
        hb.set_strict_mode(true);
        hb.register_escape_fn(handlebars::no_escape);
        register(&mut hb);
        hb.render_template(tpl, &ctx).map_err(|e| e.to_string())
    }

    #[test]
    fn helpers_render() {
        let ctx = json!({"name": "Ana", "n": 2, "one": 1, "q": "a b&c", "obj": {"k": [1]},
                         "at": "2026-03-01T12:30:00Z", "empty": "", "null": null});
        assert_eq!(
            render("{{upper name}} {{lower name}}", ctx.clone()).unwrap(),
            "ANA ana"
        );
        assert_eq!(render("{{urlencode q}}", ctx.clone()).unwrap(), "a%20b%26c");
        assert_eq!(render("{{json obj}}", ctx.clone()).unwrap(), r#"{"k":[1]}"#);
        assert_eq!(
            render("{{n}} {{pluralize n \"code\" \"codes\"}}", ctx.clone()).unwrap(),
            "2 codes"
        );
        assert_eq!(
            render("{{pluralize one \"code\" \"codes\"}}", ctx.clone()).unwrap(),
            "code"
        );
        assert_eq!(
            render(
                "{{date at \"%d %B %Y %H:%M\" \"Europe/Paris\"}}",
                ctx.clone()
            )
            .unwrap(),
            "01 March 2026 13:30"
        );
        assert!(
            render("{{date at \"%Y\" \"Mars/Olympus\"}}", ctx.clone())
                .unwrap_err()
                .contains("unknown time zone")
        );
        // A pattern from the payload that chrono cannot format is an error, not a panic.
        let bad = json!({"at": "2026-03-01T12:30:00Z", "p": "%Q", "z": 5});
        assert!(
            render("{{date at p}}", bad.clone())
                .unwrap_err()
                .contains("invalid date pattern")
        );
        assert!(
            render("{{date at \"%Y\" z}}", bad)
                .unwrap_err()
                .contains("must be a string")
        );
        assert_eq!(
            render(
                "{{default empty \"x\"}}|{{default null \"y\"}}|{{default name \"z\"}}",
                ctx.clone()
            )
            .unwrap(),
            "x|y|Ana"
        );
    }

    #[test]
    fn default_covers_missing_fields_in_strict_mode() {
        assert_eq!(
            render("{{default actor \"the system\"}}", json!({})).unwrap(),
            "the system"
        );
        assert_eq!(
            render(
                "{{default event.actor \"the system\"}}",
                json!({"event": {}})
            )
            .unwrap(),
            "the system"
        );
    }
}
