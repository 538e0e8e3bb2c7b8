//! CLI conventions: completions, man page, colour, help headings, --json.
use herald_tests::process::HeraldEnv;

/// Run in an empty directory (no herald.toml, no database).
fn run(args: &[&str]) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    in_dir(dir.path()).run(args)
}

/// Herald run in `dir`.
fn in_dir(dir: &std::path::Path) -> HeraldEnv {
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

#[test]
fn completions_for_each_shell() {
    for shell in ["bash", "zsh", "fish", "powershell"] {
        let out = run(&["completions", shell]);
        assert!(out.status.success(), "{shell}: {}", stderr(&out));
        let text = stdout(&out);
        for word in ["herald", "relay", "database-url", "completions"] {
            assert!(text.contains(word), "{shell}: lacks {word}");
        }
    }
    // The bash script is valid bash.
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("herald.bash");
    std::fs::write(&script, stdout(&run(&["completions", "bash"]))).unwrap();
    let check = std::process::Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", stderr(&check));
    let out = run(&["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("possible values"), "{}", stderr(&out));
}

#[test]
fn man_page_on_stdout_or_one_per_command() {
    let out = run(&["man"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let page = stdout(&out);
    assert!(page.contains(".TH herald 1"), "{page}");
    assert!(page.contains("relay"), "{page}");
    let dir = tempfile::tempdir().unwrap();
    let out = run(&["man", "--out-dir", &dir.path().display().to_string()]);
    assert!(out.status.success(), "{}", stderr(&out));
    for page in [
        "herald.1",
        "herald-relay.1",
        "herald-dlq-list.1",
        "herald-config.1",
    ] {
        assert!(dir.path().join(page).exists(), "{page}");
    }
}

/// A log line at info level, in colour or not.
fn log_of(env: &[(&str, &str)], args: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut e = in_dir(dir.path());
    for (k, v) in env {
        e.set(k, *v);
    }
    let mut all = args.to_vec();
    all.extend_from_slice(&["--log", "info", "migrate"]);
    let out = e.run(&all);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("INFO"), "no log line: {err}");
    err
}

#[test]
fn color_flag_and_no_color() {
    const ESC: char = '\x1b';
    // Not a terminal: no colour unless asked.
    assert!(!log_of(&[], &[]).contains(ESC));
    assert!(log_of(&[], &["--color", "always"]).contains(ESC));
    assert!(log_of(&[("HERALD_COLOR", "always")], &[]).contains(ESC));
    assert!(!log_of(&[("HERALD_COLOR", "always")], &["--color", "never"]).contains(ESC));
    // NO_COLOR turns `auto` off; an explicit --color always still wins.
    assert!(!log_of(&[("NO_COLOR", "1")], &[]).contains(ESC));
    assert!(log_of(&[("NO_COLOR", "1")], &["--color", "always"]).contains(ESC));
    // Help follows --color too.
    assert!(stdout(&run(&["--color", "always", "--help"])).contains(ESC));
    assert!(!stdout(&run(&["--color", "never", "--help"])).contains(ESC));

    let out = run(&["--color", "purple", "status"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("invalid value 'purple'"), "{err}");
    assert!(err.contains("auto, always, never"), "{err}");
}

#[test]
fn help_shows_global_flags_apart() {
    let out = run(&["relay", "--help"]);
    assert!(out.status.success());
    let help = stdout(&out);
    let at = |needle: &str| {
        help.find(needle)
            .unwrap_or_else(|| panic!("{needle} not in help:\n{help}"))
    };
    assert!(at("Relay options:") < at("--relay-batch"));
    assert!(at("HTTP options:") < at("--http-token"));
    assert!(at("Global options:") < at("--database-url"));
    assert!(
        at("--relay-batch") < at("Global options:"),
        "the command's own first"
    );
    for (cmd, heading) in [("worker", "Worker options:"), ("up", "Up options:")] {
        let help = stdout(&run(&[cmd, "--help"]));
        assert!(help.contains(heading), "{cmd}: {help}");
        assert!(help.contains("Global options:"), "{cmd}: {help}");
    }
}

#[test]
fn every_read_command_takes_json() {
    let read = [
        &["status"][..],
        &["trace", "00000000-0000-7000-8000-000000000000"],
        &["dlq", "list"],
        &["dlq", "show", "1"],
        &["suppressions", "list"],
        &["unsubscribes", "list"],
        &["workflows", "list"],
        &["workflows", "validate"],
        &["config"],
    ];
    for args in read {
        let mut help = args.to_vec();
        help.push("--help");
        let text = stdout(&run(&help));
        assert!(text.contains("--json"), "{args:?} lacks --json:\n{text}");
    }
    // Those that need no server answer valid JSON.
    let root = herald_tests::workspace_root();
    let dir = tempfile::tempdir().unwrap();
    let mut env = HeraldEnv {
        cwd: Some(dir.path().to_path_buf()),
        ..HeraldEnv::default()
    };
    env.set(
        "HERALD_WORKFLOWS",
        root.join("workflows").display().to_string(),
    )
    // The sample campaign has a category: `config` checks what a worker
    // would need for it.
    .set("HERALD_PUBLIC_URL", "https://mail.example.org")
    .set("HERALD_UNSUBSCRIBE_SECRET", "0123456789abcdef0123");
    assert!(env.run(&["migrate"]).status.success());
    for args in [
        &["workflows", "list", "--json"][..],
        &["workflows", "validate", "--json"],
        &["suppressions", "list", "--json"],
        &["unsubscribes", "list", "--json"],
        &["dlq", "list", "--json"],
        &["config", "--json"],
    ] {
        let out = env.run(args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        let v: Result<serde_json::Value, _> = serde_json::from_str(&stdout(&out));
        assert!(v.is_ok(), "{args:?}: not JSON: {}", stdout(&out));
    }
    let list: serde_json::Value =
        serde_json::from_str(&stdout(&env.run(&["workflows", "list", "--json"]))).unwrap();
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|w| w["name"] == "contract-signed-welcome"),
        "{list}"
    );

    // validate --json: the problems as data, exit 2 all the same.
    let bad = dir.path().join("wf");
    std::fs::create_dir(&bad).unwrap();
    std::fs::write(
        bad.join("a.yaml"),
        "name: Bad\non: {subjects: [events.a]}\n",
    )
    .unwrap();
    let out = env.run(&[
        "workflows",
        "validate",
        "--json",
        &bad.display().to_string(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["valid"], false);
    let p = &v["problems"][0];
    assert!(p["file"].as_str().unwrap().ends_with("a.yaml"), "{v}");
    assert!(
        p["line"].as_u64().unwrap() >= 1 && p["col"].as_u64().unwrap() >= 1,
        "{v}"
    );
    assert!(p["message"].is_string(), "{v}");
}

/// `herald … | head`: a reader that stops early ends herald as it ends
/// `cat` (SIGPIPE), with no panic report. The zsh completions (~100 KB) do
/// not fit in a pipe's buffer, so herald is still writing when the reader
/// closes.
#[test]
fn a_closed_pipe_ends_a_printing_command_quietly() {
    use std::os::unix::process::ExitStatusExt;
    use std::process::{Command, Stdio};
    let mut child = Command::new(herald_tests::process::herald_bin())
        .args(["completions", "zsh"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panic"), "{err}");
    assert_ne!(out.status.code(), Some(101), "{err}");
    assert!(
        out.status.success() || out.status.signal() == Some(13),
        "{:?}: {err}",
        out.status
    );
}

/// A bad value from an environment variable is reported under the
/// variable's name, not the flag's the user never typed; a negative number
/// after a numeric flag is checked as a value, not taken for a flag.
#[test]
fn bad_values_name_their_source() {
    let dir = tempfile::tempdir().unwrap();
    let mut e = in_dir(dir.path());
    e.set("HERALD_RELAY_IN_FLIGHT", "0");
    let out = e.run(&["relay"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("HERALD_RELAY_IN_FLIGHT (the environment variable of --relay-in-flight)")
            && err.contains("0 is not in 1..=16"),
        "{err}"
    );
    // On the command line, the flag is named (and wins over the variable).
    let out = e.run(&["relay", "--relay-in-flight", "-1"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("'--relay-in-flight <RELAY_IN_FLIGHT>'")
            && err.contains("-1 is not in 1..=16"),
        "{err}"
    );
    // Durations that would break a guarantee or spin are refused, with why.
    for (args, says) in [
        (&["relay", "--relay-lease", "0s"][..], "at least 1s"),
        (&["relay", "--relay-poll", "0ms"][..], "at least 10ms"),
        (
            &["worker", "--ack-wait", "500ms"][..],
            "lease of a delivery's claim",
        ),
        // Each valid, unsafe together; refused by the relay and by config.
        (
            &["relay", "--relay-lease", "6m"][..],
            "--relay-lease 6m must be at most half of --duplicate-window 10m",
        ),
        (
            &["up", "--relay-lease", "2m", "--duplicate-window", "3m"][..],
            "at most half of --duplicate-window 3m",
        ),
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
    }
}

/// A `HERALD_*` variable that no setting reads (a misspelt name) is
/// warned about, with the name it resembles; the command still runs.
#[test]
fn unknown_variables_are_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let mut e = in_dir(dir.path());
    e.set("HERALD_CONCURRENCY", "-3");
    let out = e.run(&["config"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(
            "HERALD_CONCURRENCY is not a Herald setting and is ignored (did you mean \"HERALD_WORKER_CONCURRENCY\"?)"
        ),
        "{}",
        stderr(&out)
    );
    // A variable a setting reads: no warning.
    let mut e = in_dir(dir.path());
    e.set("HERALD_WORKER_CONCURRENCY", "8");
    let out = e.run(&["config"]);
    assert!(!stderr(&out).contains("warning"), "{}", stderr(&out));
}
