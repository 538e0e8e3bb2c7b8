//! herald.toml: precedence flag > environment > file > default, problems at
//! FILE:LINE:COL (exit 2), `herald config` with sources and secrets redacted.
use std::path::Path;

use herald_tests::process::HeraldEnv;

fn in_dir(dir: &Path) -> HeraldEnv {
    HeraldEnv {
        cwd: Some(dir.to_path_buf()),
        ..HeraldEnv::default()
    }
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn config_json(env: &HeraldEnv, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["config", "--json"];
    all.extend_from_slice(args);
    let out = env.run(&all);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_str(&stdout(&out)).unwrap()
}

const FILE: &str = r#"# a comment
stream = "FROM_FILE"
database_url = "sqlite://from-file.db?mode=rwc"

[relay]
relay_batch = 7

[worker]
ack_wait = "90s"
"#;

#[test]
fn precedence_is_flag_then_env_then_file_then_default() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("herald.toml"), FILE).unwrap();
    let mut env = in_dir(dir.path());

    let c = config_json(&env, &[]);
    assert_eq!(c["file"], "herald.toml");
    let s = &c["settings"];
    assert_eq!(s["stream"]["value"], "FROM_FILE");
    assert_eq!(s["stream"]["source"], "file");
    assert_eq!(s["stream"]["origin"], "herald.toml:2:10");
    assert_eq!(s["relay"]["relay_batch"]["value"], 7);
    assert_eq!(s["relay"]["relay_batch"]["origin"], "herald.toml:6:15");
    assert_eq!(s["worker"]["ack_wait"]["value"], "90s");
    assert_eq!(s["worker"]["concurrency"]["source"], "default");
    assert_eq!(s["worker"]["concurrency"]["value"], 16);
    assert_eq!(s["smtp_url"]["source"], "unset");
    assert_eq!(s["smtp_url"]["value"], serde_json::Value::Null);

    env.set("HERALD_STREAM", "FROM_ENV");
    env.set("HERALD_RELAY_BATCH", "9");
    let s = &config_json(&env, &[])["settings"];
    assert_eq!(s["stream"]["value"], "FROM_ENV");
    assert_eq!(s["stream"]["source"], "env");
    assert_eq!(s["stream"]["origin"], "HERALD_STREAM");
    assert_eq!(s["relay"]["relay_batch"]["value"], 9);
    assert_eq!(s["relay"]["relay_batch"]["source"], "env");

    let s = &config_json(&env, &["--stream", "FROM_FLAG"])["settings"];
    assert_eq!(s["stream"]["value"], "FROM_FLAG");
    assert_eq!(s["stream"]["source"], "flag");
    assert_eq!(s["stream"]["origin"], "--stream");

    // The text form says the same, one line per setting.
    let out = env.run(&["config"]);
    let text = stdout(&out);
    assert!(text.contains("# configuration file: herald.toml"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("stream = \"FROM_ENV\"") && l.ends_with("# env HERALD_STREAM")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("ack_wait = \"90s\"") && l.ends_with("# file herald.toml:9:12")),
        "{text}"
    );
    assert!(text.contains("\n[relay]\n"), "{text}");
}

/// The file's values are what the commands use, not only what `config` shows.
#[test]
fn commands_use_the_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("herald.toml"), FILE).unwrap();
    let out = in_dir(dir.path()).run(&["migrate"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(dir.path().join("from-file.db").exists());

    // --config and HERALD_CONFIG name another file; herald.toml is then not read.
    let other = dir.path().join("other.toml");
    std::fs::write(&other, "database_url = \"sqlite://other.db?mode=rwc\"\n").unwrap();
    let out = in_dir(dir.path()).run(&["--config", "other.toml", "migrate"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(dir.path().join("other.db").exists());
    let mut env = in_dir(dir.path());
    env.set("HERALD_CONFIG", other.display().to_string());
    let c = config_json(&env, &[]);
    assert_eq!(c["file"], other.display().to_string());
    assert_eq!(c["settings"]["stream"]["source"], "default");
}

#[test]
fn no_file_is_fine_but_a_named_missing_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let env = in_dir(dir.path());
    let c = config_json(&env, &[]);
    assert_eq!(c["file"], serde_json::Value::Null);
    assert_eq!(c["settings"]["stream"]["source"], "default");

    let out = env.run(&["--config", "missing.toml", "config"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out)
            .starts_with("herald: cannot read the configuration file --config missing.toml"),
        "{}",
        stderr(&out)
    );
    let mut env = in_dir(dir.path());
    env.set("HERALD_CONFIG", "/nonexistent/herald.toml");
    let out = env.run(&["status"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("HERALD_CONFIG=/nonexistent/herald.toml"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn problems_exit_2_with_file_line_col() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &[&str]); 7] = [
        (
            "strem = \"X\"\n",
            &["herald.toml:1:1: unknown key \"strem\" at the top level (did you mean \"stream\"?)"],
        ),
        (
            "[relay]\nrelay_batch = \"many\"\n",
            &["herald.toml:2:15: relay.relay_batch must be an integer, not a string"],
        ),
        (
            "[relay]\nrelay_batch = 0\n",
            &["herald.toml:2:15: invalid relay.relay_batch \"0\": 0 is not in 1..=10000"],
        ),
        (
            "[relay]\nconcurrency = 4\n",
            &["herald.toml:2:1: unknown key \"concurrency\" in [relay]: it belongs in [worker]"],
        ),
        (
            "[wroker]\n",
            &["herald.toml:1:2: unknown section [wroker] (did you mean \"worker\"?)"],
        ),
        ("stream = \n", &["herald.toml:1:", "invalid TOML"]),
        (
            "log_format = \"xml\"\n[worker]\nack_wait = \"soon\"\n",
            &[
                "2 problems in herald.toml",
                "\nherald.toml:1:14: invalid log_format \"xml\": expected one of text, json",
                "\nherald.toml:3:12: invalid worker.ack_wait \"soon\"",
            ],
        ),
    ];
    for (text, needles) in cases {
        std::fs::write(dir.path().join("herald.toml"), text).unwrap();
        // Any command refuses to start, not only `config`.
        for args in [&["config"][..], &["migrate"][..]] {
            let out = in_dir(dir.path()).run(args);
            assert_eq!(out.status.code(), Some(2), "{text:?}: {}", stderr(&out));
            let err = stderr(&out);
            assert!(err.starts_with("herald: "), "{err}");
            for n in needles {
                assert!(err.contains(n), "{text:?}: wanted {n:?} in\n{err}");
            }
            assert!(!err.contains("panicked"), "{err}");
        }
        assert!(!dir.path().join("herald.db").exists(), "nothing ran");
    }
}

#[test]
fn config_redacts_secrets_and_checks_settings_together() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("herald.toml"),
        "smtp_url = \"smtp://mailer:smtp-hunter2@smtp.example:587\"\n\
         [worker]\npublic_url = \"https://mail.example\"\nunsubscribe_secret = \"unsubscribe-hunter2-0123\"\n\
         [http]\nhttp_token = \"token-hunter2\"\n",
    )
    .unwrap();
    let mut env = in_dir(dir.path());
    env.set(
        "HERALD_DATABASE_URL",
        "postgres://herald:db-hunter2@db.example/herald",
    );
    for args in [&["config"][..], &["config", "--json"][..]] {
        let out = env.run(args);
        assert!(out.status.success(), "{}", stderr(&out));
        let all = format!("{}{}", stdout(&out), stderr(&out));
        assert!(!all.contains("hunter2"), "a secret leaked: {all}");
        assert!(
            all.contains("postgres://herald:***@db.example/herald"),
            "{all}"
        );
        assert!(all.contains("smtp://mailer:***@smtp.example:587"), "{all}");
    }
    // `--help` does not print the file's secrets as defaults either.
    let out = env.run(&["worker", "--help"]);
    assert!(!stdout(&out).contains("hunter2"), "{}", stdout(&out));

    // Settings that only make sense together are checked as the worker would.
    std::fs::write(
        dir.path().join("herald.toml"),
        "[worker]\npublic_url = \"https://mail.example\"\n",
    )
    .unwrap();
    let out = in_dir(dir.path()).run(&["config"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--unsubscribe-secret"),
        "{}",
        stderr(&out)
    );
    // So are environment values of settings `config` takes no flag for.
    let mut env = in_dir(dir.path());
    env.set("HERALD_CONFIG", "/dev/null");
    env.set("HERALD_WORKER_CONCURRENCY", "lots");
    let out = env.run(&["config"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("HERALD_WORKER_CONCURRENCY=\"lots\""),
        "{}",
        stderr(&out)
    );
}

/// A broken herald.toml in the working directory does not stop `--help`,
/// `help COMMAND` or `--version` (the help is where one looks up the fix);
/// they still say what is wrong with the file. Every command refuses it,
/// even when a flag's value happens to be `-h`.
#[test]
fn help_and_version_answer_despite_a_broken_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("herald.toml"), "nats_url = \n").unwrap();
    let env = in_dir(dir.path());
    for args in [
        &["--help"][..],
        &["worker", "--help"],
        &["help", "worker"],
        &["--version"],
    ] {
        let o = env.run(args);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
        assert!(!stdout(&o).is_empty(), "{args:?}");
        assert!(
            stderr(&o).contains("herald.toml:1:12") && stderr(&o).contains("ignored"),
            "{args:?}: {}",
            stderr(&o)
        );
    }
    for args in [
        &["status"][..],
        &["emit", "--subject", "-h", "--payload", "{}"],
    ] {
        let o = env.run(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(
            stderr(&o).contains("herald.toml:1:12") && !stderr(&o).contains("ignored"),
            "{args:?}: {}",
            stderr(&o)
        );
    }
}

/// `herald config` checks the workflows a worker here would run: every
/// problem at FILE:LINE:COL, and the settings they need (a workflow with a
/// category needs the unsubscribe settings), so exit 0 means a worker
/// would start. Without a workflows directory (a relay's host) it skips.
#[test]
fn config_checks_the_workflows_a_worker_would_run() {
    let dir = tempfile::tempdir().unwrap();
    let mut env = in_dir(dir.path());
    env.set(
        "HERALD_WORKFLOWS",
        herald_tests::example_workflows().display().to_string(),
    );
    let out = env.run(&["config"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("workflow campaign-codes has a category"),
        "{}",
        stderr(&out)
    );
    env.set("HERALD_PUBLIC_URL", "https://mail.example.org")
        .set("HERALD_UNSUBSCRIBE_SECRET", "0123456789abcdef0123");
    assert!(env.run(&["config"]).status.success());
    let broken = dir.path().join("wf");
    std::fs::create_dir(&broken).unwrap();
    std::fs::write(broken.join("a.yaml"), "name: a\nwat: 1\n").unwrap();
    env.set("HERALD_WORKFLOWS", broken.display().to_string());
    let out = env.run(&["config"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("a.yaml:2:1: unknown field `wat`"),
        "{}",
        stderr(&out)
    );
    env.set(
        "HERALD_WORKFLOWS",
        dir.path().join("none").display().to_string(),
    );
    assert!(env.run(&["config"]).status.success());
}
