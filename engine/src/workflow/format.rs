//! Numbers and money for email authors: `{{number value 2}}` and
//! `{{money amount "EUR"}}`, grouped and punctuated for the workflow's
//! locale (CLDR data through ICU4X), computed in exact decimals.
//!
//! What a payload may hold, and why:
//! - `number` takes integers, decimal strings (`"1234.50"`) and JSON
//!   floats; a float is taken at its shortest decimal spelling (`1.005` is
//!   1.005, not 1.00499999…), so rounding it does what its author expects.
//! - `money` takes integer minor units (`1250` EUR is 12.50 EUR, as payment
//!   APIs send them) or a decimal string of major units (`"12.50"`); never
//!   a JSON float (binary floats cannot hold most cents), and never more
//!   decimal places than the currency has (money is not rounded silently).
//!
//! Every function here returns a message instead of panicking: their
//! inputs come from payloads.
use fixed_decimal::{Decimal, Sign, SignedRoundingMode, UnsignedRoundingMode};
use icu_decimal::options::DecimalFormatterOptions;
use icu_decimal::{DecimalFormatter, DecimalFormatterPreferences};
use icu_locale_core::Locale;
use serde_json::Value;

/// Most decimal places `number` writes (its DECIMALS argument, or a value's own).
pub const MAX_DECIMALS: i16 = 20;
/// Most integer digits a formatted value may have: far beyond any amount,
/// small enough that `"1e30000"` cannot become a 30 000-digit string.
const MAX_INTEGER_DIGITS: i16 = 30;
/// Longest decimal string accepted from a payload.
const MAX_TEXT: usize = 64;

/// A value a formatting helper cannot format, from the payload or the
/// template: a typed render error (the email is dead-lettered with it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{helper}: {message}")]
pub struct ValueError {
    pub helper: &'static str,
    pub message: String,
}

fn fail<T>(helper: &'static str, message: impl Into<String>) -> Result<T, ValueError> {
    Err(ValueError {
        helper,
        message: message.into(),
    })
}

/// `number`'s DECIMALS argument: an integer from 0 to [`MAX_DECIMALS`].
pub fn check_decimals(v: &Value) -> Result<i16, String> {
    match v.as_u64() {
        Some(n) if n <= MAX_DECIMALS as u64 => Ok(n as i16),
        _ => Err(format!(
            "decimals must be an integer from 0 to {MAX_DECIMALS}, got {v}"
        )),
    }
}

/// An ISO 4217 code with minor units (`EUR`: 2, `JPY`: 0, `KWD`: 3), in
/// any case (payment APIs often send `eur`); returns the code and its
/// number of minor-unit digits.
pub fn check_currency(code: &str) -> Result<(&'static str, u16), String> {
    let upper = code.trim().to_ascii_uppercase();
    let Some(c) = iso_currency::Currency::from_code(&upper) else {
        return Err(format!(
            "unknown currency {code:?} (an ISO 4217 code: EUR, USD, JPY, …)"
        ));
    };
    match c.exponent() {
        Some(e) => Ok((c.code(), e)),
        None => Err(format!(
            "{} ({}) has no minor unit: it cannot be formatted as money",
            c.code(),
            c.name()
        )),
    }
}

/// A BCP 47 locale tag (`de`, `de-AT`, `en_IN`). Any well-formed tag is
/// accepted: one without its own data falls back (`de-XX` → `de` → root).
pub fn check_locale(tag: &str) -> Result<Locale, String> {
    Locale::try_from_str(&tag.trim().replace('_', "-"))
        .map_err(|_| format!("invalid locale {tag:?} (a language tag: en, de-AT, fr-CA)"))
}

/// The decimal a payload value stands for. Integers and decimal strings
/// are exact; a float is read at its shortest round-trip spelling.
fn decimal(helper: &'static str, v: &Value) -> Result<Decimal, ValueError> {
    let text = match v {
        // serde_json spells big floats `1e+300`; fixed_decimal takes `1e300`.
        Value::Number(n) => n.to_string().replace("e+", "e"),
        Value::String(s) if s.len() <= MAX_TEXT => s.trim().to_string(),
        Value::String(s) => {
            return fail(
                helper,
                format!("{} characters is too long for a number", s.len()),
            );
        }
        other => return fail(helper, format!("cannot format {other} as a number")),
    };
    let mut d = Decimal::try_from_str(&text)
        .or_else(|_| fail(helper, format!("{text:?} is not a decimal number")))?;
    if d.absolute.nonzero_magnitude_start() >= MAX_INTEGER_DIGITS {
        return fail(helper, format!("{text} is too large to format"));
    }
    // "+5" prints as 5; a zero has no sign.
    if d.sign == Sign::Positive || d.absolute.is_zero() {
        d.sign = Sign::None;
    }
    Ok(d)
}

fn formatter(
    helper: &'static str,
    locale: Option<&Locale>,
) -> Result<DecimalFormatter, ValueError> {
    let prefs = match locale {
        Some(l) => DecimalFormatterPreferences::from(l),
        None => DecimalFormatterPreferences::default(),
    };
    // Compiled data covers every locale (falling back to the root locale),
    // so this does not fail in practice; if it did, one email would.
    DecimalFormatter::try_new(prefs, DecimalFormatterOptions::default())
        .or_else(|e| fail(helper, format!("no number format data: {e}")))
}

/// `{{number value}}`: the value grouped for the locale, with its own
/// decimals; `{{number value 2}}`: rounded half away from zero to exactly
/// two decimals (`2.5` → `3`, `1.005` → `1.01`).
pub fn number(
    value: &Value,
    decimals: Option<i16>,
    locale: Option<&Locale>,
) -> Result<String, ValueError> {
    let mut d = decimal("number", value)?;
    match decimals {
        Some(n) => {
            d.round_with_mode(
                -n,
                SignedRoundingMode::Unsigned(UnsignedRoundingMode::HalfExpand),
            );
            d.pad_end(-n);
        }
        None if d.absolute.nonzero_magnitude_end() < -MAX_DECIMALS => {
            return fail(
                "number",
                format!(
                    "{value} has more than {MAX_DECIMALS} decimal places: give the number of decimals ({{{{number value 2}}}})"
                ),
            );
        }
        None => {}
    }
    if d.absolute.is_zero() {
        d.sign = Sign::None;
    }
    Ok(formatter("number", locale)?.format_to_string(&d))
}

/// `{{money amount "EUR"}}`: the amount with the currency's minor units,
/// grouped for the locale, followed by the ISO code (`1,234.50 EUR`). The
/// code, not a symbol: `$` is the dollar of a dozen countries.
pub fn money(
    amount: &Value,
    currency: &str,
    locale: Option<&Locale>,
) -> Result<String, ValueError> {
    let (code, exponent) = check_currency(currency).or_else(|e| fail("money", e))?;
    let places = exponent as i16;
    let mut d = match amount {
        Value::Number(n) if n.is_i64() || n.is_u64() => {
            let mut d = decimal("money", amount)?;
            d.multiply_pow10(-places);
            d
        }
        Value::Number(n) => {
            return fail(
                "money",
                format!(
                    "{n} is a floating-point number: give integer minor units ({}) or a decimal string (\"{n}\")",
                    minor_units_hint(n, places)
                ),
            );
        }
        Value::String(_) => {
            let d = decimal("money", amount)?;
            if d.absolute.nonzero_magnitude_end() < -places {
                return fail(
                    "money",
                    format!(
                        "{amount} has more decimal places than {code}'s {places}: round it before it is sent"
                    ),
                );
            }
            d
        }
        other => return fail("money", format!("cannot format {other} as an amount")),
    };
    d.round_with_mode(
        -places,
        SignedRoundingMode::Unsigned(UnsignedRoundingMode::Trunc),
    );
    d.pad_end(-places);
    if d.absolute.is_zero() {
        d.sign = Sign::None;
    }
    Ok(format!(
        "{} {code}",
        formatter("money", locale)?.format_to_string(&d)
    ))
}

/// What a float would be in minor units, for the error message.
fn minor_units_hint(n: &serde_json::Number, places: i16) -> String {
    match Decimal::try_from_str(&n.to_string().replace("e+", "e")) {
        Ok(mut d) => {
            d.multiply_pow10(places);
            d.round_with_mode(
                0,
                SignedRoundingMode::Unsigned(UnsignedRoundingMode::HalfExpand),
            );
            d.to_string()
        }
        Err(_) => "an integer".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn loc(tag: &str) -> Locale {
        check_locale(tag).unwrap()
    }

    #[test]
    fn numbers_are_grouped_for_the_locale() {
        assert_eq!(number(&json!(1234567), None, None).unwrap(), "1,234,567");
        assert_eq!(number(&json!(-1234.5), None, None).unwrap(), "-1,234.5");
        assert_eq!(
            number(&json!("1234567.891"), Some(2), Some(&loc("de"))).unwrap(),
            "1.234.567,89"
        );
        assert_eq!(
            number(&json!(1234567), None, Some(&loc("en-IN"))).unwrap(),
            "12,34,567"
        );
        assert_eq!(
            number(&json!(1234567), None, Some(&loc("fr"))).unwrap(),
            "1\u{202f}234\u{202f}567"
        );
        assert_eq!(
            number(&json!(1234.5), None, Some(&loc("de_CH"))).unwrap(),
            "1'234.5"
        );
    }

    #[test]
    fn decimals_round_half_away_from_zero_without_float_surprises() {
        assert_eq!(number(&json!(2.5), Some(0), None).unwrap(), "3");
        assert_eq!(number(&json!(-2.5), Some(0), None).unwrap(), "-3");
        assert_eq!(number(&json!(1.005), Some(2), None).unwrap(), "1.01");
        assert_eq!(number(&json!(0.1 + 0.2), Some(2), None).unwrap(), "0.30");
        assert_eq!(number(&json!(7), Some(2), None).unwrap(), "7.00");
        assert_eq!(number(&json!("-0.001"), Some(2), None).unwrap(), "0.00");
        assert_eq!(number(&json!("+5"), None, None).unwrap(), "5");
    }

    #[test]
    fn bad_numbers_are_errors() {
        for (v, needle) in [
            (json!("abc"), "not a decimal number"),
            (json!(null), "cannot format null"),
            (json!(true), "cannot format true"),
            (json!({"a": 1}), "cannot format"),
            (json!("1e400"), "too large"),
            (json!(1e300), "too large"),
            (json!("1e-30"), "decimal places"),
            (json!("NaN"), "not a decimal number"),
            (json!("9".repeat(100)), "too long"),
        ] {
            let e = number(&v, None, None).unwrap_err();
            assert_eq!(e.helper, "number");
            assert!(e.message.contains(needle), "{v}: {e}");
        }
        assert!(check_decimals(&json!(21)).is_err());
        assert!(check_decimals(&json!(-1)).is_err());
        assert!(check_decimals(&json!("2")).is_err());
        assert_eq!(check_decimals(&json!(2)), Ok(2));
    }

    #[test]
    fn money_uses_the_currency_minor_units() {
        assert_eq!(money(&json!(123450), "EUR", None).unwrap(), "1,234.50 EUR");
        assert_eq!(money(&json!(1234), "JPY", None).unwrap(), "1,234 JPY");
        assert_eq!(money(&json!(1234), "KWD", None).unwrap(), "1.234 KWD");
        assert_eq!(money(&json!(5), "usd", None).unwrap(), "0.05 USD");
        assert_eq!(money(&json!(-5), "EUR", None).unwrap(), "-0.05 EUR");
        assert_eq!(money(&json!("12.5"), "EUR", None).unwrap(), "12.50 EUR");
        assert_eq!(money(&json!("12.500"), "EUR", None).unwrap(), "12.50 EUR");
        assert_eq!(money(&json!("1234"), "JPY", None).unwrap(), "1,234 JPY");
        assert_eq!(
            money(&json!(123450), "EUR", Some(&loc("de-DE"))).unwrap(),
            "1.234,50 EUR"
        );
        assert_eq!(money(&json!(0), "EUR", None).unwrap(), "0.00 EUR");
    }

    #[test]
    fn bad_money_is_an_error_not_a_rounding() {
        for (amount, currency, needle) in [
            (json!(12.5), "EUR", "floating-point"),
            (json!("12.345"), "EUR", "more decimal places than EUR's 2"),
            (json!("1.5"), "JPY", "JPY's 0"),
            (json!(1), "EURO", "unknown currency"),
            (json!(1), "XAU", "no minor unit"),
            (json!("ten"), "EUR", "not a decimal number"),
            (json!(null), "EUR", "cannot format null"),
        ] {
            let e = money(&amount, currency, None).unwrap_err();
            assert_eq!(e.helper, "money");
            assert!(e.message.contains(needle), "{amount} {currency}: {e}");
        }
        assert!(
            money(&json!(12.5), "EUR", None)
                .unwrap_err()
                .message
                .contains("(1250)")
        );
    }

    #[test]
    fn locales_are_checked() {
        assert!(check_locale("de-AT").is_ok());
        assert!(check_locale("en_IN").is_ok());
        assert!(check_locale("not a locale").is_err());
        assert_eq!(check_currency("kwd"), Ok(("KWD", 3)));
    }
}
