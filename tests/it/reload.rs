//! Workflows change without a restart: SIGHUP (or `POST /reload` with the
//! token) loads the directory again; a valid set replaces the running one
//! between messages (new workflows start, removed ones stop, changed
//! templates apply to the next message); a set with any problem is refused
//! with its file:line:col logged, and the running set goes on.
use herald_tests::both_backends;
use herald_tests::db::Backend;
use herald_tests::process::Herald;
use herald_tests::scenario::{Scenario, World};
use herald_tests::{http_request, wait};
use serde_json::json;

fn workflow(name: &str, subject: &str, title: &str) -> String {
    format!(
        "name: {name}\non: {{ subjects: [{subject}] }}\nemail:\n  from: a@example.com\n  to: \"{{{{event.email}}}}\"\n  subject: \"{title}\"\n  text: x\n"
    )
}

/// The version `/readyz` reports.
async fn version(addr: &str) -> String {
    let r = http_request(addr, "GET", "/readyz", "")
        .await
        .unwrap_or_default();
    r.lines()
        .find_map(|l| l.strip_prefix("workflows "))
        .unwrap_or_default()
        .to_string()
}

async fn subjects_received(w: &World) -> Vec<String> {
    w.sink
        .received()
        .iter()
        .map(|m| m.header("Subject").unwrap_or_default())
        .collect()
}

/// A broken set: refused, logged with file:line:col; the running set goes on.
async fn a_broken_set_is_refused_and_the_running_set_goes_on(
    w: &World,
    worker: &Herald,
    addr: &str,
    v2: &str,
) {
    let dir = w.workflows_dir();
    std::fs::write(dir.join("bad.yaml"), "name: bad\non: { subjects: [events.bad] }\nemail:\n  from: a@example.com\n  to: b@example.com\n  subject: \"{{date event.at \\\"%Q\\\"}}\"\n  text: x\n").unwrap();
    worker.signal("HUP");
    let bad = dir.join("bad.yaml").display().to_string();
    wait::until("the refusal is logged", wait::DEFAULT, || async {
        worker.log().contains("reload refused")
    })
    .await;
    let log = worker.log();
    assert!(log.contains(&format!("{bad}:6:")), "{log}");
    assert_eq!(version(addr).await, v2, "the running set is unchanged");
    w.emit("events.a.x", json!({"email": "y@example.com"}))
        .await;
    w.wait_emails(4).await;
    assert_eq!(w.sink.received()[3].header("Subject").unwrap(), "A v2");
    assert!(
        !subjects_received(w).await.contains(&"C".to_string()),
        "c was removed"
    );
}

async fn sighup_swaps_the_workflow_set_and_refuses_a_broken_one(backend: Backend) {
    let w = Scenario::new(backend)
        .workflow("a.yaml", &workflow("a", "events.a.>", "A v1"))
        .workflow("c.yaml", &workflow("c", "events.c.>", "C"))
        .start()
        .await;
    let addr = format!("127.0.0.1:{}", herald_tests::free_port());
    let _relay = w.relay();
    let worker = w.worker_with(&["--http", &addr, "--http-token", "reload-token-0123"]);
    w.emit("events.a.x", json!({"email": "x@example.com"}))
        .await;
    w.wait_emails(1).await;
    let v1 = version(&addr).await;
    assert_eq!(v1.len(), 12, "{v1:?}");

    // Change a's subject line, add b, remove c; then SIGHUP.
    let dir = w.workflows_dir();
    std::fs::write(dir.join("a.yaml"), workflow("a", "events.a.>", "A v2")).unwrap();
    std::fs::write(dir.join("b.yaml"), workflow("b", "events.b.>", "B")).unwrap();
    std::fs::remove_file(dir.join("c.yaml")).unwrap();
    worker.signal("HUP");
    wait::until("the new set is running", wait::DEFAULT, || async {
        let v = version(&addr).await;
        !v.is_empty() && v != v1
    })
    .await;
    let v2 = version(&addr).await;
    w.emit("events.a.x", json!({"email": "x@example.com"}))
        .await;
    w.emit("events.b.x", json!({"email": "x@example.com"}))
        .await;
    w.emit("events.c.x", json!({"email": "x@example.com"}))
        .await;
    w.wait_emails(3).await;
    let got = subjects_received(&w).await;
    assert!(got.contains(&"A v2".to_string()), "{got:?}");
    assert!(got.contains(&"B".to_string()), "{got:?}");
    wait::until(
        "/readyz is ready with a, b and without c",
        wait::DEFAULT,
        || async {
            http_request(&addr, "GET", "/readyz", "")
                .await
                .is_some_and(|r| r.starts_with("HTTP/1.1 200"))
        },
    )
    .await;

    a_broken_set_is_refused_and_the_running_set_goes_on(&w, &worker, &addr, &v2).await;

    // POST /reload: the token is required; a fixed directory loads.
    let r = http_request(&addr, "POST", "/reload", "").await.unwrap();
    assert!(r.starts_with("HTTP/1.1 403"), "{r}");
    std::fs::remove_file(dir.join("bad.yaml")).unwrap();
    std::fs::write(dir.join("a.yaml"), workflow("a", "events.a.>", "A v3")).unwrap();
    let r = authorized_reload(&addr).await;
    assert!(
        r.starts_with("HTTP/1.1 200") && r.contains("reloaded: version"),
        "{r}"
    );
    w.emit("events.a.x", json!({"email": "z@example.com"}))
        .await;
    w.wait_emails(5).await;
    assert_eq!(w.sink.received()[4].header("Subject").unwrap(), "A v3");
    assert_eq!(w.count("SELECT COUNT(*) FROM herald_dead_letters").await, 0);
}

async fn authorized_reload(addr: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        b"POST /reload HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer reload-token-0123\r\nContent-Length: 0\r\n\r\n",
    )
    .await
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

both_backends!(sighup_swaps_the_workflow_set_and_refuses_a_broken_one);
