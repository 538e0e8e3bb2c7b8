//! The console in a real browser (chromium via chromedriver), and no secret in
//! any page it shows.

use super::{Console, GREET, TOKEN};
use herald_tests::db::Backend;
use herald_tests::scenario::Scenario;
use herald_tests::smtp::Reply;
use herald_tests::wait;
use serde_json::json;
use std::time::Duration;

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

/// The overview shows the workflow's consumer, pulling.
async fn overview_shows_the_consumer_pulling(b: &fantoccini::Client, base: &str) {
    b.goto(&format!("{base}/"))
        .await
        .expect("open the overview");
    wait::until(
        "the overview shows the consumer pulling",
        wait::DEFAULT,
        || async {
            let _ = b.refresh().await;
            let t = text_of(b, "#consumers").await;
            t.contains("herald-greet") && t.contains("pulling") && !t.contains("not pulling")
        },
    )
    .await;
    screenshot(b, "overview").await;
}

/// Type `q` in the header's search box and submit it.
async fn search(b: &fantoccini::Client, q: &str) {
    let input = b
        .find(fantoccini::Locator::Css("header input[name=q]"))
        .await
        .expect("the search box");
    input.send_keys(q).await.expect("type the search");
    b.find(fantoccini::Locator::Css("header button[type=submit]"))
        .await
        .expect("the search button")
        .click()
        .await
        .expect("search");
}

/// Re-drive the open dead letter with `token`; the page's message.
async fn redrive(b: &fantoccini::Client, token: &str) -> String {
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

    overview_shows_the_consumer_pulling(&b, &base).await;

    // Search by event id: the event's life.
    search(&b, &delivered).await;
    assert_eq!(text_of(&b, "#event-id").await, delivered);
    let life = text_of(&b, "#deliveries").await;
    assert!(
        life.contains("sent") && life.contains("ann@example.org"),
        "{life}"
    );
    screenshot(&b, "event").await;

    // Search by address (any case): its deliveries, each linking to its event.
    search(&b, "BOB@Example.org").await;
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
    let refused = redrive(&b, "not-the-token").await;
    assert!(refused.contains("Wrong or missing token"), "{refused}");
    assert_eq!(c.w.sink.count(), 1, "a refused re-drive sends nothing");
    assert_eq!(c.open_dead_letter().await, dl, "and closes nothing");

    // With the token (the sink accepts now): delivered.
    b.goto(&format!("{base}/dead-letters/{dl}"))
        .await
        .expect("the dead letter again");
    let done = redrive(&b, TOKEN).await;
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
