//! No command's output, in any mode or error path, contains a password.

use super::NUMBERED;
use herald_tests::db::Backend;
use herald_tests::process::HeraldEnv;
use herald_tests::scenario::{Scenario, World, run_off_runtime};
use herald_tests::wait;
use std::time::Duration;

const SMTP_PW: &str = "S3cretSmtpPW";
const DB_PW: &str = "S3cretDbPW";
const NATS_PW: &str = "S3cretNatsPW";

/// What a command printed, stdout then stderr, under its name.
fn recorded(what: &str, out: &std::process::Output) -> (String, String) {
    (
        what.to_string(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The scenario's environment with a password in each of the three URLs.
fn env_with_passwords(w: &World) -> HeraldEnv {
    let db_url = w.env.db.url.replacen(
        "postgres://postgres@",
        &format!("postgres://postgres:{DB_PW}@"),
        1,
    );
    let nats_url = w
        .env
        .nats
        .url()
        .replacen("nats://", &format!("nats://user:{NATS_PW}@"), 1);
    let mut h = w.h.clone();
    h.set("HERALD_DATABASE_URL", db_url)
        .set("HERALD_NATS_URL", nats_url)
        .set(
            "HERALD_SMTP_URL",
            format!("smtp://alice:{SMTP_PW}@127.0.0.1:1"),
        );
    h
}

/// `--help` and the short commands, each recorded.
async fn short_commands(h: &HeraldEnv) -> Vec<(String, String)> {
    let mut outputs = Vec::new();
    for cmd in [
        vec!["--help"],
        vec!["worker", "--help"],
        vec!["relay", "--help"],
        vec!["up", "--help"],
        vec!["dlq", "retry", "--help"],
        vec!["replay", "--help"],
        vec!["migrate"],
        vec![
            "emit",
            "--subject",
            "events.test.n",
            "--payload",
            r#"{"n": 1}"#,
        ],
        vec!["status"],
        vec!["status", "--json"],
        vec!["dlq", "list"],
        vec!["dlq", "retry", "--all"],
        vec!["trace", "01a20bab-c8d1-71f7-a1a6-aa0f6e2e33dd"],
        vec![
            "replay",
            "--workflow",
            "numbered",
            "--since",
            "1h",
            "--dry-run",
        ],
        vec!["workflows", "validate"],
        vec!["--log-format", "json", "status"],
    ] {
        outputs.push(recorded(&cmd.join(" "), &run_off_runtime(h, &cmd).await));
    }
    outputs
}

/// The worker started with bad URLs holding passwords: their errors name them redacted.
async fn bad_urls(h: &HeraldEnv) -> Vec<(String, String)> {
    let mut outputs = Vec::new();
    // Bad URLs holding passwords: their errors name them redacted.
    for (var, bad) in [
        ("HERALD_SMTP_URL", format!("smtpx://alice:{SMTP_PW}@host")),
        (
            "HERALD_SMTP_URL",
            format!("smtp://alice:{SMTP_PW}@host?pool=x"),
        ),
        (
            "HERALD_DATABASE_URL",
            format!("postgres://postgres:{DB_PW}@127.0.0.1:1/db"),
        ),
        (
            "HERALD_DATABASE_URL",
            format!("mysql://root:{DB_PW}@host/db"),
        ),
        (
            "HERALD_NATS_URL",
            format!("nats://user:{NATS_PW}@127.0.0.1:1"),
        ),
    ] {
        let mut bad_env = h.clone();
        bad_env.set(var, bad.clone());
        outputs.push(recorded(
            &format!("worker with {var}"),
            &run_off_runtime(&bad_env, &["worker"]).await,
        ));
    }
    outputs
}

/// The logs of `worker`, `relay` and `up` (which log at start-up; the worker
/// meets the unreachable SMTP server and says so).
async fn long_running_logs(h: &HeraldEnv) -> Vec<(String, String)> {
    let mut outputs = Vec::new();
    // The long-running ones log at start-up, and the worker meets the
    // unreachable SMTP server and says so.
    let mut worker = h.spawn(&["worker", "--log-format", "json"]);
    let mut relay = h.spawn(&["relay"]);
    wait::until(
        "the worker reports the SMTP outage",
        wait::DEFAULT,
        || async { worker.log().contains("SMTP transport unreachable") },
    )
    .await;
    worker.terminate(Duration::from_secs(30)).await;
    relay.terminate(Duration::from_secs(30)).await;
    outputs.push(("worker log".into(), worker.log()));
    outputs.push(("relay log".into(), relay.log()));
    let mut up_env = h.clone();
    up_env.set("HERALD_LOG", "debug");
    let mut up = up_env.spawn(&["up"]);
    wait::until("up is up", wait::DEFAULT, || async {
        up.log().contains("herald is up")
    })
    .await;
    up.terminate(Duration::from_secs(30)).await;
    outputs.push(("up log".into(), up.log()));
    outputs
}

/// Every command, with credentials in all three URLs (and in a bad one):
/// `--help`, short commands, the long-running ones (which log at start-up
/// and hit an unreachable SMTP server), JSON logs and error paths. No output
/// contains a password. (`up` printed the SMTP password at start-up, and
/// `worker --help` printed HERALD_SMTP_URL's value.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_appear_in_any_output() {
    let w = Scenario::new(Backend::Postgres)
        .workflow("wf.yaml", NUMBERED)
        .start()
        .await;
    let h = env_with_passwords(&w);
    let mut outputs: Vec<(String, String)> = Vec::new();
    outputs.extend(short_commands(&h).await);
    outputs.extend(bad_urls(&h).await);
    outputs.extend(long_running_logs(&h).await);
    for (what, text) in &outputs {
        for pw in [SMTP_PW, DB_PW, NATS_PW] {
            assert!(!text.contains(pw), "{what} shows a password:\n{text}");
        }
    }
    let help = &outputs[1].1;
    assert!(
        help.contains("HERALD_SMTP_URL"),
        "the variable is named: {help}"
    );
}
