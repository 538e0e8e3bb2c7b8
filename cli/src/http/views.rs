//! The console's HTML: Handlebars templates (`templates/*.hbs`, compiled
//! into the binary) rendered with HTML escaping on. Handlebars is already
//! how Herald renders email, so the console adds no template engine; its
//! `{{value}}` escapes `& < > " ' \` =`, and no template uses the unescaped
//! `{{{value}}}` form, so nothing from the database reaches the page
//! unescaped. Strict mode: a template naming a field the handler did not
//! supply is an error (caught by the tests), not an empty string.
//!
//! Every page gets a fresh nonce for its one inline `<style>`, named in its
//! Content-Security-Policy; scripts are not allowed at all.
use std::sync::OnceLock;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use handlebars::{Handlebars, handlebars_helper};
use serde_json::{Value, json};

static VIEWS: OnceLock<Handlebars<'static>> = OnceLock::new();

const TEMPLATES: [(&str, &str); 8] = [
    ("layout", include_str!("templates/layout.hbs")),
    ("overview", include_str!("templates/overview.hbs")),
    ("dead_letters", include_str!("templates/dead_letters.hbs")),
    ("dead_letter", include_str!("templates/dead_letter.hbs")),
    ("event", include_str!("templates/event.hbs")),
    ("search", include_str!("templates/search.hbs")),
    ("message", include_str!("templates/message.hbs")),
    // For recipients, not operators: no console layout, no links into it.
    ("unsubscribe", include_str!("templates/unsubscribe.hbs")),
];

// A query-string value (percent-encoded; then HTML-escaped like any value).
handlebars_helper!(query: |s: str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>());

/// Compile the templates once per process.
pub fn init() -> anyhow::Result<()> {
    if VIEWS.get().is_some() {
        return Ok(());
    }
    let mut hb = Handlebars::new();
    hb.set_strict_mode(true);
    hb.set_prevent_indent(true);
    hb.register_helper("query", Box::new(query));
    for (name, text) in TEMPLATES {
        hb.register_template_string(name, text)
            .map_err(|e| anyhow::anyhow!("console template {name}: {e}"))?;
    }
    // `layout` is used as a partial block (`{{#> layout}}`) around every page.
    let _ = VIEWS.set(hb);
    Ok(())
}

/// A page to render: template, title, data; the layout adds the rest.
pub struct Page {
    pub status: StatusCode,
    pub template: &'static str,
    pub title: String,
    pub data: Value,
}

impl Page {
    pub fn new(template: &'static str, title: impl Into<String>, data: Value) -> Page {
        Page {
            status: StatusCode::OK,
            template,
            title: title.into(),
            data,
        }
    }

    pub fn status(mut self, status: StatusCode) -> Page {
        self.status = status;
        self
    }

    /// A short page saying one thing (errors, outcomes of actions).
    pub fn message(status: StatusCode, title: &str, text: &str, links: Value) -> Page {
        Page::new(
            "message",
            title,
            json!({ "heading": title, "text": text, "links": links }),
        )
        .status(status)
    }
}

impl IntoResponse for Page {
    fn into_response(self) -> Response {
        let Some(hb) = VIEWS.get() else {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                "console templates not loaded\n",
            )
                .into_response();
        };
        // 128 random bits (UUIDv4 from the OS's generator), fresh per page.
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        let mut data = self.data;
        if let Value::Object(m) = &mut data {
            m.insert("title".into(), Value::String(self.title));
            m.insert("nonce".into(), Value::String(nonce.clone()));
        }
        match hb.render(self.template, &data) {
            Ok(html) => {
                let csp = format!(
                    "default-src 'none'; style-src 'nonce-{nonce}'; img-src 'self' data:; \
                     form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
                );
                let mut r = (
                    self.status,
                    [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                    html,
                )
                    .into_response();
                if let Ok(v) = HeaderValue::from_str(&csp) {
                    r.headers_mut().insert(header::CONTENT_SECURITY_POLICY, v);
                }
                r
            }
            Err(e) => {
                tracing::error!(template = self.template, error = %e, "console: page failed to render");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                    "the page failed to render (see the log)\n",
                )
                    .into_response()
            }
        }
    }
}
