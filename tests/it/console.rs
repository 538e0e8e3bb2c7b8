//! `--http`: the web console in a real browser (Debian's chromium driven by
//! chromedriver over WebDriver), and over plain HTTP what a browser would
//! hide: methods, timeouts, CSRF refusals, readiness reasons, metric names
//! and labels, escaping, secrets.
use std::time::Duration;

use herald_tests::both_backends;
use herald_tests::db::Backend;
use herald_tests::process::Herald;
use herald_tests::scenario::{Scenario, World};
use herald_tests::smtp::{Outage, Reply};
use herald_tests::wait;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOKEN: &str = "console-test-token-7f3a9c";

const GREET: &str = r#"
name: greet
on: { subjects: ["events.test.>"] }
email:
  from: "Test <noreply@test.example>"
  to: "{{event.name}} <{{event.email}}>"
  subject: "Hello {{event.name}}"
  text: "Hi {{event.name}}"
retry:
  max_attempts: 2
  backoff: { initial: 100ms, max: 1s, multiplier: 2.0 }
"#;

/// A worker (with `--http` and `args`) and a relay on a world running `greet`.
struct Console {
    w: World,
    addr: String,
    worker: Herald,
    _relay: Herald,
}

impl Console {
    async fn start(backend: Backend, args: &[&str]) -> Console {
        let w = Scenario::new(backend)
            .workflow("greet.yaml", GREET)
            .start()
            .await;
        Console::on(w, args).await
    }

    async fn on(w: World, args: &[&str]) -> Console {
        let addr = format!("127.0.0.1:{}", herald_tests::free_port());
        let mut all = vec!["--http", addr.as_str()];
        all.extend_from_slice(args);
        let worker = w.worker_with(&all);
        let relay = w.relay();
        let c = Console {
            w,
            addr,
            worker,
            _relay: relay,
        };
        wait::until("the console answers", wait::DEFAULT, || async {
            c.get("/healthz").await.0 == 200
        })
        .await;
        c
    }

    async fn get(&self, path: &str) -> (u16, String, String) {
        request(
            &self.addr,
            &format!("GET {path} HTTP/1.1\r\nHost: {}\r\n", self.addr),
            "",
        )
        .await
    }

    /// A POST with extra header lines (each ending in `\r\n`) and a form body.
    async fn post(&self, path: &str, headers: &str, body: &str) -> (u16, String, String) {
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n{headers}",
            self.addr,
            body.len()
        );
        request(&self.addr, &head, body).await
    }

    /// Emit one event for `email`; its id.
    async fn emit(&self, name: &str, email: &str) -> String {
        self.w
            .emit("events.test.hello", json!({ "name": name, "email": email }))
            .await
    }

    async fn open_dead_letter(&self) -> i64 {
        self.w
            .count("SELECT MAX(id) FROM herald_dead_letters WHERE retried_at IS NULL")
            .await
    }
}

/// One request on a fresh connection (closed after the answer): status,
/// head, body; status 0 when nothing listens (yet).
async fn request(addr: &str, head: &str, body: &str) -> (u16, String, String) {
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        return (0, String::new(), String::new());
    };
    s.write_all(format!("{head}Connection: close\r\n\r\n{body}").as_bytes())
        .await
        .expect("send the request");
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut raw)).await;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_string(), body.to_string())
}

/// The header `name` of a response head (case-insensitive).
fn header(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
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

    // Cross-site POSTs are refused even with the right token.
    let bearer = format!("Authorization: Bearer {TOKEN}\r\n");
    let path = format!("/dead-letters/{dl}/redrive");
    for headers in [
        format!("Origin: http://evil.example\r\n{bearer}"),
        format!("Sec-Fetch-Site: cross-site\r\n{bearer}"),
        format!("Origin: null\r\n{bearer}"),
    ] {
        let (status, _, body) = c.post(&path, &headers, "").await;
        assert_eq!(status, 403, "{headers}: {body}");
        assert!(body.contains("refused"), "{body}");
    }
    // A form with the token but without the page's CSRF cookie, or with
    // another value: refused.
    let form = format!("token={TOKEN}&csrf=0123456789abcdef0123456789abcdef");
    let (status, _, body) = c
        .post(&path, &format!("Origin: http://{}\r\n", c.addr), &form)
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("CSRF"), "{body}");
    let cookie = "Cookie: herald_csrf=fedcba9876543210fedcba9876543210\r\n";
    let (status, _, _) = c.post(&path, cookie, &form).await;
    assert_eq!(status, 403);
    // A wrong token: refused.
    let (status, _, body) = c.post(&path, "Authorization: Bearer nope\r\n", "").await;
    assert_eq!(
        (status, body.contains("Wrong token")),
        (403, true),
        "{body}"
    );
    assert_eq!(c.open_dead_letter().await, dl, "nothing was re-driven");
    assert_eq!(c.w.sink.count(), 1, "nothing was sent");

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
    // The SMTP server goes away: not ready, and why.
    c.w.sink.set_outage(Some(Outage::Refuse));
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

/// No page, header or log line shows the token or a password of a
/// configured URL (the database URL carries one; PostgreSQL's trust
/// authentication ignores it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_appears_in_any_page() {
    const PASSWORD: &str = "db-pass-Zq81x";
    let mut w = Scenario::new(Backend::Postgres)
        .workflow("greet.yaml", GREET)
        .start()
        .await;
    let url = w.h.vars["HERALD_DATABASE_URL"].replacen(
        "postgres://postgres@",
        &format!("postgres://postgres:{PASSWORD}@"),
        1,
    );
    assert!(url.contains(PASSWORD));
    w.h.set("HERALD_DATABASE_URL", url)
        .set("HERALD_HTTP_TOKEN", TOKEN);
    let c = Console::on(w, &["--log", "debug"]).await;
    let id = c.emit("Flo", "flo@example.org").await;
    c.w.wait_sent(1).await;
    c.w.sink.script([Reply::Code(550, "no".into())]);
    c.emit("Gus", "gus@example.org").await;
    c.w.wait_count("SELECT COUNT(*) FROM herald_dead_letters", 1)
        .await;
    let dl = c.open_dead_letter().await;
    for path in [
        "/".to_string(),
        "/readyz".into(),
        "/healthz".into(),
        "/metrics".into(),
        "/dead-letters?closed=1".into(),
        format!("/dead-letters/{dl}"),
        format!("/events/{id}"),
        "/search?q=flo%40example.org".into(),
        "/nope".into(),
        "/events/x".into(),
    ] {
        let (_, head, body) = c.get(&path).await;
        for secret in [TOKEN, PASSWORD] {
            assert!(
                !head.contains(secret) && !body.contains(secret),
                "{path} shows a secret"
            );
        }
    }
    let (_, _, body) = c
        .post(
            &format!("/dead-letters/{dl}/discard"),
            "Authorization: Bearer wrong\r\n",
            "",
        )
        .await;
    assert!(!body.contains(TOKEN));
    let log = c.worker.log();
    assert!(
        !log.contains(TOKEN) && !log.contains(PASSWORD),
        "the log shows a secret"
    );
}

// ---- the browser ------------------------------------------------------------

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// chromedriver on a free port, killed on drop.
struct Driver {
    child: std::process::Child,
    port: u16,
    _profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn browser() -> (Driver, fantoccini::Client) {
    for bin in [CHROMIUM, CHROMEDRIVER] {
        assert!(
            std::path::Path::new(bin).exists(),
            "{bin} is missing: scripts/setup.sh installs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)"
        );
    }
    let port = herald_tests::free_port();
    let child = std::process::Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let profile = tempfile::tempdir().expect("browser profile dir");
    let driver = Driver {
        child,
        port,
        _profile: profile,
    };
    let url = format!("http://127.0.0.1:{}", driver.port);
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": CHROMIUM,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1280,1400", "--hide-scrollbars",
                format!("--user-data-dir={}", driver._profile.path().display()),
            ],
        }),
    );
    // chromedriver takes a moment to listen.
    let started = std::time::Instant::now();
    let client = loop {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match fantoccini::ClientBuilder::new(connector)
            .capabilities(caps.clone())
            .connect(&url)
            .await
        {
            Ok(c) => break c,
            Err(e) if started.elapsed() > Duration::from_secs(60) => {
                panic!("chromedriver gave no browser session within 60 s: {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    (driver, client)
}

/// `HERALD_SCREENSHOTS=DIR`: the browser test saves its pages there (how
/// docs/console-*.png are made).
async fn screenshot(b: &fantoccini::Client, name: &str) {
    if let Ok(dir) = std::env::var("HERALD_SCREENSHOTS") {
        let png = b.screenshot().await.expect("screenshot");
        std::fs::write(
            std::path::Path::new(&dir).join(format!("console-{name}.png")),
            png,
        )
        .expect("write the screenshot");
    }
}

async fn text_of(b: &fantoccini::Client, css: &str) -> String {
    b.wait()
        .at_most(Duration::from_secs(30))
        .for_element(fantoccini::Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css} not on the page: {e}"))
        .text()
        .await
        .unwrap_or_default()
}

/// An operator's walk through the console in a real browser: the overview
/// shows the consumer; the search finds an event by id and by address; the
/// dead letter's page says why; a re-drive with a wrong token is refused
/// and sends nothing; with the token it sends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_in_a_browser() {
    let c = Console::start(Backend::Sqlite, &["--http-token", TOKEN]).await;
    let delivered = c.emit("Ann", "ann@example.org").await;
    c.w.wait_sent(1).await;
    c.w.sink.script([Reply::Code(
        550,
        "5.1.1 <bob@example.org>: no such user".into(),
    )]);
    let failed = c.emit("Bob", "bob@example.org").await;
    c.w.wait_count("SELECT COUNT(*) FROM herald_dead_letters", 1)
        .await;
    let dl = c.open_dead_letter().await;
    let (_driver, b) = browser().await;
    let base = format!("http://{}", c.addr);

    // The overview shows the workflow's consumer, pulling.
    b.goto(&format!("{base}/"))
        .await
        .expect("open the overview");
    wait::until(
        "the overview shows the consumer pulling",
        wait::DEFAULT,
        || async {
            let _ = b.refresh().await;
            let t = text_of(&b, "#consumers").await;
            t.contains("herald-greet") && t.contains("pulling") && !t.contains("not pulling")
        },
    )
    .await;
    screenshot(&b, "overview").await;

    // Search by event id: the event's life.
    let search = |q: String| {
        let b = &b;
        async move {
            let input = b
                .find(fantoccini::Locator::Css("header input[name=q]"))
                .await
                .expect("the search box");
            input.send_keys(&q).await.expect("type the search");
            b.find(fantoccini::Locator::Css("header button[type=submit]"))
                .await
                .expect("the search button")
                .click()
                .await
                .expect("search");
        }
    };
    search(delivered.clone()).await;
    assert_eq!(text_of(&b, "#event-id").await, delivered);
    let life = text_of(&b, "#deliveries").await;
    assert!(
        life.contains("sent") && life.contains("ann@example.org"),
        "{life}"
    );
    screenshot(&b, "event").await;

    // Search by address (any case): its deliveries, each linking to its event.
    search("BOB@Example.org".into()).await;
    let results = text_of(&b, "#results").await;
    assert!(
        results.contains(&failed) && results.contains("dead"),
        "{results}"
    );
    b.find(fantoccini::Locator::LinkText(&failed))
        .await
        .expect("the event's link")
        .click()
        .await
        .expect("open the event");
    assert_eq!(text_of(&b, "#event-id").await, failed);

    // The dead letter, from the list: its reason.
    b.goto(&format!("{base}/dead-letters"))
        .await
        .expect("the list");
    b.find(fantoccini::Locator::LinkText(&dl.to_string()))
        .await
        .expect("the dead letter's link")
        .click()
        .await
        .expect("open the dead letter");
    let reason = text_of(&b, "#reason").await;
    assert!(reason.contains("no such user"), "{reason}");
    screenshot(&b, "dead-letter").await;

    // Re-drive with a wrong token: refused (403), nothing sent.
    let redrive = |token: &'static str| {
        let b = &b;
        async move {
            b.find(fantoccini::Locator::Css("#redrive input[name=token]"))
                .await
                .expect("the token field")
                .send_keys(token)
                .await
                .expect("type the token");
            b.find(fantoccini::Locator::Css("#redrive button[value=redrive]"))
                .await
                .expect("the re-drive button")
                .click()
                .await
                .expect("re-drive");
            text_of(b, "#message").await
        }
    };
    let refused = redrive("not-the-token").await;
    assert!(refused.contains("Wrong or missing token"), "{refused}");
    assert_eq!(c.w.sink.count(), 1, "a refused re-drive sends nothing");
    assert_eq!(c.open_dead_letter().await, dl, "and closes nothing");

    // With the token (the sink accepts now): delivered.
    b.goto(&format!("{base}/dead-letters/{dl}"))
        .await
        .expect("the dead letter again");
    let done = redrive(TOKEN).await;
    assert!(done.contains("delivered: 1"), "{done}");
    c.w.wait_emails(2).await;
    assert!(
        c.w.sink
            .received()
            .iter()
            .any(|m| m.rcpt_to.iter().any(|r| r.contains("bob@example.org"))),
        "bob's email reached the sink"
    );
    let (_, _, page) = c.get(&format!("/dead-letters/{dl}")).await;
    assert!(page.contains("re-driven"), "{page}");
    b.close().await.expect("close the browser");
}
