//! NATS subject rules: what Herald accepts as an event subject (publishable,
//! no wildcards) and as a workflow filter (wildcards allowed).
//!
//! ```no_run
//! use herald::subject::{matches, validate_event_subject, validate_filter};
//! assert!(validate_event_subject("events.invoice.paid").is_ok());
//! assert!(validate_filter("events.invoice.>").is_ok());
//! assert!(matches("events.invoice.>", "events.invoice.paid"));
//! ```

/// Every Herald event subject lives under this prefix; the stream captures `events.>`.
///
/// ```
/// let subject = format!("{}invoice.paid", herald::subject::EVENTS_PREFIX);
/// assert_eq!(subject, "events.invoice.paid");
/// assert!(herald::subject::validate_event_subject(&subject).is_ok());
/// ```
pub const EVENTS_PREFIX: &str = "events.";

/// Why a subject was refused; the message names the offending part.
///
/// ```
/// let err = herald::subject::validate_event_subject("events.a..b").unwrap_err();
/// assert!(err.0.contains("empty token at position 3"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SubjectError(pub String);

fn check_tokens(subject: &str, wildcards: bool) -> Result<(), SubjectError> {
    if subject.is_empty() {
        return Err(SubjectError("subject is empty".into()));
    }
    if let Some(c) = subject
        .chars()
        .find(|c| c.is_whitespace() || c.is_control())
    {
        return Err(SubjectError(format!(
            "subject contains a whitespace or control character ({c:?})"
        )));
    }
    let tokens: Vec<&str> = subject.split('.').collect();
    for (i, token) in tokens.iter().enumerate() {
        if token.is_empty() {
            return Err(SubjectError(format!(
                "subject has an empty token at position {} (leading, trailing or double dot)",
                i + 1
            )));
        }
        let is_wild = *token == "*" || *token == ">";
        if token.contains(['*', '>']) && !is_wild {
            return Err(SubjectError(format!(
                "token {token:?} mixes a wildcard with other characters"
            )));
        }
        if is_wild && !wildcards {
            return Err(SubjectError(format!(
                "wildcard {token:?} is not allowed in an event subject"
            )));
        }
        if *token == ">" && i + 1 != tokens.len() {
            return Err(SubjectError("'>' must be the last token".into()));
        }
    }
    Ok(())
}

/// A subject an event can be published on: `events.` followed by at least one
/// token, no wildcards, no whitespace.
///
/// ```
/// use herald::subject::validate_event_subject;
/// assert!(validate_event_subject("events.contract.signed").is_ok());
/// assert!(validate_event_subject("orders.created").is_err()); // not under events.
/// assert!(validate_event_subject("events.*").is_err()); // wildcards are for filters
/// ```
pub fn validate_event_subject(subject: &str) -> Result<(), SubjectError> {
    check_tokens(subject, false)?;
    if !subject.starts_with(EVENTS_PREFIX) {
        return Err(SubjectError(format!(
            "subject must start with {EVENTS_PREFIX:?}"
        )));
    }
    Ok(())
}

/// A filter a workflow consumes: like an event subject, wildcards allowed.
///
/// ```
/// use herald::subject::validate_filter;
/// assert!(validate_filter("events.vault.>").is_ok());
/// assert!(validate_filter("events.*.created").is_ok());
/// assert!(validate_filter("events.>.created").is_err()); // '>' must come last
/// ```
pub fn validate_filter(filter: &str) -> Result<(), SubjectError> {
    check_tokens(filter, true)?;
    if !filter.starts_with(EVENTS_PREFIX) {
        return Err(SubjectError(format!(
            "filter must be under {EVENTS_PREFIX:?} (the stream only holds events.>)"
        )));
    }
    Ok(())
}

/// Does `subject` match NATS filter `filter` (`*` one token, `>` the rest)?
///
/// ```
/// use herald::subject::matches;
/// assert!(matches("events.vault.>", "events.vault.created"));
/// assert!(matches("events.*.created", "events.user.created"));
/// assert!(!matches("events.vault.>", "events.vault"));
/// ```
pub fn matches(filter: &str, subject: &str) -> bool {
    let mut f = filter.split('.');
    let mut s = subject.split('.');
    loop {
        match (f.next(), s.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_subjects() {
        assert!(validate_event_subject("events.contract.signed").is_ok());
        assert!(validate_event_subject("events.x").is_ok());
        assert!(validate_event_subject("events.").is_err());
        assert!(validate_event_subject("events").is_err());
        assert!(validate_event_subject("orders.created").is_err());
        assert!(validate_event_subject("events.a..b").is_err());
        assert!(validate_event_subject("events.a b").is_err());
        assert!(validate_event_subject("events.*").is_err());
        assert!(validate_event_subject("events.>").is_err());
    }

    #[test]
    fn filters() {
        assert!(validate_filter("events.vault.>").is_ok());
        assert!(validate_filter("events.*.created").is_ok());
        assert!(validate_filter("events.>.x").is_err());
        assert!(validate_filter("events.a*").is_err());
        assert!(validate_filter("other.>").is_err());
    }

    #[test]
    fn matching() {
        assert!(matches("events.vault.>", "events.vault.created"));
        assert!(matches("events.*.created", "events.vault.created"));
        assert!(!matches("events.vault.>", "events.vault"));
        assert!(matches("events.a", "events.a"));
        assert!(!matches("events.a", "events.a.b"));
    }
}
