//! `herald up` and `herald demo`: everything in one process, starting its own
//! nats-server when none answers.
use std::time::Duration;

use herald_tests::db::{Backend, TestDb};
use herald_tests::process::HeraldEnv;
use herald_tests::smtp::SmtpSink;
use herald_tests::wait;

/// A herald environment whose NATS URL points at a free port where nothing
/// answers, with a nats.conf of its own (temp store, no monitoring port).
fn env_without_nats(db: &TestDb, sink: &SmtpSink, dir: &tempfile::TempDir) -> (HeraldEnv, u16) {
    let port = herald_tests::free_port();
    let conf = dir.path().join("nats.conf");
    std::fs::write(
        &conf,
        format!(
            "listen: 127.0.0.1:4222\njetstream {{ store_dir: {:?} }}\n",
            dir.path().join("js")
        ),
    )
    .unwrap();
    let mut env = HeraldEnv::default();
    env.set("HERALD_DATABASE_URL", db.url.clone())
        .set("HERALD_NATS_URL", format!("nats://127.0.0.1:{port}"))
        .set("HERALD_SMTP_URL", sink.url())
        .set(
            "HERALD_WORKFLOWS",
            herald_tests::example_workflows().display().to_string(),
        )
        .set("HERALD_NATS_CONFIG", conf.display().to_string())
        .set(
            "HERALD_NATS_SERVER_BIN",
            herald_tests::nats::binary().display().to_string(),
        );
    env.cwd = Some(dir.path().to_path_buf());
    (env, port)
}

fn port_answers(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_sends_the_sample_emails_and_cleans_up() {
    let db = TestDb::new(Backend::Sqlite).await;
    let sink = SmtpSink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (env, port) = env_without_nats(&db, &sink, &dir);
    // Off the runtime: the SMTP sink the demo sends to runs on it.
    let out = tokio::task::spawn_blocking(move || env.run(&["demo"]))
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // contract (1) + vault (1, to both owners) + campaign (2 recipients) + offer (1)
    assert!(stdout.contains("demo: 5 email(s) sent"), "{stdout}");
    assert_eq!(sink.count(), 5);
    assert!(
        !port_answers(port),
        "the nats-server child is stopped with the demo"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_runs_until_sigterm() {
    let db = TestDb::new(Backend::Sqlite).await;
    let sink = SmtpSink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (env, port) = env_without_nats(&db, &sink, &dir);
    let mut up = env.spawn(&["up"]);
    wait::until("up has started its nats-server", wait::DEFAULT, || async {
        port_answers(port)
    })
    .await;
    let sample = herald_tests::example_workflows().join("samples/events.campaign.wave_sent.json");
    let out = env.run(&[
        "emit",
        "--subject",
        "events.campaign.wave_sent",
        "--payload",
        &format!("@{}", sample.display()),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait::until(
        "the emitted campaign is delivered",
        wait::DEFAULT,
        || async { sink.count() >= 2 },
    )
    .await;
    assert_eq!(
        up.terminate(Duration::from_secs(30)).await.code(),
        Some(0),
        "{}",
        up.log()
    );
    assert!(
        !port_answers(port),
        "the nats-server child is stopped with up"
    );
    assert_eq!(sink.count(), 2);
}

/// The pid of the nats-server listening on `port` (the one `up` started).
fn nats_pid(port: u16) -> Option<u32> {
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmd
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let is_nats = args.first().is_some_and(|a| a.ends_with("nats-server"));
        if is_nats
            && args
                .windows(2)
                .any(|w| w[0] == "-p" && w[1] == port.to_string())
        {
            return Some(pid);
        }
    }
    None
}

/// `up` used to notice its nats-server child had died only by missed
/// heartbeats. Now it starts it again (same store) and the mail flows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_restarts_its_nats_server_when_it_dies() {
    let db = TestDb::new(Backend::Sqlite).await;
    let sink = SmtpSink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (env, port) = env_without_nats(&db, &sink, &dir);
    let mut up = env.spawn(&["up"]);
    wait::until("up is up", wait::DEFAULT, || async {
        up.log().contains("herald is up")
    })
    .await;
    let first = nats_pid(port).expect("the nats-server child");
    let _ = std::process::Command::new("kill")
        .args(["-9", &first.to_string()])
        .status();
    wait::until("up starts nats-server again", wait::DEFAULT, || async {
        nats_pid(port).is_some_and(|p| p != first) && port_answers(port)
    })
    .await;
    let sample = herald_tests::example_workflows().join("samples/events.campaign.wave_sent.json");
    let out = env.run(&[
        "emit",
        "--subject",
        "events.campaign.wave_sent",
        "--payload",
        &format!("@{}", sample.display()),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait::until("mail flows after the restart", wait::DEFAULT, || async {
        sink.count() >= 2
    })
    .await;
    assert!(
        up.log().contains("nats-server exited; starting it again"),
        "{}",
        up.log()
    );
    assert_eq!(
        up.terminate(Duration::from_secs(30)).await.code(),
        Some(0),
        "{}",
        up.log()
    );
    assert!(!port_answers(port));
}

/// If its nats-server cannot be started again, `up` stops and exits 1
/// saying why, instead of running on without one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_exits_1_when_its_nats_server_cannot_be_restarted() {
    let db = TestDb::new(Backend::Sqlite).await;
    let sink = SmtpSink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (mut env, port) = env_without_nats(&db, &sink, &dir);
    // A wrapper that runs nats-server the first time only.
    let real = herald_tests::nats::binary();
    let wrapper = dir.path().join("nats-once.sh");
    let flag = dir.path().join("started-once");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nif [ -e {flag:?} ]; then echo refusing >&2; exit 3; fi\ntouch {flag:?}\nexec {real:?} \"$@\"\n"
        ),
    )
    .unwrap();
    std::process::Command::new("chmod")
        .args(["+x", wrapper.to_str().unwrap()])
        .status()
        .unwrap();
    env.set("HERALD_NATS_SERVER_BIN", wrapper.display().to_string());
    let mut up = env.spawn(&["up"]);
    wait::until("up is up", wait::DEFAULT, || async {
        up.log().contains("herald is up")
    })
    .await;
    let pid = nats_pid(port).expect("the nats-server child");
    let _ = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status();
    let status = up.wait(Duration::from_secs(60)).await;
    assert_eq!(status.code(), Some(1), "{}", up.log());
    assert!(
        up.log().contains("could not be started again"),
        "{}",
        up.log()
    );
}

/// A nats-server that cannot start (here: its monitoring port is taken)
/// is reported with nats-server's own reason, not only "see the log".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_says_why_its_nats_server_did_not_start() {
    let db = TestDb::new(Backend::Sqlite).await;
    let sink = SmtpSink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (env, _) = env_without_nats(&db, &sink, &dir);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let monitor = taken.local_addr().unwrap().port();
    let conf = dir.path().join("nats.conf");
    let text = std::fs::read_to_string(&conf).unwrap();
    std::fs::write(&conf, format!("{text}http: 127.0.0.1:{monitor}\n")).unwrap();
    let out = tokio::task::spawn_blocking(move || env.run(&["up"]))
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("exited at start") && err.contains("address already in use"),
        "{err}"
    );
    drop(taken);
}

/// A nats.conf nats-server cannot parse is reported with its own FILE:LINE:COL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_names_a_nats_config_error() {
    let db = TestDb::new(Backend::Sqlite).await;
    let sink = SmtpSink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (env, _) = env_without_nats(&db, &sink, &dir);
    let conf = dir.path().join("nats.conf");
    let text = std::fs::read_to_string(&conf).unwrap();
    std::fs::write(&conf, format!("{text}write_deadline: \"soon\"\n")).unwrap();
    let out = tokio::task::spawn_blocking(move || env.run(&["up"]))
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("exited at start") && err.contains("nats.conf:3:"),
        "{err}"
    );
}
