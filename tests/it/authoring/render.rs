//! `workflows render` (decoded, `--raw`, `--html`, several emails) and the
//! `number`/`money` helpers from validation to the worker.

use super::{RECEIPT, RECEIPT_HTML, RECEIPT_TXT, dir, env_with, order, receipt_dir, text};
use herald_tests::db::Backend;
use herald_tests::golden::{golden, normalize};
use herald_tests::process::HeraldEnv;
use herald_tests::scenario::Scenario;
use herald_tests::{both_backends, wait};
use serde_json::json;

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
        format!("{w}:6:13: email.subject: money: unknown currency \"EURO\""),
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
