//! Error messages and logs: causes named in one line, an explicit --smtp-url for
//! delivering commands, JSON logs with JSON values.

use super::NUMBERED;
use herald_tests::db::Backend;
use herald_tests::process::HeraldEnv;
use herald_tests::scenario::{Scenario, run_off_runtime};
use herald_tests::smtp::Reply;
use std::time::{Duration, Instant};

/// A SQLite file that does not exist says how to create it to a command
/// that creates one, and that nothing has run here to one that reads what
/// Herald did; a missing directory is named.
async fn a_missing_sqlite_file_or_directory_says_so(h: &mut HeraldEnv, dir: &tempfile::TempDir) {
    let missing = dir.path().join("nope.db");
    h.set(
        "HERALD_DATABASE_URL",
        format!("sqlite://{}", missing.display()),
    );
    let out = run_off_runtime(h, &["migrate"]).await;
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("add ?mode=rwc"), "{err}");
    let out = run_off_runtime(h, &["status"]).await;
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("nothing has run here yet"), "{err}");
    h.set("HERALD_DATABASE_URL", "sqlite:///no/such/dir/h.db?mode=rwc");
    let err = String::from_utf8_lossy(&run_off_runtime(h, &["status"]).await.stderr).to_string();
    assert!(
        err.contains("the directory /no/such/dir does not exist"),
        "{err}"
    );
}

/// An unknown NATS host is named as such, at once (no 10 s timeout).
async fn an_unknown_nats_host_is_named_at_once(h: &mut HeraldEnv, db: &str) {
    // An unknown host is named as such, at once (no 10 s timeout).
    h.set("HERALD_NATS_URL", "nats://no-such-host.invalid:4222");
    h.set("HERALD_DATABASE_URL", db);
    let started = Instant::now();
    let out = run_off_runtime(h, &["relay"]).await;
    let unknown = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{unknown}");
    assert!(
        unknown.contains("nats://no-such-host.invalid:4222")
            && (unknown.contains("lookup") || unknown.contains("not known")),
        "{unknown}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}

/// A file the OS refuses: its error, not only SQLite's "code: 14".
async fn a_file_the_os_refuses_names_its_error(h: &mut HeraldEnv, dir: &tempfile::TempDir) {
    // A file the OS refuses: its error, not only SQLite's "code: 14". An
    // immutable directory refuses even root; where chattr is not allowed
    // (some containers) this part is skipped, and says so.
    let locked = dir.path().join("locked");
    std::fs::create_dir(&locked).unwrap();
    let chattr = std::process::Command::new("chattr")
        .arg("+i")
        .arg(&locked)
        .status();
    if chattr.is_ok_and(|s| s.success()) {
        h.set(
            "HERALD_DATABASE_URL",
            format!("sqlite://{}/h.db?mode=rwc", locked.display()),
        );
        let out = run_off_runtime(h, &["migrate"]).await;
        let _ = std::process::Command::new("chattr")
            .arg("-i")
            .arg(&locked)
            .status();
        let denied = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(out.status.code(), Some(1), "{denied}");
        assert!(
            denied.contains("operation not permitted") || denied.contains("permission denied"),
            "{denied}"
        );
    } else {
        eprintln!("chattr +i is not allowed here: the permission-denied case is skipped");
    }
}

/// No cause repeated down the chain, and no Rust Debug form.
fn no_cause_repeated_and_no_debug_form(err: &str) {
    let lines: Vec<&str> = err.lines().collect();
    for (i, a) in lines.iter().enumerate() {
        for b in &lines[i + 1..] {
            let b = b.trim_start_matches("  caused by: ");
            assert!(!a.contains(b), "a cause repeated:\n{err}");
        }
    }
    assert!(
        !err.contains("Some(") && !err.contains(" { "),
        "Debug output: {err}"
    );
}

/// Errors name their cause in a line, quickly: NATS down gives the URL and
/// the OS error at once (not "request timed out" after 10 s); a SQLite path
/// that does not exist says how to create it; no cause is repeated down the
/// chain; nothing prints Rust's Debug form.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_name_their_cause() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}?mode=rwc", dir.path().join("h.db").display());
    let mut h = HeraldEnv::default();
    let port = herald_tests::free_port();
    h.set("HERALD_DATABASE_URL", db.clone())
        .set("HERALD_NATS_URL", format!("nats://127.0.0.1:{port}"))
        .set("HERALD_SMTP_URL", "file://./mail")
        .set(
            "HERALD_WORKFLOWS",
            herald_tests::example_workflows().display().to_string(),
        );
    let started = Instant::now();
    let out = run_off_runtime(&h, &["relay"]).await;
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{err}");
    // Within a second on a quiet machine; the bound leaves room for a busy CI.
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        err.contains(&format!("nats://127.0.0.1:{port}"))
            && err.to_lowercase().contains("connection refused"),
        "{err}"
    );

    a_missing_sqlite_file_or_directory_says_so(&mut h, &dir).await;
    // A PostgreSQL port nobody listens on: the OS's reason, not sqlx's
    // "pool timed out".
    let pg = format!("postgres://postgres@127.0.0.1:{port}/nothing");
    h.set("HERALD_DATABASE_URL", pg);
    let out = run_off_runtime(&h, &["relay"]).await;
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.to_lowercase().contains("connection refused") && !err.contains("timed out"),
        "{err}"
    );
    an_unknown_nats_host_is_named_at_once(&mut h, &db).await;
    a_file_the_os_refuses_names_its_error(&mut h, &dir).await;
    no_cause_repeated_and_no_debug_form(&err);
    // A duration that used to panic (exit 101) in Duration::from_secs_f64.
    let out = run_off_runtime(&h, &["worker", "--ack-wait", "99999999999999999999d"]).await;
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("longer than 100 years"), "{err}");
}

/// Commands that deliver email need an explicit --smtp-url: a forgotten one
/// used to send real deliveries into ./outbox-mail and mark them sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivering_commands_need_an_explicit_smtp_url() {
    let w = Scenario::new(Backend::Sqlite)
        .workflow("wf.yaml", NUMBERED)
        .start()
        .await;
    let mut h = w.h.clone();
    h.vars.remove("HERALD_SMTP_URL");
    for cmd in [
        vec!["worker"],
        vec!["dlq", "retry", "--all"],
        vec!["replay", "--workflow", "numbered", "--since", "1h"],
    ] {
        let out = run_off_runtime(&h, &cmd).await;
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{cmd:?}: {err}");
        assert!(err.contains("--smtp-url"), "{cmd:?}: {err}");
    }
    let _relay = w.relay();
    w.env.enqueue_many("events.test.n", 1, 0).await;
    w.env.wait_all_published().await;
    let out = run_off_runtime(
        &h,
        &[
            "replay",
            "--workflow",
            "numbered",
            "--since",
            "1h",
            "--dry-run",
        ],
    )
    .await;
    assert!(
        out.status.success(),
        "a dry run sends nothing: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// JSON logs hold real JSON values: numbers are numbers, lists are arrays,
/// and no field is a Rust Debug rendering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_hold_json_values() {
    let w = Scenario::new(Backend::Sqlite)
        .workflow("wf.yaml", NUMBERED)
        .start()
        .await;
    w.sink.script([Reply::Code(451, "4.3.0 later".into())]);
    let _relay = w.relay();
    let mut worker = w.worker_with(&["--log-format", "json"]);
    w.env.enqueue_many("events.test.n", 1, 0).await;
    w.wait_sent(1).await;
    worker.terminate(Duration::from_secs(30)).await;
    let log = worker.log();
    let mut saw_retry = false;
    let mut saw_start = false;
    for line in log.lines().filter(|l| l.starts_with('{')) {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        let fields = &v["fields"];
        if fields["message"] == "worker started" {
            saw_start = true;
            assert_eq!(
                fields["workflows"],
                serde_json::json!(["numbered"]),
                "{line}"
            );
        }
        if fields["message"] == "send failed, will retry" {
            saw_retry = true;
            assert!(fields["retry_in_ms"].is_u64(), "{line}");
            assert!(fields["attempt"].is_u64(), "{line}");
        }
        assert!(!line.contains("Some("), "{line}");
    }
    assert!(saw_retry && saw_start, "{log}");
}
