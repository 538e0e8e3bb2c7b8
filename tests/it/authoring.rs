//! For workflow authors: the `number` and `money` helpers from validation
//! to the worker, `workflows render` (decoded, `--raw`, `--html`), and
//! `herald send-test` against the SMTP sink.
use herald_tests::both_backends;
use herald_tests::db::Backend;
use herald_tests::golden::{golden, normalize};
use herald_tests::process::HeraldEnv;
use herald_tests::scenario::{Scenario, run_off_runtime};
use herald_tests::smtp::{Reply, SmtpSink};
use herald_tests::wait;
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

/// `workflows render` prints what a person reads: headers with encoded
/// words decoded, each body part decoded (no `=3D`), under its type;
/// `--raw` prints the wire form; `--html FILE` writes the HTML body.
#[test]
fn render_shows_decoded_bodies_raw_and_html() {
    let d = receipt_dir();
    let env = env_with(&d);
    let payload = order(json!(123450)).to_string();
    let out = env.run(&["workflows", "render", "receipt", "--payload", &payload]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    for expected in [
        "Subject: Grüße: receipt 1042, 1.234,50 EUR\n",
        "From: \"Shop\" <orders@shop.example>\n",
        "To: \"Ada Lovelace\" <ada@example.com>\n",
        "\n--- text/plain ---\nHi Ada Lovelace,\n2 × Tee: 4,50 EUR\n1 × Kuchen: 3,50 EUR\nTotal: 1.234,50 EUR (1,3 kg)\n",
        "\n--- text/html ---\n<p>Hi Ada Lovelace, you paid <b>1.234,50 EUR</b>.</p>\n",
        "href=\"https://shop.example/orders?id=1042&amp;view=full\"",
    ] {
        assert!(
            shown.contains(expected),
            "missing {expected:?} in:\n{shown}"
        );
    }
    assert!(!shown.contains("=3D"), "decoded: {shown}");
    assert!(!shown.contains("Content-Transfer-Encoding"), "{shown}");
    assert!(!shown.contains("Bcc:"), "bcc is envelope only: {shown}");

    let raw = env.run(&[
        "workflows",
        "render",
        "receipt",
        "--payload",
        &payload,
        "--raw",
    ]);
    assert!(raw.status.success(), "{}", text(&raw.stderr));
    let wire = text(&raw.stdout);
    assert!(wire.contains("=3D"), "the wire form: {wire}");
    assert!(
        wire.contains("Subject: =?utf-8?"),
        "an encoded word: {wire}"
    );
    assert!(
        wire.contains("Content-Type: multipart/alternative"),
        "{wire}"
    );

    let html = d.path().join("out/receipt.html");
    std::fs::create_dir_all(html.parent().unwrap()).unwrap();
    let out = env.run(&[
        "workflows",
        "render",
        "receipt",
        "--payload",
        &payload,
        "--html",
        html.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read_to_string(&html).unwrap(),
        "<p>Hi Ada Lovelace, you paid <b>1.234,50 EUR</b>.</p>\n<p><a href=\"https://shop.example/orders?id=1042&amp;view=full\">Your order</a></p>\n"
    );
    assert!(text(&out.stderr).contains("wrote the HTML body to"));
}

/// With for_each, each email is headed and `--html` writes one file each;
/// `--html` on a workflow without an HTML body is a usage error.
#[test]
fn render_of_several_emails() {
    let d = dir(&[
        (
            "codes.yaml",
            "name: codes\non: { subjects: [events.c] }\nfor_each: event.people\nemail:\n  from: a@example.com\n  to: \"{{item.email}}\"\n  subject: \"Code {{item.code}}\"\n  text: \"Your code: {{item.code}}\"\n  html: \"<p>{{item.code}}</p>\"\n",
        ),
        (
            "plain.yaml",
            "name: plain\non: { subjects: [events.p] }\nemail:\n  from: a@example.com\n  to: b@example.com\n  subject: s\n  text: t\n",
        ),
    ]);
    let env = env_with(&d);
    let payload =
        r#"{"people":[{"email":"a@x.example","code":"A1"},{"email":"b@x.example","code":"B2"}]}"#;
    let html = d.path().join("codes.html");
    let out = env.run(&[
        "workflows",
        "render",
        "codes",
        "--payload",
        payload,
        "--html",
        html.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    assert!(shown.contains("=== email 1 of 2 ===\n"), "{shown}");
    assert!(shown.contains("=== email 2 of 2 ===\n"), "{shown}");
    assert!(
        shown.contains("--- text/plain ---\nYour code: B2\n"),
        "{shown}"
    );
    assert_eq!(
        std::fs::read_to_string(d.path().join("codes.1.html")).unwrap(),
        "<p>A1</p>"
    );
    assert_eq!(
        std::fs::read_to_string(d.path().join("codes.2.html")).unwrap(),
        "<p>B2</p>"
    );

    let out = env.run(&[
        "workflows",
        "render",
        "plain",
        "--payload",
        "{}",
        "--html",
        "/tmp/x.html",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("no HTML body"),
        "{}",
        text(&out.stderr)
    );
}

/// A literal argument `money` or `number` would refuse is a validation
/// problem at its file:line:col; a bad value from the payload is a render
/// error naming the helper, never a panic.
#[test]
fn formatting_helpers_are_checked_at_validation_and_render() {
    let d = dir(&[
        (
            "w.yaml",
            "name: w\non: { subjects: [events.a] }\nemail:\n  from: a@example.com\n  to: b@example.com\n  subject: \"{{money event.total \\\"EURO\\\"}}\"\n  text_file: templates/t.hbs\n",
        ),
        (
            "templates/t.hbs",
            "Total:\n  {{number event.n 99}} {{money event.total \"XAU\"}} {{number event.n locale=\"de\" digits=2}}\n",
        ),
    ]);
    let out = HeraldEnv::default().run(&["workflows", "validate", d.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    let w = d.path().join("w.yaml").display().to_string();
    let t = d.path().join("templates/t.hbs").display().to_string();
    for expected in [
        format!("{w}:6:12: email.subject: money: unknown currency \"EURO\""),
        format!(
            "{t}:2:3: email.text_file \"templates/t.hbs\": number: decimals must be an integer from 0 to 20, got 99"
        ),
        format!(
            "{t}:2:25: email.text_file \"templates/t.hbs\": money: XAU (Gold (one troy ounce)) has no minor unit"
        ),
        format!("{t}:2:53: email.text_file \"templates/t.hbs\": number: unknown argument digits="),
    ] {
        assert!(err.contains(&expected), "missing {expected:?} in:\n{err}");
    }

    let d = receipt_dir();
    let env = env_with(&d);
    for (total, needle) in [
        (json!(12.5), "money: 12.5 is a floating-point number"),
        (json!("12.345"), "more decimal places than EUR's 2"),
        (json!("lots"), "\"lots\" is not a decimal number"),
        (json!(null), "money: cannot format null as an amount"),
    ] {
        let out = env.run(&[
            "workflows",
            "render",
            "receipt",
            "--payload",
            &order(total.clone()).to_string(),
        ]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{total}: {err}");
        assert!(err.contains(needle), "{total}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    let mut bad_currency = order(json!(100));
    bad_currency["currency"] = json!("EURO");
    let out = env.run(&[
        "workflows",
        "render",
        "receipt",
        "--payload",
        &bad_currency.to_string(),
    ]);
    assert!(
        text(&out.stderr).contains("money: unknown currency \"EURO\""),
        "{}",
        text(&out.stderr)
    );
}

/// In the worker: a receipt renders exactly its golden email, and a float
/// amount dead-letters its event with the helper's reason (the next event
/// still goes out).
async fn money_in_the_worker(backend: Backend) {
    let w = Scenario::new(backend)
        .workflow("receipt.yaml", RECEIPT)
        .workflow("templates/receipt.txt.hbs", RECEIPT_TXT)
        .workflow("templates/receipt.html.hbs", RECEIPT_HTML)
        .start()
        .await;
    let _relay = w.relay();
    let _worker = w.worker();
    w.emit("events.order.paid", order(json!(12.5))).await;
    let id = w.emit("events.order.paid", order(json!(123450))).await;
    w.wait_emails(1).await;
    wait::until("one dead letter", wait::DEFAULT, || async {
        w.count("SELECT COUNT(*) FROM herald_dead_letters").await == 1
    })
    .await;
    use sea_orm::EntityTrait;
    let dl = herald_entities::dead_letter::Entity::find()
        .one(&w.env.conn)
        .await
        .unwrap()
        .unwrap();
    assert!(
        dl.reason.contains("money: 12.5 is a floating-point number"),
        "{}",
        dl.reason
    );
    let m = &w.sink.received()[0];
    golden("authoring.receipt", &normalize(&m.data, &id));
}

both_backends!(money_in_the_worker);

/// `send-test` sends one email to ADDR only (not the workflow's to, cc or
/// bcc), marked `X-Herald-Test: 1`, and touches neither the database nor
/// NATS: the SQLite file it is pointed at is never created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_test_sends_one_marked_email_and_nothing_else() {
    let sink = SmtpSink::start().await;
    let d = receipt_dir();
    let db = d.path().join("never/herald.db");
    let mut env = env_with(&d);
    env.set("HERALD_SMTP_URL", sink.url())
        .set(
            "HERALD_DATABASE_URL",
            format!("sqlite://{}?mode=rwc", db.display()),
        )
        .set("HERALD_NATS_URL", "nats://127.0.0.1:1");
    let payload = order(json!(123450)).to_string();
    let out = run_off_runtime(
        &env,
        &[
            "send-test",
            "receipt",
            "--payload",
            &payload,
            "--to",
            "Me <me@dev.example>",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("sent \"Grüße: receipt 1042, 1.234,50 EUR\" to"));
    let got = sink.received();
    assert_eq!(got.len(), 1);
    let m = &got[0];
    assert_eq!(m.rcpt_to, vec!["me@dev.example".to_string()]);
    assert_eq!(m.header("X-Herald-Test").as_deref(), Some("1"));
    assert_eq!(m.header("To").as_deref(), Some("\"Me\" <me@dev.example>"));
    assert_eq!(m.header("Cc"), None);
    let mid = m.message_id();
    let id = mid.trim_start_matches('<').split('.').next().unwrap();
    golden("authoring.send-test", &normalize(&m.data, id));
    assert!(!db.exists(), "send-test opened the database");
}

/// What the user gets wrong, each a clear line and exit 2 (nothing sent);
/// a server that refuses or cannot be reached: exit 1 with why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_test_errors() {
    let sink = SmtpSink::start().await;
    let d = receipt_dir();
    let mut env = env_with(&d);
    env.set("HERALD_SMTP_URL", sink.url());
    let good = order(json!(100)).to_string();
    let mut unpaid = order(json!(100));
    unpaid["status"] = json!("pending");
    let unpaid = unpaid.to_string();
    let cases: [(&[&str], &str); 7] = [
        (
            &[
                "send-test",
                "nope",
                "--payload",
                &good,
                "--to",
                "me@dev.example",
            ],
            "no workflow named \"nope\"",
        ),
        (
            &[
                "send-test",
                "receipt",
                "--payload",
                "{oops",
                "--to",
                "me@dev.example",
            ],
            "invalid JSON in --payload",
        ),
        (
            &[
                "send-test",
                "receipt",
                "--payload",
                "[1]",
                "--to",
                "me@dev.example",
            ],
            "must be a JSON object",
        ),
        (
            &[
                "send-test",
                "receipt",
                "--payload",
                &unpaid,
                "--to",
                "me@dev.example",
            ],
            "nothing sent: the workflow's guard does not hold for this payload (event.status equals \"paid\")",
        ),
        (
            &[
                "send-test",
                "receipt",
                "--payload",
                &good,
                "--to",
                "not an address",
            ],
            "--to",
        ),
        (
            &[
                "send-test",
                "receipt",
                "--payload",
                &good,
                "--to",
                "me@dev.example",
                "--smtp-url",
                "ftp://x",
            ],
            "smtp",
        ),
        (
            &[
                "send-test",
                "receipt",
                "--payload",
                "@/nonexistent.json",
                "--to",
                "me@dev.example",
            ],
            "cannot read payload file",
        ),
    ];
    for (args, needle) in cases {
        let out = run_off_runtime(&env, args).await;
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    let mut no_smtp = env.clone();
    no_smtp.vars.remove("HERALD_SMTP_URL");
    let out = run_off_runtime(
        &no_smtp,
        &[
            "send-test",
            "receipt",
            "--payload",
            &good,
            "--to",
            "me@dev.example",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("give --smtp-url"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(sink.count(), 0, "nothing was sent");

    sink.script([Reply::Code(550, "5.7.1 relaying denied".into())]);
    let out = run_off_runtime(
        &env,
        &[
            "send-test",
            "receipt",
            "--payload",
            &good,
            "--to",
            "me@dev.example",
        ],
    )
    .await;
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("550") && err.contains("relaying denied"),
        "{err}"
    );

    let closed = herald_tests::free_port();
    let mut down = env.clone();
    down.set("HERALD_SMTP_URL", format!("smtp://127.0.0.1:{closed}"));
    let out = run_off_runtime(
        &down,
        &[
            "send-test",
            "receipt",
            "--payload",
            &good,
            "--to",
            "me@dev.example",
        ],
    )
    .await;
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("unreachable"), "{err}");
}

/// With for_each, send-test sends the first email and says how many the
/// payload makes; `--all` sends each, every one to ADDR only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_test_with_for_each_sends_the_first_or_all() {
    let sink = SmtpSink::start().await;
    let d = dir(&[(
        "codes.yaml",
        "name: codes\non: { subjects: [events.c] }\nfor_each: event.people\nemail:\n  from: a@example.com\n  to: \"{{item.email}}\"\n  subject: \"Code {{item.code}}\"\n  text: \"Your code: {{item.code}}\"\n",
    )]);
    let mut env = env_with(&d);
    env.set("HERALD_SMTP_URL", sink.url());
    let payload =
        r#"{"people":[{"email":"a@x.example","code":"A1"},{"email":"b@x.example","code":"B2"}]}"#;
    let args = [
        "send-test",
        "codes",
        "--payload",
        payload,
        "--to",
        "me@dev.example",
    ];
    let out = run_off_runtime(&env, &args).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("this payload makes 2 emails (for_each); sent the first"),
        "{}",
        text(&out.stderr)
    );
    let mut all = args.to_vec();
    all.push("--all");
    let out = run_off_runtime(&env, &all).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let got = sink.received();
    let subjects: Vec<String> = got.iter().filter_map(|m| m.header("Subject")).collect();
    assert_eq!(subjects, ["Code A1", "Code A1", "Code B2"]);
    assert!(
        got.iter()
            .all(|m| m.rcpt_to == ["me@dev.example".to_string()]
                && m.header("X-Herald-Test").as_deref() == Some("1")),
        "{got:?}"
    );
}
