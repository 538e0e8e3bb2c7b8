//! The workflow YAML format as written by users (docs/workflows.md). Parsed with
//! positions kept (`Spanned`) and unknown keys refused; no checks here beyond
//! shape: those are in `validate`.
//!
//! ```no_run
//! // The JSON Schema of the YAML format, for an editor's completion:
//! let schema = herald::workflow::spec::json_schema();
//! std::fs::write("herald-workflow.schema.json", serde_json::to_string_pretty(&schema)?)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_saphyr::Spanned;

/// One notification workflow.
///
/// ```
/// use herald::workflow::spec::RawWorkflow;
/// let raw: RawWorkflow = serde_saphyr::from_str(
///     "name: welcome\non: { subjects: [events.user.joined] }\nemail: { from: noreply@example.org, to: '{{event.email}}', subject: Welcome }\n",
/// )?;
/// assert_eq!(raw.name.value, "welcome");
/// # Ok::<(), serde_saphyr::Error>(())
/// ```
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawWorkflow {
    /// Unique name, `[a-z0-9-]+`; also the durable consumer's name.
    #[schemars(with = "String")]
    pub name: Spanned<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// Which events the workflow consumes.
    #[schemars(with = "RawOn")]
    pub on: Spanned<RawOn>,
    /// Guards: all must hold, else the event is skipped (recorded, acked).
    #[serde(default)]
    #[schemars(with = "Vec<RawGuard>")]
    pub when: Vec<Spanned<RawGuard>>,
    /// Path of an array in the context (e.g. `event.recipients`): one email per element, as `item`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub for_each: Option<Spanned<String>>,
    #[schemars(with = "RawEmail")]
    pub email: Spanned<RawEmail>,
    #[serde(default)]
    #[schemars(with = "Option<RawRetry>")]
    pub retry: Option<Spanned<RawRetry>>,
    /// When the connection fails after the message's final "." (the server
    /// may have accepted it): `resend` (default: send again with the same
    /// Message-ID, so a duplicate can be recognised) or `hold` (dead letter
    /// for an operator to decide).
    #[serde(default)]
    pub on_uncertain: Option<OnUncertain>,
    /// Bulk mail of this category (`[a-z0-9-]+`, e.g. `campaigns`): adds
    /// RFC 8058 one-click unsubscribe headers, and an address that
    /// unsubscribed from the category gets no more of it. Without a
    /// category, mail is transactional: no such headers, unsubscribes ignored.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub category: Option<Spanned<String>>,
    /// Send even to suppressed addresses (bounced): for mail the user asked
    /// for, such as a password reset. Default false.
    #[serde(default)]
    pub ignore_suppression: Option<bool>,
    /// At most this many emails of this workflow, across all workers:
    /// `10/s`, `600/m`, `1000/h`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub rate: Option<Spanned<String>>,
    /// Collect the events with the same key that arrive within `window` (from
    /// the first) into one email; `events` in the template context lists them.
    #[serde(default)]
    #[schemars(with = "Option<RawDigest>")]
    pub digest: Option<Spanned<RawDigest>>,
    /// Send this long after the event (`1h`).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub delay: Option<Spanned<String>>,
    /// Send at this time (a template rendering an RFC 3339 time, e.g.
    /// `{{event.remind_at}}`); a time in the past sends at once.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub send_at: Option<Spanned<String>>,
    /// Hold emails that would go out inside these hours until they end.
    #[serde(default)]
    #[schemars(with = "Option<RawQuietHours>")]
    pub quiet_hours: Option<Spanned<RawQuietHours>>,
    /// The recipient's locale (a template, e.g. `{{event.locale}}`): body
    /// templates `NAME.{locale}.hbs` are used when they exist, falling back
    /// from `de-AT` to `de` to `NAME.hbs`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub locale: Option<Spanned<String>>,
}

/// `digest: { key: "{{event.parent_id}}", window: 10m, max: 50 }`.
///
/// ```
/// let d: herald::workflow::spec::RawDigest = serde_saphyr::from_str("{ key: '{{event.parent_id}}', window: 10m, max: 50 }")?;
/// assert_eq!((d.window.as_str(), d.max), ("10m", Some(50)));
/// # Ok::<(), serde_saphyr::Error>(())
/// ```
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawDigest {
    /// A template: events rendering the same key share a digest.
    pub key: String,
    /// How long a digest collects, from its first event.
    pub window: String,
    /// Send as soon as it holds this many events (default 50).
    #[serde(default)]
    pub max: Option<u32>,
}

/// `quiet_hours: { from: "21:00", to: "08:00", tz: "{{event.tz}}" }`.
///
/// ```
/// let q: herald::workflow::spec::RawQuietHours = serde_saphyr::from_str("{ from: '21:00', to: '08:00', tz: Europe/Vienna }")?;
/// assert_eq!(q.tz.as_deref(), Some("Europe/Vienna"));
/// # Ok::<(), serde_saphyr::Error>(())
/// ```
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawQuietHours {
    /// `HH:MM`, local time.
    pub from: String,
    /// `HH:MM`, local time (before `from`: the quiet hours span midnight).
    pub to: String,
    /// IANA time zone, or a template rendering one (default UTC).
    #[serde(default)]
    pub tz: Option<String>,
}

/// What to do with a delivery whose outcome is unknown.
///
/// ```
/// use herald::workflow::spec::OnUncertain;
/// let v: OnUncertain = serde_saphyr::from_str("hold")?;
/// assert_eq!(v, OnUncertain::Hold);
/// # Ok::<(), serde_saphyr::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnUncertain {
    #[default]
    Resend,
    Hold,
}

/// The `on:` section: which event subjects (NATS filters under `events.`)
/// start the workflow.
///
/// ```
/// let on: herald::workflow::spec::RawOn = serde_saphyr::from_str("subjects: [events.user.joined, events.user.invited]")?;
/// assert_eq!(on.subjects[1].value, "events.user.invited");
/// # Ok::<(), serde_saphyr::Error>(())
/// ```
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawOn {
    /// NATS subject filters under `events.`; `*` and `>` allowed.
    #[schemars(with = "Vec<String>")]
    pub subjects: Vec<Spanned<String>>,
}

/// `{ path, exists }`, `{ path, equals }`, `{ path, not_equals }` or `{ path, in }`.
///
/// ```
/// let g: herald::workflow::spec::RawGuard = serde_saphyr::from_str("{ path: event.plan, in: [pro, team] }")?;
/// assert_eq!(g.in_.map(|v| v.len()), Some(2));
/// # Ok::<(), serde_saphyr::Error>(())
/// ```
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawGuard {
    /// Dotted path into the context, e.g. `event.parent.email`.
    pub path: String,
    #[serde(default)]
    pub exists: Option<bool>,
    #[serde(default)]
    pub equals: Option<serde_json::Value>,
    #[serde(default)]
    pub not_equals: Option<serde_json::Value>,
    #[serde(default, rename = "in")]
    pub in_: Option<Vec<serde_json::Value>>,
}

/// A template string, or a list of them (recipients).
///
/// ```
/// use herald::workflow::spec::OneOrMany;
/// let to: OneOrMany = serde_saphyr::from_str("['{{event.email}}', ops@example.org]")?;
/// assert_eq!(to.items().len(), 2);
/// # Ok::<(), serde_saphyr::Error>(())
/// ```
#[derive(Debug, JsonSchema, Clone)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

// By hand rather than `untagged`: serde's untagged error ("data did not
// match any variant of untagged enum") names no type an author knows.
impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = OneOrMany;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an address template (\"{{event.email}}\") or a list of them")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<OneOrMany, E> {
                Ok(OneOrMany::One(s.to_string()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<OneOrMany, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<String>()? {
                    items.push(item);
                }
                Ok(OneOrMany::Many(items))
            }
        }
        d.deserialize_any(Visitor)
    }
}

impl OneOrMany {
    /// Every template of the field, whether the YAML gave one or a list, so
    /// checks treat both alike.
    ///
    /// ```
    /// use herald::workflow::spec::OneOrMany;
    /// assert_eq!(OneOrMany::One("a@example.org".into()).items(), ["a@example.org"]);
    /// ```
    pub fn items(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

/// The `email:` section: the templates of the message's addresses, subject,
/// bodies and extra headers.
///
/// ```
/// let e: herald::workflow::spec::RawEmail = serde_saphyr::from_str(
///     "{ from: 'Club <noreply@club.example>', to: '{{event.email}}', subject: 'Hi {{event.name}}', text_file: welcome.txt.hbs }",
/// )?;
/// assert_eq!(e.text_file.map(|f| f.value).as_deref(), Some("welcome.txt.hbs"));
/// # Ok::<(), serde_saphyr::Error>(())
/// ```
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawEmail {
    /// Sender, e.g. `Club <noreply@club.example>` (a template).
    #[schemars(with = "String")]
    pub from: Spanned<String>,
    #[schemars(with = "OneOrMany")]
    pub to: Spanned<OneOrMany>,
    #[serde(default)]
    #[schemars(with = "Option<OneOrMany>")]
    pub cc: Option<Spanned<OneOrMany>>,
    #[serde(default)]
    #[schemars(with = "Option<OneOrMany>")]
    pub bcc: Option<Spanned<OneOrMany>>,
    #[serde(default)]
    #[schemars(with = "Option<OneOrMany>")]
    pub reply_to: Option<Spanned<OneOrMany>>,
    #[schemars(with = "String")]
    pub subject: Spanned<String>,
    /// Inline text body template (not HTML-escaped).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub text: Option<Spanned<String>>,
    /// Text body template file, relative to the workflows directory.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub text_file: Option<Spanned<String>>,
    /// Inline HTML body template (values HTML-escaped).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub html: Option<Spanned<String>>,
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub html_file: Option<Spanned<String>>,
    /// Extra headers; values are templates.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, String>")]
    pub headers: BTreeMap<HeaderName, Spanned<String>>,
}

/// A header's name as written in `email.headers`, with its position, so a
/// problem with it or its value is reported on its own line. Ordered by
/// name, as a map key.
///
/// ```
/// use herald::workflow::spec::HeaderName;
/// let h: std::collections::BTreeMap<HeaderName, String> =
///     serde_saphyr::from_str("X-Campaign: spring\n")?;
/// let (name, _) = h.iter().next().ok_or("no header")?;
/// assert_eq!((name.0.value.as_str(), name.0.referenced.line()), ("X-Campaign", 1));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(transparent)]
pub struct HeaderName(pub Spanned<String>);

impl PartialEq for HeaderName {
    fn eq(&self, other: &Self) -> bool {
        self.0.value == other.0.value
    }
}

impl Eq for HeaderName {}

impl PartialOrd for HeaderName {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for HeaderName {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.value.cmp(&other.0.value)
    }
}

/// The `retry:` section: attempts per recipient before a dead letter, and the
/// backoff between them.
///
/// ```
/// let r: herald::workflow::spec::RawRetry = serde_saphyr::from_str("{ max_attempts: 5, backoff: { initial: 2s, max: 10m } }")?;
/// assert_eq!(r.max_attempts, Some(5));
/// # Ok::<(), serde_saphyr::Error>(())
/// ```
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRetry {
    /// Attempts per recipient before a dead letter (default 8).
    #[serde(default)]
    pub max_attempts: Option<u32>,
    #[serde(default)]
    pub backoff: Option<RawBackoff>,
}

/// The `retry.backoff:` section: durations as [`crate::duration::parse`] reads
/// them; unset fields keep the defaults.
///
/// ```
/// let b: herald::workflow::spec::RawBackoff = serde_saphyr::from_str("{ initial: 1s, multiplier: 3.0 }")?;
/// assert_eq!((b.initial.as_deref(), b.max), (Some("1s"), None));
/// # Ok::<(), serde_saphyr::Error>(())
/// ```
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawBackoff {
    /// e.g. `1s` (default).
    #[serde(default)]
    pub initial: Option<String>,
    /// e.g. `5m` (default).
    #[serde(default)]
    pub max: Option<String>,
    /// Default 2.0.
    #[serde(default)]
    pub multiplier: Option<f64>,
}

/// JSON Schema of the workflow format, for editors.
///
/// ```
/// let schema = herald::workflow::spec::json_schema();
/// std::fs::write(std::env::temp_dir().join("herald-workflow.schema.json"), schema.to_string())?;
/// assert_eq!(schema["title"], "RawWorkflow");
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn json_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(RawWorkflow)).unwrap_or(serde_json::Value::Null)
}
