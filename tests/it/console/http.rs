//! The console over plain HTTP: escaping, CSRF and method refusals, read-only
//! mode, silent clients, readiness reasons, metric names and labels.

use super::{Console, TOKEN, header, request};
use herald_tests::db::Backend;
use herald_tests::smtp::{Outage, Reply};
use herald_tests::{both_backends, wait};
use serde_json::json;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Every page renders (200) with a strict CSP and the payload escaped;
/// search finds an event by its whole address or id, never a substring.
async fn pages_render_escaped_with_a_strict_csp(
    c: &Console,
    ok: &str,
    bad: &str,
    evil: &str,
    dl: i64,
) {
    for path in [
        "/".to_string(),
        "/dead-letters".into(),
        "/dead-letters?workflow=greet&closed=1".into(),
        format!("/dead-letters/{dl}"),
        format!("/events/{ok}"),
        format!("/events/{bad}"),
        "/search".into(),
        "/search?q=ANN_X%40example.org".into(),
    ] {
        let (status, head, body) = c.get(&path).await;
        assert_eq!(status, 200, "{path}: {head}\n{body}");
        assert!(!body.contains(evil), "{path} shows the payload unescaped");
        let csp = header(&head, "content-security-policy").unwrap_or_default();
        assert!(
            csp.contains("default-src 'none'") && csp.contains("style-src 'nonce-"),
            "{path}: {csp}"
        );
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
    }
    let (_, _, page) = c.get(&format!("/dead-letters/{dl}")).await;
    assert!(
        page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{page}"
    );
    assert!(page.contains("5.1.1 no such user"));
    let (_, _, found) = c.get("/search?q=ANN_X%40example.org").await;
    assert!(found.contains(&format!("/events/{ok}")), "{found}");
    let (_, _, none) = c.get("/search?q=ann%40example.org").await;
    assert!(
        !none.contains(&format!("/events/{ok}")),
        "a substring is no match"
    );
    let (status, head, _) = c.get(&format!("/search?q={ok}")).await;
    assert_eq!(status, 303);
    assert_eq!(header(&head, "location"), Some(format!("/events/{ok}")));
}

/// Bad input: a page that says what is wrong, never a 500.
async fn bad_input_gets_a_page_saying_why(c: &Console) {
    // Bad input: a page that says what is wrong, never a 500.
    for (path, status, says) in [
        ("/events/not-an-id".to_string(), 400, "is not an event id"),
        (
            format!("/events/{}", uuid::Uuid::now_v7()),
            404,
            "knows nothing of event",
        ),
        ("/dead-letters/abc".into(), 400, "is not a dead letter id"),
        ("/dead-letters/999999".into(), 404, "no dead letter 999999"),
        ("/search?q=hello".into(), 400, "neither an event id"),
        (
            format!("/search?q={}", "a".repeat(5000)),
            400,
            "characters long",
        ),
        ("/nope".into(), 404, "no such page"),
    ] {
        let (got, _, body) = c.get(&path).await;
        assert_eq!(got, status, "{path}: {body}");
        assert!(body.contains(says), "{path}: {body}");
    }
    let (status, _, _) = c.get(&format!("/search?q={}", "a".repeat(100_000))).await;
    assert!(
        [414, 431].contains(&status),
        "a request head over 64 KiB: {status}"
    );
}

/// Methods: GET/HEAD for pages, POST only where meant.
async fn methods_are_get_and_head_except_where_post_is_meant(c: &Console, dl: i64) {
    // Methods: GET/HEAD for pages, POST only where meant.
    let (status, head, _) = request(
        &c.addr,
        &format!("DELETE / HTTP/1.1\r\nHost: {}\r\n", c.addr),
        "",
    )
    .await;
    assert_eq!(status, 405, "{head}");
    assert_eq!(header(&head, "allow").as_deref(), Some("GET,HEAD"));
    assert_eq!(c.post("/", "", "").await.0, 405);
    assert_eq!(c.post("/metrics", "", "").await.0, 405);
    assert_eq!(c.get(&format!("/dead-letters/{dl}/redrive")).await.0, 405);
    let (status, _, body) = request(
        &c.addr,
        &format!("HEAD / HTTP/1.1\r\nHost: {}\r\n", c.addr),
        "",
    )
    .await;
    assert_eq!((status, body.as_str()), (200, ""));
}

/// Cross-site POSTs, forms without the page's CSRF cookie and wrong tokens
/// are refused, and nothing is re-driven.
async fn cross_site_and_forged_posts_are_refused(c: &Console, path: &str, bearer: &str, dl: i64) {
    // Cross-site POSTs are refused even with the right token.
    for headers in [
        format!("Origin: http://evil.example\r\n{bearer}"),
        format!("Sec-Fetch-Site: cross-site\r\n{bearer}"),
        format!("Origin: null\r\n{bearer}"),
    ] {
        let (status, _, body) = c.post(path, &headers, "").await;
        assert_eq!(status, 403, "{headers}: {body}");
        assert!(body.contains("refused"), "{body}");
    }
    // A form with the token but without the page's CSRF cookie, or with
    // another value: refused.
    let form = format!("token={TOKEN}&csrf=0123456789abcdef0123456789abcdef");
    let (status, _, body) = c
        .post(path, &format!("Origin: http://{}\r\n", c.addr), &form)
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("CSRF"), "{body}");
    let cookie = "Cookie: herald_csrf=fedcba9876543210fedcba9876543210\r\n";
    let (status, _, _) = c.post(path, cookie, &form).await;
    assert_eq!(status, 403);
    // A wrong token: refused.
    let (status, _, body) = c.post(path, "Authorization: Bearer nope\r\n", "").await;
    assert_eq!(
        (status, body.contains("Wrong token")),
        (403, true),
        "{body}"
    );
    assert_eq!(c.open_dead_letter().await, dl, "nothing was re-driven");
    assert_eq!(c.w.sink.count(), 1, "nothing was sent");
}

/// Every console page on both databases: they render (strict templates,
/// both SQL dialects), escape what the payload holds, refuse bad input with
/// a page saying why, and the write routes refuse cross-site requests.
async fn console_pages_escape_refuse_and_explain(backend: Backend) {
    let c = Console::start(backend, &["--http-token", TOKEN]).await;
    let ok = c.emit("Ann", "ann_x@example.org").await;
    c.w.wait_sent(1).await;
    c.w.sink
        .script([Reply::Code(550, "5.1.1 no such user".into())]);
    let evil = "<script>alert(1)</script>";
    let bad =
        c.w.emit(
            "events.test.hello",
            json!({ "name": "Bob", "email": "bob@example.org", "note": evil }),
        )
        .await;
    c.w.wait_count("SELECT COUNT(*) FROM herald_dead_letters", 1)
        .await;
    let dl = c.open_dead_letter().await;

    pages_render_escaped_with_a_strict_csp(&c, &ok, &bad, evil, dl).await;

    bad_input_gets_a_page_saying_why(&c).await;

    methods_are_get_and_head_except_where_post_is_meant(&c, dl).await;

    let bearer = format!("Authorization: Bearer {TOKEN}\r\n");
    let path = format!("/dead-letters/{dl}/redrive");
    cross_site_and_forged_posts_are_refused(&c, &path, &bearer, dl).await;

    // The page's own cookie and field, with the token: re-driven.
    let (_, head, page) = c.get(&format!("/dead-letters/{dl}")).await;
    let set = header(&head, "set-cookie").expect("the page sets its CSRF cookie");
    assert!(
        set.contains("SameSite=Strict") && set.contains("HttpOnly"),
        "{set}"
    );
    let value = set
        .split(';')
        .next()
        .and_then(|kv| kv.split_once('='))
        .map(|(_, v)| v.to_string())
        .unwrap_or_default();
    assert!(page.contains(&format!("name=\"csrf\" value=\"{value}\"")));
    let (status, _, body) = c
        .post(
            &path,
            &format!("Origin: http://{}\r\nSec-Fetch-Site: same-origin\r\nCookie: herald_csrf={value}\r\n", c.addr),
            &format!("csrf={value}&token={TOKEN}"),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("delivered: 1"), "{body}");
    c.w.wait_emails(2).await;
    // Again: already closed, nothing sent twice.
    let (status, _, _) = c.post(&path, &bearer, "").await;
    assert_eq!(status, 409);
    assert_eq!(c.w.sink.count(), 2);
}

both_backends!(console_pages_escape_refuse_and_explain);

/// Without `--http-token`, and on a relay, the console is read-only: the
/// write routes answer 403 and change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_without_a_token_or_worker_is_read_only() {
    let c = Console::start(Backend::Sqlite, &[]).await;
    c.w.sink.script([Reply::Code(550, "no".into())]);
    c.emit("Bo", "bo@example.org").await;
    c.w.wait_count("SELECT COUNT(*) FROM herald_dead_letters", 1)
        .await;
    let dl = c.open_dead_letter().await;
    let (_, _, page) = c.get(&format!("/dead-letters/{dl}")).await;
    assert!(
        page.contains("Read-only") && !page.contains("name=\"token\""),
        "{page}"
    );
    let bearer = format!("Authorization: Bearer {TOKEN}\r\n");
    for action in ["redrive", "discard"] {
        let (status, _, body) = c
            .post(&format!("/dead-letters/{dl}/{action}"), &bearer, "")
            .await;
        assert_eq!(status, 403, "{body}");
        assert!(body.contains("read-only"), "{body}");
    }
    // A relay's console, even with a token.
    let relay_addr = format!("127.0.0.1:{}", herald_tests::free_port());
    let _relay =
        c.w.relay_with(&["--http", &relay_addr, "--http-token", TOKEN]);
    wait::until("the relay's console answers", wait::DEFAULT, || async {
        request(
            &relay_addr,
            &format!("GET / HTTP/1.1\r\nHost: {relay_addr}\r\n"),
            "",
        )
        .await
        .0 == 200
    })
    .await;
    let head = format!(
        "POST /dead-letters/{dl}/redrive HTTP/1.1\r\nHost: {relay_addr}\r\nContent-Length: 0\r\n{bearer}"
    );
    let (status, _, body) = request(&relay_addr, &head, "").await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("relay"), "{body}");
    let (status, _, body) = request(
        &relay_addr,
        &format!("GET /dead-letters/{dl} HTTP/1.1\r\nHost: {relay_addr}\r\n"),
        "",
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        body.contains("Hi Bo"),
        "a relay renders from the workflows directory: {body}"
    );
    assert_eq!(c.open_dead_letter().await, dl);
    assert_eq!(c.w.sink.count(), 0);
}

/// A client that connects and sends nothing, or half a request head, is cut
/// off; `/readyz` says why it is not ready; a port in use is a
/// configuration error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_cuts_off_silent_clients_and_reports_unreadiness() {
    let c = Console::start(Backend::Sqlite, &[]).await;
    for sent in ["", "GET / HTTP/1.1\r\nHost: x\r\n"] {
        let mut s = tokio::net::TcpStream::connect(&c.addr).await.unwrap();
        s.write_all(sent.as_bytes()).await.unwrap();
        let started = std::time::Instant::now();
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut buf)).await;
        assert!(read.is_ok(), "a client that sent {sent:?} was not cut off");
        assert!(started.elapsed() < Duration::from_secs(15));
    }
    // The SMTP server goes away (the session the worker's start-up check
    // keeps is hung up too): not ready, and why.
    c.w.sink.set_outage(Some(Outage::Refuse));
    c.w.sink.close_idle();
    c.emit("Cy", "cy@example.org").await;
    wait::until(
        "/readyz says the SMTP transport fails",
        wait::DEFAULT,
        || async {
            let (status, _, body) = c.get("/readyz").await;
            status == 503 && body.contains("smtp: failing")
        },
    )
    .await;
    let (_, _, page) = c.get("/").await;
    assert!(
        page.contains("Not ready") && page.contains("smtp: failing"),
        "{page}"
    );
    c.w.sink.set_outage(None);
    // The port is taken: exit 2 at start-up, saying so.
    let out = c.w.run(&["relay", "--http", &c.addr]).await;
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot listen on --http"));
}

/// Metric names and labels: per-workflow samples, `role` once per sample.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_named_and_labelled_per_workflow() {
    let c = Console::start(Backend::Sqlite, &[]).await;
    c.emit("Di", "di@example.org").await;
    c.w.wait_sent(1).await;
    c.w.sink.script([Reply::Code(550, "no".into())]);
    c.emit("Ed", "ed@example.org").await;
    c.w.wait_count("SELECT COUNT(*) FROM herald_dead_letters", 1)
        .await;
    wait::until(
        "the worker counts the dead letter",
        wait::DEFAULT,
        || async {
            c.get("/metrics")
                .await
                .2
                .contains("herald_dead_letters_total{role=\"worker\",workflow=\"greet\"} 1")
        },
    )
    .await;
    let text = c.get("/metrics").await.2;
    let (_, head, _) = c.get("/metrics").await;
    assert!(
        header(&head, "content-type")
            .unwrap_or_default()
            .contains("openmetrics-text")
    );
    for sample in [
        "herald_emails_sent_total{role=\"worker\",workflow=\"greet\"} 1",
        "herald_send_latency_seconds_count{role=\"worker\",workflow=\"greet\"} 1",
        "herald_end_to_end_latency_seconds_count{role=\"worker\",workflow=\"greet\"} 1",
        "herald_consumer_up{role=\"worker\",workflow=\"greet\"} 1",
        "herald_messages_acked_total{role=\"worker\",workflow=\"greet\"} 2",
        "herald_smtp_up{role=\"worker\"} 1",
        "# TYPE herald_emails_sent counter",
        "# TYPE herald_send_latency_seconds histogram",
        "# TYPE herald_outbox_published counter",
    ] {
        assert!(text.contains(sample), "{sample} missing:\n{text}");
    }
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        assert_eq!(line.matches("role=").count(), 1, "{line}");
    }
}
