//! Names of compiled templates: one type instead of format strings built in
//! several places. Its `Display` is the registry key; `field()` the name a
//! user sees in errors (`email.to`, `email.headers.X-Campaign`).
use std::fmt;

/// Which part of a workflow's email a template renders.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    From(Part),
    /// `to`, `cc`, `bcc` or `reply_to`, entry `n` of the list.
    Recipients(RecipientKind, usize, Part),
    Subject,
    Text,
    Html,
    Header(String),
    /// A locale's variant of the text or HTML body (`welcome.txt.de.hbs`).
    LocalizedText(String),
    LocalizedHtml(String),
    /// The templates of the workflow's settings.
    DigestKey,
    SendAt,
    QuietHoursTz,
    Locale,
}

/// Which part of an address template: all of it (an address or a list),
/// or the name or address of a `NAME <ADDRESS>` template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Part {
    Whole,
    Name,
    Address,
}

impl Part {
    fn suffix(self) -> &'static str {
        match self {
            Part::Whole => "",
            Part::Name => ":name",
            Part::Address => ":address",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RecipientKind {
    To,
    Cc,
    Bcc,
    ReplyTo,
}

impl RecipientKind {
    pub const ALL: [RecipientKind; 4] = [
        RecipientKind::To,
        RecipientKind::Cc,
        RecipientKind::Bcc,
        RecipientKind::ReplyTo,
    ];

    pub fn key(self) -> &'static str {
        match self {
            RecipientKind::To => "to",
            RecipientKind::Cc => "cc",
            RecipientKind::Bcc => "bcc",
            RecipientKind::ReplyTo => "reply_to",
        }
    }
}

/// One compiled template of one workflow.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TemplateId {
    pub workflow: String,
    pub field: Field,
}

impl TemplateId {
    pub fn new(workflow: &str, field: Field) -> TemplateId {
        TemplateId {
            workflow: workflow.to_string(),
            field,
        }
    }

    /// The YAML field it comes from, as users write it (`email.to`).
    pub fn field_name(&self) -> String {
        match &self.field {
            Field::From(_) => "email.from".into(),
            Field::Recipients(k, _, _) => format!("email.{}", k.key()),
            Field::Subject => "email.subject".into(),
            Field::Text => "email.text".into(),
            Field::Html => "email.html".into(),
            Field::Header(h) => format!("email.headers.{h}"),
            Field::LocalizedText(l) => format!("email.text_file ({l})"),
            Field::LocalizedHtml(l) => format!("email.html_file ({l})"),
            Field::DigestKey => "digest.key".into(),
            Field::SendAt => "send_at".into(),
            Field::QuietHoursTz => "quiet_hours.tz".into(),
            Field::Locale => "locale".into(),
        }
    }
}

impl fmt::Display for TemplateId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.field {
            Field::From(p) => write!(f, "{}:from{}", self.workflow, p.suffix()),
            Field::Recipients(k, i, p) => {
                write!(f, "{}:{}:{i}{}", self.workflow, k.key(), p.suffix())
            }
            Field::Subject => write!(f, "{}:subject", self.workflow),
            Field::Text => write!(f, "{}:text", self.workflow),
            Field::Html => write!(f, "{}:html", self.workflow),
            Field::Header(h) => write!(f, "{}:header:{h}", self.workflow),
            Field::LocalizedText(l) => write!(f, "{}:text:{l}", self.workflow),
            Field::LocalizedHtml(l) => write!(f, "{}:html:{l}", self.workflow),
            Field::DigestKey => write!(f, "{}:digest-key", self.workflow),
            Field::SendAt => write!(f, "{}:send-at", self.workflow),
            Field::QuietHoursTz => write!(f, "{}:quiet-tz", self.workflow),
            Field::Locale => write!(f, "{}:locale", self.workflow),
        }
    }
}
