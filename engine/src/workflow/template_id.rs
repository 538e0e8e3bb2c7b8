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
        }
    }
}
