//! `herald send-test` against the SMTP sink: one marked email, its errors,
//! `for_each` workflows.

use super::{dir, env_with, order, receipt_dir, text};
use herald_tests::golden::{golden, normalize};
use herald_tests::process::HeraldEnv;
use herald_tests::scenario::run_off_runtime;
use herald_tests::smtp::{Reply, SmtpSink};
use serde_json::json;
use std::process::Output;

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

/// `send-test receipt` of `payload` to me@dev.example.
async fn send_receipt(env: &HeraldEnv, payload: &str) -> Output {
    run_off_runtime(
        env,
        &[
            "send-test",
            "receipt",
            "--payload",
            payload,
            "--to",
            "me@dev.example",
        ],
    )
    .await
}

/// Usage errors (unknown workflow, bad payload, unpaid guard, bad address or
/// URL, missing file): exit 2 with a message naming the problem.
async fn usage_errors_exit_2(env: &HeraldEnv, good: &str, unpaid: &str) {
    // Long only because rustfmt spreads its table of seven cases over 80 lines.
    let cases: [(&[&str], &str); 7] = [
        (
            &[
                "send-test",
                "nope",
                "--payload",
                good,
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
                unpaid,
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
                good,
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
                good,
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
        let out = run_off_runtime(env, args).await;
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
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
    usage_errors_exit_2(&env, &good, &unpaid).await;
    let mut no_smtp = env.clone();
    no_smtp.vars.remove("HERALD_SMTP_URL");
    let out = send_receipt(&no_smtp, &good).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("give --smtp-url"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(sink.count(), 0, "nothing was sent");

    sink.script([Reply::Code(550, "5.7.1 relaying denied".into())]);
    let out = send_receipt(&env, &good).await;
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("550") && err.contains("relaying denied"),
        "{err}"
    );

    let closed = herald_tests::free_port();
    let mut down = env.clone();
    down.set("HERALD_SMTP_URL", format!("smtp://127.0.0.1:{closed}"));
    let out = send_receipt(&down, &good).await;
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
