//! Locales: German and fallback templates; locales and categories checked at
//! validation.

use super::{NEWSLETTER, SHOP};
use herald_tests::both_backends;
use herald_tests::db::Backend;
use herald_tests::golden::{golden, normalize};
use herald_tests::scenario::Scenario;
use serde_json::json;

const LOCALIZED: &str = r#"
name: hello
on: { subjects: [events.user.>] }
locale: "{{event.locale}}"
email:
  from: hello@example.com
  to: "{{event.email}}"
  subject: "Hello"
  text_file: templates/hello.hbs
"#;

/// `locale` picks `hello.de.hbs` for de-AT (falling back from de-AT to de),
/// the default template for a locale without one.
async fn german_and_fallback_templates(backend: Backend) {
    let w = Scenario::new(backend)
        .workflow("hello.yaml", LOCALIZED)
        .workflow("templates/hello.hbs", "Hello {{event.name}}!\n")
        .workflow(
            "templates/hello.de.hbs",
            "Hallo {{event.name}}, grüß Gott!\n",
        )
        .start()
        .await;
    let _relay = w.relay();
    let _worker = w.worker();
    let de = w
        .emit(
            "events.user.joined",
            json!({"email": "de@example.com", "name": "Jürgen", "locale": "de-AT"}),
        )
        .await;
    let fr = w
        .emit(
            "events.user.joined",
            json!({"email": "fr@example.com", "name": "Zoé", "locale": "fr"}),
        )
        .await;
    w.wait_emails(2).await;
    let got = w.sink.received();
    let find = |to: &str| got.iter().find(|m| m.rcpt_to[0] == to).unwrap().clone();
    golden(
        "locale.de-AT",
        &normalize(&find("de@example.com").data, &de),
    );
    golden(
        "locale.fallback",
        &normalize(&find("fr@example.com").data, &fr),
    );
}

both_backends!(german_and_fallback_templates);

/// `workflows validate` compiles every locale's templates and names a
/// broken one; a category without unsubscribe settings stops the worker at
/// start-up (exit 2), before it takes any message.
#[test]
fn locales_are_validated_and_categories_need_unsubscribe_settings() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d.path().join("templates")).unwrap();
    std::fs::write(d.path().join("hello.yaml"), LOCALIZED).unwrap();
    std::fs::write(d.path().join("templates/hello.hbs"), "Hello\n").unwrap();
    std::fs::write(d.path().join("templates/hello.de.hbs"), "Hallo {{#if}}\n").unwrap();
    let env = herald_tests::process::HeraldEnv::default();
    let out = env.run(&["workflows", "validate", d.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("hello.de.hbs"), "{err}");

    let n = tempfile::tempdir().unwrap();
    std::fs::write(n.path().join("news.yaml"), NEWSLETTER).unwrap();
    std::fs::write(n.path().join("receipt.yaml"), SHOP).unwrap();
    let db = tempfile::tempdir().unwrap();
    let mut env = herald_tests::process::HeraldEnv::default();
    env.set("HERALD_WORKFLOWS", n.path().display().to_string())
        .set(
            "HERALD_DATABASE_URL",
            format!("sqlite://{}/h.db?mode=rwc", db.path().display()),
        )
        .set("HERALD_NATS_URL", "nats://127.0.0.1:1")
        .set("HERALD_SMTP_URL", "smtp://127.0.0.1:1");
    let out = env.run(&["worker"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("workflow news has a category"), "{err}");
    for fix in [
        "HERALD_PUBLIC_URL",
        "HERALD_UNSUBSCRIBE_SECRET",
        "--workflow",
    ] {
        assert!(err.contains(fix), "names {fix}: {err}");
    }
    // A worker that runs only the transactional workflow needs no
    // unsubscribe settings: it gets past them (to NATS, unreachable here).
    let out = env.run(&["worker", "--workflow", "receipt"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!err.contains("has a category"), "{err}");
    let out = env.run(&[
        "worker",
        "--public-url",
        "http://x.example",
        "--unsubscribe-secret",
        "short",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("at least 16 characters"), "{err}");
    assert!(!err.contains("short\""), "the secret is not echoed: {err}");
}
