//! Email addresses as RFC 5322 has them: a mailbox is an optional display
//! name (any text: commas, quotes, UTF-8, which the message builder quotes
//! or encodes) and an addr-spec. Rendered address lists are parsed with
//! `mailparse`, never split by hand.
//!
//! A recipient template shaped `NAME <ADDRESS>` (`{{event.name}}
//! <{{event.email}}>`) is compiled as two templates, so that whatever the
//! name renders to stays the display name: `Lovelace, Ada` is one person,
//! not the address list `Lovelace` and `Ada <…>`.
use std::fmt;

/// One mailbox: display name and address (`local@domain`, ASCII).
///
/// ```
/// let from = herald::workflow::Mailbox { name: Some("Lovelace, Ada".into()), address: "ada@example.com".into() };
/// assert_eq!(from.to_string(), "\"Lovelace, Ada\" <ada@example.com>");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    pub name: Option<String>,
    pub address: String,
}

impl Mailbox {
    /// The domain part of the address.
    ///
    /// ```
    /// let m = herald::workflow::Mailbox { name: None, address: "noreply@club.example".into() };
    /// assert_eq!(m.domain(), "club.example");
    /// ```
    pub fn domain(&self) -> &str {
        self.address.rsplit_once('@').map(|(_, d)| d).unwrap_or("")
    }
}

impl fmt::Display for Mailbox {
    /// `"Lovelace, Ada" <ada@example.com>`: for people and logs, not headers
    /// (the message builder writes headers, with encoded words as needed).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            None => f.write_str(&self.address),
            Some(n) if n.chars().all(|c| c.is_alphanumeric() || c == ' ') => {
                write!(f, "{n} <{}>", self.address)
            }
            Some(n) => write!(
                f,
                "\"{}\" <{}>",
                n.replace('\\', "\\\\").replace('"', "\\\""),
                self.address
            ),
        }
    }
}

impl std::str::FromStr for Mailbox {
    type Err = String;

    /// One mailbox in RFC 5322 syntax: `a@example.org`, `"Ada L." <ada@example.org>`.
    fn from_str(s: &str) -> Result<Mailbox, String> {
        let mut l = list(s)?;
        match l.len() {
            1 => Ok(l.remove(0)),
            n => Err(format!("expected one address, got {n}")),
        }
    }
}

impl serde::Serialize for Mailbox {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Check an addr-spec and return it in the form SMTP sends: trimmed, the
/// domain in ASCII (IDNA), the local part ASCII (Herald does not speak
/// SMTPUTF8).
pub fn address(raw: &str) -> Result<String, String> {
    let a = raw.trim();
    let Some((local, domain)) = a.rsplit_once('@') else {
        return Err("no '@'".into());
    };
    if local.is_empty() || domain.is_empty() {
        return Err("empty local part or domain".into());
    }
    if a.chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, ',' | '<' | '>' | '"' | ';'))
    {
        return Err("contains whitespace, a control character or one of , < > \" ;".into());
    }
    if !local.is_ascii() {
        return Err("the local part is not ASCII (SMTPUTF8 is not supported)".into());
    }
    let domain = match url::Host::parse(domain) {
        Ok(url::Host::Domain(d)) => d,
        Ok(_) => return Err("the domain is an IP address literal".into()),
        Err(e) => return Err(format!("invalid domain: {e}")),
    };
    if !(domain.contains('.') || domain == "localhost")
        || domain.starts_with('.')
        || domain.ends_with('.')
    {
        return Err(format!("invalid domain {domain:?}"));
    }
    Ok(format!("{local}@{domain}"))
}

/// Parse a rendered address list (`a@x.org, "B, C" <b@y.org>, Team: c@z.org;`).
/// Groups are flattened; an empty string is an empty list.
pub fn list(rendered: &str) -> Result<Vec<Mailbox>, String> {
    let parsed = mailparse::addrparse(rendered).map_err(|e| match e {
        mailparse::MailParseError::Generic(m) => m.to_string(),
        other => other.to_string(),
    })?;
    let mut out = Vec::new();
    for a in parsed.iter() {
        let singles: Vec<&mailparse::SingleInfo> = match a {
            mailparse::MailAddr::Single(s) => vec![s],
            mailparse::MailAddr::Group(g) => g.addrs.iter().collect(),
        };
        for s in singles {
            let address = address(&s.addr).map_err(|e| format!("{:?}: {e}", s.addr))?;
            out.push(Mailbox {
                name: s.display_name.clone().filter(|n| !n.trim().is_empty()),
                address,
            });
        }
    }
    Ok(out)
}

/// The parts of a `NAME <ADDRESS>` template: the name's template (without
/// surrounding quotes, if the author quoted it) and the address's. None when
/// the template is not of that shape (a bare address, or a list).
pub fn split_mailbox_template(src: &str) -> Option<(String, String)> {
    let t = src.trim();
    if !t.ends_with('>') {
        return None;
    }
    // The last '<' outside a {{…}} tag opens the address.
    let bytes = t.as_bytes();
    let (mut depth, mut open) = (0usize, None);
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i..].starts_with(b"{{") {
            depth += 1;
            i += 2;
            continue;
        }
        if bytes[i..].starts_with(b"}}") {
            depth = depth.saturating_sub(1);
            i += 2;
            continue;
        }
        if bytes[i] == b'<' && depth == 0 {
            open = Some(i);
        }
        i += 1;
    }
    let open = open?;
    let addr = t[open + 1..t.len() - 1].trim();
    if addr.is_empty() || addr.contains('<') {
        return None;
    }
    let mut name = t[..open].trim();
    if name.len() >= 2 && name.starts_with('"') && name.ends_with('"') {
        name = &name[1..name.len() - 1];
    }
    Some((name.to_string(), addr.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(address(" a@example.com ").unwrap(), "a@example.com");
        assert_eq!(
            address("a@Bücher.example").unwrap(),
            "a@xn--bcher-kva.example"
        );
        assert_eq!(address("root@localhost").unwrap(), "root@localhost");
        for bad in [
            "a",
            "@x.org",
            "a@",
            "a b@x.org",
            "a@x",
            "ü@x.org",
            "a@x.org,b@y.org",
            "a@[127.0.0.1]",
        ] {
            assert!(address(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn lists_with_commas_quotes_and_groups() {
        let l = list("\"Lovelace, Ada\" <ada@example.com>, b@example.org, Team: c@example.net;")
            .unwrap();
        assert_eq!(l.len(), 3);
        assert_eq!(l[0].name.as_deref(), Some("Lovelace, Ada"));
        assert_eq!(l[0].address, "ada@example.com");
        assert_eq!(l[2].address, "c@example.net");
        assert!(list("").unwrap().is_empty());
        assert!(list("a@example.com,").unwrap().len() == 1);
        assert!(list("Lovelace, Ada <ada@example.com>").is_err());
    }

    #[test]
    fn mailbox_templates_are_split_outside_tags() {
        assert_eq!(
            split_mailbox_template("{{event.name}} <{{event.email}}>"),
            Some(("{{event.name}}".into(), "{{event.email}}".into()))
        );
        assert_eq!(
            split_mailbox_template("\"{{event.name}}\" <{{event.email}}>"),
            Some(("{{event.name}}".into(), "{{event.email}}".into()))
        );
        assert_eq!(
            split_mailbox_template("Club <noreply@club.example>"),
            Some(("Club".into(), "noreply@club.example".into()))
        );
        assert_eq!(split_mailbox_template("{{event.email}}"), None);
        assert_eq!(
            split_mailbox_template("{{#each event.owners}}{{this}},{{/each}}"),
            None
        );
        // A '<' inside a tag (a comparison helper) is not the address.
        assert_eq!(split_mailbox_template("{{#if (lt a b)}}x{{/if}}"), None);
    }

    #[test]
    fn display() {
        let m = Mailbox {
            name: Some("Lovelace, Ada".into()),
            address: "ada@example.com".into(),
        };
        assert_eq!(m.to_string(), "\"Lovelace, Ada\" <ada@example.com>");
    }
}
