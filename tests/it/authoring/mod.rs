//! For workflow authors: the `number` and `money` helpers from validation
//! to the worker, `workflows render` (decoded, `--raw`, `--html`), and
//! `herald send-test` against the SMTP sink.

mod paths;
mod render;
mod send_test;

use herald_tests::process::HeraldEnv;
use serde_json::json;

fn dir(files: &[(&str, &str)]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for (name, text) in files {
        let p = d.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    d
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A receipt: money and numbers in the customer's locale, a guard, a cc
/// and a bcc (which send-test must not mail), and an HTML body whose link
/// holds `=` (quoted-printable writes it `=3D` on the wire).
const RECEIPT: &str = r#"
name: receipt
on: { subjects: ["events.order.paid"] }
when:
  - { path: event.status, equals: paid }
locale: "{{event.locale}}"
email:
  from: "Shop <orders@shop.example>"
  to: "{{event.customer.name}} <{{event.customer.email}}>"
  cc: accounts@shop.example
  bcc: audit@shop.example
  subject: "Grüße: receipt {{event.number}}, {{money event.total event.currency}}"
  text_file: templates/receipt.txt.hbs
  html_file: templates/receipt.html.hbs
"#;

const RECEIPT_TXT: &str = "Hi {{event.customer.name}},\n{{#each event.lines}}{{this.qty}} × {{this.name}}: {{money this.price ../event.currency}}\n{{/each}}Total: {{money event.total event.currency}} ({{number event.weight_kg 1}} kg)\n";

const RECEIPT_HTML: &str = "<p>Hi {{event.customer.name}}, you paid <b>{{money event.total event.currency}}</b>.</p>\n<p><a href=\"https://shop.example/orders?id={{event.number}}&amp;view=full\">Your order</a></p>\n";

fn receipt_dir() -> tempfile::TempDir {
    dir(&[
        ("receipt.yaml", RECEIPT),
        ("templates/receipt.txt.hbs", RECEIPT_TXT),
        ("templates/receipt.html.hbs", RECEIPT_HTML),
    ])
}

fn order(total: serde_json::Value) -> serde_json::Value {
    json!({
        "status": "paid", "number": 1042, "locale": "de-DE", "currency": "EUR",
        "customer": {"name": "Ada Lovelace", "email": "ada@example.com"},
        "lines": [{"name": "Tee", "qty": 2, "price": 450}, {"name": "Kuchen", "qty": 1, "price": "3.5"}],
        "total": total, "weight_kg": 1.25
    })
}

fn env_with(d: &tempfile::TempDir) -> HeraldEnv {
    let mut env = HeraldEnv::default();
    env.set("HERALD_WORKFLOWS", d.path().display().to_string());
    env
}
