//! A loaded workflow's compiled parts: guards, address templates, the email's
//! template ids, delivery settings, and the compiled templates of one set.
use std::collections::BTreeMap;

use handlebars::Handlebars;

use super::TemplateId;

/// A guard, checked against the template context.
#[derive(Debug, Clone)]
pub(crate) enum Guard {
    Exists(Vec<String>, bool),
    Equals(Vec<String>, serde_json::Value),
    NotEquals(Vec<String>, serde_json::Value),
    In(Vec<String>, Vec<serde_json::Value>),
}

/// How an address field renders.
#[derive(Debug, Clone)]
pub(crate) enum AddressTemplate {
    /// `NAME <ADDRESS>`: the name (if any) and the address, rendered apart.
    Mailbox {
        name: Option<TemplateId>,
        address: TemplateId,
    },
    /// Anything else: rendered, then parsed as an RFC 5322 address list.
    List(TemplateId),
}

/// The compiled templates of a workflow's email, by id.
#[derive(Debug, Clone)]
pub(crate) struct CompiledEmail {
    pub(crate) from: AddressTemplate,
    pub(crate) to: Vec<AddressTemplate>,
    pub(crate) cc: Vec<AddressTemplate>,
    pub(crate) bcc: Vec<AddressTemplate>,
    pub(crate) reply_to: Vec<AddressTemplate>,
    pub(crate) subject: TemplateId,
    pub(crate) text: Option<TemplateId>,
    pub(crate) html: Option<TemplateId>,
    /// Locale variants of the body files, by locale tag.
    pub(crate) text_locales: BTreeMap<String, TemplateId>,
    pub(crate) html_locales: BTreeMap<String, TemplateId>,
    pub(crate) headers: Vec<(String, TemplateId)>,
}

/// A digest: events with the same rendered key within `window` become one email.
#[derive(Debug, Clone)]
pub(crate) struct DigestSpec {
    pub(crate) key: TemplateId,
    pub(crate) window: std::time::Duration,
    pub(crate) max: u32,
}

/// A time zone: fixed in the workflow, or rendered from the event.
#[derive(Debug, Clone)]
pub(crate) enum TimeZone {
    Fixed(chrono_tz::Tz),
    Template(TemplateId),
}

/// Hours in which nothing is sent: `from` to `to`, local time (across
/// midnight when `to` is earlier).
#[derive(Debug, Clone)]
pub(crate) struct QuietHours {
    pub(crate) from: chrono::NaiveTime,
    pub(crate) to: chrono::NaiveTime,
    pub(crate) tz: TimeZone,
}

/// How and when a workflow's emails go out.
#[derive(Debug, Clone, Default)]
pub(crate) struct Delivery {
    pub(crate) category: Option<String>,
    pub(crate) ignore_suppression: bool,
    pub(crate) rate: Option<crate::rate::Rate>,
    pub(crate) digest: Option<DigestSpec>,
    pub(crate) delay: Option<std::time::Duration>,
    pub(crate) send_at: Option<TemplateId>,
    pub(crate) quiet_hours: Option<QuietHours>,
    pub(crate) locale: Option<TemplateId>,
}

/// The compiled templates of one loaded set.
#[derive(Debug, Default)]
pub(crate) struct Templates {
    /// Templates rendered into HTML bodies: values are HTML-escaped.
    pub(crate) html: Handlebars<'static>,
    /// Everything else (addresses, subject, text, headers): not escaped.
    pub(crate) plain: Handlebars<'static>,
    /// Root paths each template's `#each`/`#with` blocks need present.
    pub(crate) block_paths: BTreeMap<TemplateId, Vec<Vec<String>>>,
}
