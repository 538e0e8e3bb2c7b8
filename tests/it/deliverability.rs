//! Deliverability: shared rate limits and servers that ask to slow down,
//! hard bounces and suppression, one-click unsubscribe, digests, delays and
//! send windows, locales. Real SMTP sink, real NATS, both databases.
use std::time::{Duration, Instant};

use herald::outbox::{NewEvent, enqueue};
use herald_tests::both_backends;
use herald_tests::db::Backend;
use herald_tests::golden::{golden, normalize};
use herald_tests::http_request;
use herald_tests::scenario::{Scenario, World};
use sea_orm::TransactionTrait;
use serde_json::{Value, json};

const NUMBERED: &str = r#"
name: numbered
on: { subjects: ["events.test.>"] }
email:
  from: "Test <noreply@test.example>"
  to: "u{{event.n}}@example.com"
  subject: "n={{event.n}}"
  text: "event {{event.n}}"
"#;

/// Enqueue events with these payloads, in one transaction each batch.
async fn enqueue_all(w: &World, subject: &str, payloads: impl IntoIterator<Item = Value>) {
    let txn = w.env.conn.begin().await.unwrap();
    for p in payloads {
        enqueue(&txn, NewEvent::new(subject, p)).await.unwrap();
    }
    txn.commit().await.unwrap();
}

/// The most messages the sink accepted within any window of `window`.
fn peak(times: &[Instant], window: Duration) -> usize {
    let mut t = times.to_vec();
    t.sort();
    (0..t.len())
        .map(|i| {
            t[i..]
                .iter()
                .take_while(|x| x.duration_since(t[i]) < window)
                .count()
        })
        .max()
        .unwrap_or(0)
}

/// A server that allows 10 messages a second and answers `421 4.7.0` over
/// it, behind a transport configured for 40/s: the worker slows down
/// (adaptively) instead of failing; every email arrives once, none is
/// dead-lettered, and the server's limit holds.
async fn a_throttling_server_gets_every_email_once(backend: Backend) {
    let w = Scenario::new(backend)
        .workflow("n.yaml", NUMBERED)
        .start()
        .await;
    w.sink.enforce_rate(10.0, 5);
    let url = format!("{}?rate=40/s&burst=5", w.sink.url());
    let http = format!("127.0.0.1:{}", herald_tests::free_port());
    let _relay = w.relay();
    let _worker = w.worker_with(&["--smtp-url", &url, "--http", &http]);
    let started = Instant::now();
    w.env.enqueue_many("events.test.n", 40, 0).await;
    w.wait_sent(40).await;
    let metrics = http_request(&http, "GET", "/metrics", "").await.unwrap();
    let throttled: f64 = metrics
        .lines()
        .find(|l| l.starts_with("herald_smtp_throttled_total"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or_else(|| panic!("no herald_smtp_throttled_total in {metrics}"));
    assert!(throttled >= 1.0, "the slow-downs are counted: {throttled}");
    assert_eq!(w.sink.count(), 40, "each email once");
    assert_eq!(w.sink.distinct_recipients().len(), 40);
    assert_eq!(w.count("SELECT COUNT(*) FROM herald_dead_letters").await, 0);
    assert!(w.sink.throttled() > 0, "the server did ask to slow down");
    let times: Vec<Instant> = w.sink.received().iter().map(|m| m.at).collect();
    assert!(
        peak(&times, Duration::from_secs(1)) <= 15,
        "within 10/s plus the burst"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "40 emails at 10/s after a burst of 5"
    );
}

const RATED: &str = r#"
name: numbered
on: { subjects: ["events.test.>"] }
rate: 5/s
email:
  from: "Test <noreply@test.example>"
  to: "u{{event.n}}@example.com"
  subject: "n={{event.n}}"
  text: "event {{event.n}}"
"#;

/// A workflow's own `rate: 5/s`, on a transport without one: 15 emails
/// take about two seconds (over 1.5 s; unlimited they take a fraction), and
/// no second holds more than the rate plus its burst (the workflow's burst
/// is its rate: 5), give or take scheduling jitter.
async fn a_workflow_rate_limits_that_workflow(backend: Backend) {
    let w = Scenario::new(backend)
        .workflow("n.yaml", RATED)
        .start()
        .await;
    let _relay = w.relay();
    let _worker = w.worker();
    let started = Instant::now();
    w.env.enqueue_many("events.test.n", 15, 0).await;
    w.wait_sent(15).await;
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "15 emails at 5/s after a burst of 5: {:?}",
        started.elapsed()
    );
    let times: Vec<Instant> = w.sink.received().iter().map(|m| m.at).collect();
    // The sink sees arrivals, not reservations: on a loaded machine a send
    // reserved for one slot can arrive late, next to the following ones
    // (measured: 12 with two CPU hogs beside the suite, 10–11 otherwise).
    let most = peak(&times, Duration::from_secs(1));
    assert!(
        most <= 12,
        "{most} in one second: over 5/s plus the burst of 5 (and two of scheduling jitter)"
    );
}

/// Two workers share one limit (a row of herald_rate_limits), not one
/// each: at 10/s between them the server, enforcing the same rate, never
/// has to refuse. (Its burst of 8 absorbs sends that scheduling delays
/// bunch together; two workers at 10/s each would exceed it by ~30.)
async fn workers_share_one_rate_limit(backend: Backend) {
    let w = Scenario::new(backend)
        .workflow("n.yaml", NUMBERED)
        .start()
        .await;
    w.sink.enforce_rate(10.0, 8);
    let url = format!("{}?rate=10/s&burst=2", w.sink.url());
    let _relay = w.relay();
    let _a = w.worker_with(&["--smtp-url", &url]);
    let _b = w.worker_with(&["--smtp-url", &url]);
    let started = Instant::now();
    w.env.enqueue_many("events.test.n", 30, 0).await;
    w.wait_sent(30).await;
    assert_eq!(w.sink.count(), 30);
    assert_eq!(
        w.sink.throttled(),
        0,
        "the shared limit kept both under the server's rate"
    );
    assert!(started.elapsed() >= Duration::from_secs(2));
}

const SHOP: &str = r#"
name: receipt
on: { subjects: [events.shop.>] }
email:
  from: shop@example.com
  to: "{{event.email}}"
  subject: "Receipt {{event.n}}"
  text: "Thank you."
"#;

const SHOP_RESET: &str = r#"
name: reset
on: { subjects: [events.shop.>] }
ignore_suppression: true
email:
  from: shop@example.com
  to: "{{event.email}}"
  subject: "Reset {{event.n}}"
  text: "Your link."
"#;

/// A permanent reply to RCPT (550 5.1.1) suppresses the address: the
/// delivery is recorded `suppressed` (no dead letter), and the next event
/// to the same address is not even tried. An operator can suppress and
/// release addresses; a workflow with `ignore_suppression` still mails them.
async fn a_hard_bounce_suppresses_the_address(backend: Backend) {
    let w = Scenario::new(backend)
        .workflow("receipt.yaml", SHOP)
        .workflow("reset.yaml", SHOP_RESET)
        .start()
        .await;
    w.sink.reject_rcpt(
        "gone@example.com",
        550,
        "5.1.1 <gone@example.com>: no such user",
    );
    let _relay = w.relay();
    let _worker = w.worker();
    w.emit(
        "events.shop.paid",
        json!({"email": "gone@example.com", "n": 1}),
    )
    .await;
    w.wait_count(
        "SELECT COUNT(*) FROM herald_deliveries WHERE state = 'suppressed'",
        2,
    )
    .await;
    assert_eq!(w.count("SELECT COUNT(*) FROM herald_dead_letters").await, 0);
    let list = w.run(&["suppressions", "list", "--json"]).await;
    let rows: Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(rows[0]["address"], "gone@example.com");
    assert_eq!(rows[0]["source"], "bounce");
    assert!(rows[0]["smtp_reply"].as_str().unwrap().contains("5.1.1"));

    // The next one is not tried by `receipt`; `reset` (ignore_suppression)
    // tries, and bounces again.
    let before = w.sink.rcpt_refused();
    w.emit(
        "events.shop.paid",
        json!({"email": "gone@example.com", "n": 2}),
    )
    .await;
    w.wait_count(
        "SELECT COUNT(*) FROM herald_deliveries WHERE state = 'suppressed'",
        4,
    )
    .await;
    assert_eq!(
        w.sink.rcpt_refused(),
        before + 1,
        "only the workflow ignoring suppression tried"
    );

    // An address suppressed by hand; reset mail (ignore_suppression) still goes.
    let out = w
        .run(&[
            "suppressions",
            "add",
            "Ops@Example.com",
            "--reason",
            "asked us",
        ])
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bad = w.run(&["suppressions", "add", "not an address"]).await;
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("is not an email address"));
    w.emit(
        "events.shop.paid",
        json!({"email": "ops@example.com", "n": 3}),
    )
    .await;
    w.wait_sent(1).await;
    let got = w.sink.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].rcpt_to, ["ops@example.com"]);
    assert_eq!(got[0].header("Subject").unwrap(), "Reset 3");

    // Released: mailed again.
    let out = w.run(&["suppressions", "remove", "ops@example.com"]).await;
    assert!(out.status.success());
    w.emit(
        "events.shop.paid",
        json!({"email": "ops@example.com", "n": 4}),
    )
    .await;
    w.wait_sent(3).await;
    assert_eq!(w.count("SELECT COUNT(*) FROM herald_dead_letters").await, 0);
}

const NEWSLETTER: &str = r#"
name: news
on: { subjects: [events.shop.>] }
category: newsletters
email:
  from: shop@example.com
  to: "{{event.email}}"
  subject: "News {{event.n}}"
  text: "This week."
"#;

/// The List-Unsubscribe URL of a received email.
fn unsubscribe_path(m: &herald_tests::smtp::Received) -> String {
    let h = m.header("List-Unsubscribe").expect("List-Unsubscribe");
    let url = h
        .trim_start_matches('<')
        .split('>')
        .next()
        .unwrap()
        .to_string();
    let path_start = url.find("/u/").expect("a /u/ link");
    url[path_start..].to_string()
}

/// Bulk mail (a workflow with a category) carries RFC 8058 headers; a POST
/// to its link unsubscribes the address from that category (idempotent),
/// a GET only shows a page, a forged token is refused and records nothing.
/// The next newsletter is recorded `unsubscribed`; transactional mail to the
/// same address still goes.
async fn one_click_unsubscribe_stops_only_that_category(backend: Backend) {
    let w = Scenario::new(backend)
        .workflow("receipt.yaml", SHOP)
        .workflow("news.yaml", NEWSLETTER)
        .start()
        .await;
    let addr = format!("127.0.0.1:{}", herald_tests::free_port());
    let public = format!("http://{addr}");
    let _relay = w.relay();
    let _worker = w.worker_with(&[
        "--http",
        &addr,
        "--public-url",
        &public,
        "--unsubscribe-secret",
        "test-secret-0123456789",
        "--unsubscribe-mailto",
        "unsubscribe@shop.example",
    ]);
    w.emit(
        "events.shop.paid",
        json!({"email": "ada@example.com", "n": 1}),
    )
    .await;
    w.wait_sent(2).await;
    let got = w.sink.received();
    let news = got
        .iter()
        .find(|m| m.header("Subject").unwrap() == "News 1")
        .unwrap();
    let receipt = got
        .iter()
        .find(|m| m.header("Subject").unwrap() == "Receipt 1")
        .unwrap();
    assert_eq!(
        news.header("List-Unsubscribe-Post").as_deref(),
        Some("List-Unsubscribe=One-Click")
    );
    // RFC 2369: the HTTPS form first, then the mailto form for clients
    // without one-click.
    let list = news.header("List-Unsubscribe").unwrap();
    assert!(list.starts_with(&format!("<{public}/u/")), "{list}");
    assert!(
        list.contains(", <mailto:unsubscribe@shop.example?subject=unsubscribe%20"),
        "{list}"
    );
    assert!(
        receipt.header("List-Unsubscribe").is_none(),
        "transactional mail has no unsubscribe"
    );
    let path = unsubscribe_path(news);
    assert!(
        !got.iter().any(|m| m.data.contains("test-secret")),
        "the secret is not in mail"
    );

    // A GET (a link scanner) shows a page and changes nothing.
    let page = http_request(&addr, "GET", &path, "").await.unwrap();
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(
        page.contains("<form") && page.contains("method=\"post\""),
        "{page}"
    );
    assert_eq!(w.count("SELECT COUNT(*) FROM herald_unsubscribes").await, 0);

    // A forged token: 400, nothing recorded.
    let mut forged = path.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    let r = http_request(&addr, "POST", &forged, "List-Unsubscribe=One-Click")
        .await
        .unwrap();
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    let r = http_request(&addr, "POST", "/u/garbage", "").await.unwrap();
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    assert_eq!(w.count("SELECT COUNT(*) FROM herald_unsubscribes").await, 0);

    // The one-click POST, twice: recorded once.
    for _ in 0..2 {
        let r = http_request(&addr, "POST", &path, "List-Unsubscribe=One-Click")
            .await
            .unwrap();
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    }
    assert_eq!(
        w.count("SELECT COUNT(*) FROM herald_unsubscribes WHERE address = 'ada@example.com' AND category = 'newsletters'")
            .await,
        1
    );

    w.emit(
        "events.shop.paid",
        json!({"email": "ada@example.com", "n": 2}),
    )
    .await;
    w.wait_count(
        "SELECT COUNT(*) FROM herald_deliveries WHERE workflow = 'news' AND state = 'unsubscribed'",
        1,
    )
    .await;
    w.wait_sent(3).await;
    let subjects: Vec<String> = w
        .sink
        .received()
        .iter()
        .map(|m| m.header("Subject").unwrap())
        .collect();
    assert!(subjects.contains(&"Receipt 2".to_string()), "{subjects:?}");
    assert!(!subjects.contains(&"News 2".to_string()), "{subjects:?}");
}

const DIGEST: &str = r#"
name: vault-digest
on: { subjects: [events.vault.updated] }
digest: { key: "{{event.parent}}", window: 10s, max: 50 }
email:
  from: vault@example.com
  to: "{{event.parent}}@example.com"
  subject: "{{len events}} updates"
  text: "{{#each events}}[{{this.n}}]{{/each}}"
"#;

/// The event numbers a digest's body lists (`[n]` each).
fn listed(body: &str) -> Vec<usize> {
    body.split('[')
        .skip(1)
        .filter_map(|s| s.split(']').next()?.parse().ok())
        .collect()
}

/// 30 events for 3 keys inside one window, with the worker killed (-9)
/// halfway: 3 emails, each listing its 10 events once, in stream order;
/// nothing lost, nothing sent twice.
async fn a_digest_survives_a_worker_kill(backend: Backend) {
    let w = Scenario::new(backend)
        .workflow("digest.yaml", DIGEST)
        .start()
        .await;
    let _relay = w.relay();
    let mut worker = w.worker();
    let payload = |n: usize| json!({"parent": format!("p{}", n % 3), "n": n});
    enqueue_all(&w, "events.vault.updated", (0..15).map(payload)).await;
    w.wait_count("SELECT COUNT(*) FROM herald_digest_items", 15)
        .await;
    worker.kill9();
    let _worker = w.worker();
    enqueue_all(&w, "events.vault.updated", (15..30).map(payload)).await;
    w.wait_count("SELECT COUNT(*) FROM herald_digest_items", 30)
        .await;
    assert_eq!(w.sink.count(), 0, "nothing goes before the window ends");
    w.wait_count(
        "SELECT COUNT(*) FROM herald_schedule WHERE done_at IS NOT NULL",
        3,
    )
    .await;
    w.wait_emails(3).await;
    let got = w.sink.received();
    assert_eq!(got.len(), 3);
    let mut all = Vec::new();
    for m in &got {
        let body = m.decoded();
        let numbers = listed(&body);
        assert_eq!(numbers.len(), 10, "{body}");
        let key = numbers[0] % 3;
        assert!(
            numbers.iter().all(|n| n % 3 == key),
            "one key per digest: {numbers:?}"
        );
        assert!(
            numbers.windows(2).all(|p| p[0] < p[1]),
            "stream order: {numbers:?}"
        );
        assert_eq!(m.header("Subject").unwrap(), "10 updates");
        all.extend(numbers);
    }
    all.sort();
    assert_eq!(all, (0..30).collect::<Vec<_>>());
    let ids: std::collections::HashSet<String> = got.iter().map(|m| m.message_id()).collect();
    assert_eq!(ids.len(), 3);
    assert_eq!(
        w.count("SELECT COUNT(*) FROM herald_deliveries WHERE recipient LIKE 'digest:%' AND state = 'sent'")
            .await,
        30,
        "each event's part recorded"
    );
    assert_eq!(w.count("SELECT COUNT(*) FROM herald_dead_letters").await, 0);
}

/// The same digest, sealed at four events and otherwise open ten minutes.
fn digest_max() -> String {
    DIGEST.replace("window: 10s, max: 50", "window: 10m, max: 4")
}

/// `max: 4` seals a digest as soon as it holds four events, long before
/// its ten-minute window: ten events for one key make two emails of four
/// at once; the last two wait for the window.
async fn a_full_digest_goes_before_its_window(backend: Backend) {
    let w = Scenario::new(backend)
        .workflow("digest.yaml", &digest_max())
        .start()
        .await;
    let _relay = w.relay();
    let _worker = w.worker();
    enqueue_all(
        &w,
        "events.vault.updated",
        (0..10).map(|n| json!({"parent": "p", "n": n})),
    )
    .await;
    w.wait_emails(2).await;
    let mut seen = Vec::new();
    for m in w.sink.received() {
        assert_eq!(m.header("Subject").unwrap(), "4 updates");
        seen.extend(listed(&m.decoded()));
    }
    // Events without an aggregate are processed concurrently: which eight
    // go first is not fixed, but none twice.
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 8, "eight events, each once: {seen:?}");
    assert!(seen.iter().all(|n| *n < 10));
    w.wait_count("SELECT COUNT(*) FROM herald_digest_items", 10)
        .await;
    assert_eq!(
        w.count("SELECT COUNT(*) FROM herald_schedule WHERE done_at IS NULL")
            .await,
        1,
        "the last two wait in an open digest"
    );
    assert_eq!(w.sink.count(), 2);
}

const DELAYED: &str = r#"
name: reminder
on: { subjects: [events.reminder.>] }
delay: 2s
email:
  from: r@example.com
  to: "{{event.email}}"
  subject: "Reminder"
  text: "Don't forget."
"#;

/// `delay: 2s` with the worker stopped and a new one started during the
/// delay: the email goes once, at least 2 s after the event. The schedule is
/// in the database, and `herald status` shows it.
async fn a_delay_survives_a_worker_restart(backend: Backend) {
    let w = Scenario::new(backend)
        .workflow("reminder.yaml", DELAYED)
        .start()
        .await;
    let _relay = w.relay();
    let mut worker = w.worker();
    let emitted = Instant::now();
    w.emit("events.reminder.set", json!({"email": "ada@example.com"}))
        .await;
    w.wait_count(
        "SELECT COUNT(*) FROM herald_deliveries WHERE state = 'scheduled'",
        1,
    )
    .await;
    let status = w.run(&["status"]).await;
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("scheduled    delayed 1"), "{text}");
    worker.terminate(Duration::from_secs(10)).await;
    assert_eq!(w.sink.count(), 0);
    let _worker = w.worker();
    w.wait_emails(1).await;
    assert!(emitted.elapsed() >= Duration::from_secs(2));
    w.wait_count(
        "SELECT COUNT(*) FROM herald_schedule WHERE done_at IS NOT NULL",
        1,
    )
    .await;
    assert_eq!(w.sink.count(), 1);
    assert_eq!(
        w.count("SELECT COUNT(*) FROM herald_deliveries WHERE state = 'sent'")
            .await,
        1
    );
}

/// A `send_at` in the past sends at once (it is never dropped); one inside
/// quiet hours waits until they end, in the recipient's time zone.
async fn send_at_and_quiet_hours(backend: Backend) {
    let now = chrono::Utc::now();
    let hm = |t: chrono::DateTime<chrono::Utc>| t.format("%H:%M").to_string();
    let (from, to) = (
        hm(now - chrono::Duration::hours(1)),
        hm(now + chrono::Duration::hours(2)),
    );
    let quiet = format!(
        r#"
name: quiet
on: {{ subjects: [events.q.>] }}
quiet_hours: {{ from: "{from}", to: "{to}", tz: "{{{{event.tz}}}}" }}
email:
  from: r@example.com
  to: "{{{{event.email}}}}"
  subject: "Later"
  text: "x"
"#
    );
    let past = r#"
name: at
on: { subjects: [events.at.>] }
send_at: "{{event.remind_at}}"
email:
  from: r@example.com
  to: "{{event.email}}"
  subject: "At"
  text: "x"
"#;
    let w = Scenario::new(backend)
        .workflow("quiet.yaml", &quiet)
        .workflow("at.yaml", past)
        .start()
        .await;
    let _relay = w.relay();
    let _worker = w.worker();
    w.emit(
        "events.at.x",
        json!({"email": "a@example.com", "remind_at": "2020-01-01T00:00:00Z"}),
    )
    .await;
    w.wait_emails(1).await;
    w.emit(
        "events.q.x",
        json!({"email": "b@example.com", "tz": "Etc/UTC"}),
    )
    .await;
    w.wait_count(
        "SELECT COUNT(*) FROM herald_schedule WHERE workflow = 'quiet'",
        1,
    )
    .await;
    let due: chrono::DateTime<chrono::Utc> = {
        use sea_orm::ConnectionTrait;
        let row = w
            .env
            .conn
            .query_one_raw(sea_orm::Statement::from_string(
                w.env.conn.get_database_backend(),
                "SELECT due_at FROM herald_schedule WHERE workflow = 'quiet'",
            ))
            .await
            .unwrap()
            .unwrap();
        row.try_get("", "due_at").unwrap()
    };
    assert_eq!(hm(due), to, "due when the quiet hours end");
    assert!(due > now + chrono::Duration::minutes(90));
    // A bad send_at is the event's error, dead-lettered with what it was.
    w.emit(
        "events.at.x",
        json!({"email": "a@example.com", "remind_at": "next tuesday"}),
    )
    .await;
    w.wait_count("SELECT COUNT(*) FROM herald_dead_letters", 1)
        .await;
    let dl = w.run(&["dlq", "list", "--json"]).await;
    let text = String::from_utf8_lossy(&dl.stdout);
    assert!(text.contains("not an RFC 3339 time"), "{text}");
    assert_eq!(w.sink.count(), 1);
}

const LOCALIZED: &str = r#"
name: hello
on: { subjects: [events.user.>] }
locale: "{{event.locale}}"
email:
  from: hello@example.com
  to: "{{event.email}}"
  subject: "Hello"
  text_file: templates/hello.hbs
"#;

/// `locale` picks `hello.de.hbs` for de-AT (falling back from de-AT to de),
/// the default template for a locale without one.
async fn german_and_fallback_templates(backend: Backend) {
    let w = Scenario::new(backend)
        .workflow("hello.yaml", LOCALIZED)
        .workflow("templates/hello.hbs", "Hello {{event.name}}!\n")
        .workflow(
            "templates/hello.de.hbs",
            "Hallo {{event.name}}, grüß Gott!\n",
        )
        .start()
        .await;
    let _relay = w.relay();
    let _worker = w.worker();
    let de = w
        .emit(
            "events.user.joined",
            json!({"email": "de@example.com", "name": "Jürgen", "locale": "de-AT"}),
        )
        .await;
    let fr = w
        .emit(
            "events.user.joined",
            json!({"email": "fr@example.com", "name": "Zoé", "locale": "fr"}),
        )
        .await;
    w.wait_emails(2).await;
    let got = w.sink.received();
    let find = |to: &str| got.iter().find(|m| m.rcpt_to[0] == to).unwrap().clone();
    golden(
        "locale.de-AT",
        &normalize(&find("de@example.com").data, &de),
    );
    golden(
        "locale.fallback",
        &normalize(&find("fr@example.com").data, &fr),
    );
}

both_backends!(
    a_workflow_rate_limits_that_workflow,
    a_full_digest_goes_before_its_window,
    a_throttling_server_gets_every_email_once,
    workers_share_one_rate_limit,
    a_hard_bounce_suppresses_the_address,
    one_click_unsubscribe_stops_only_that_category,
    a_digest_survives_a_worker_kill,
    a_delay_survives_a_worker_restart,
    send_at_and_quiet_hours,
    german_and_fallback_templates,
);

/// `workflows validate` compiles every locale's templates and names a
/// broken one; a category without unsubscribe settings stops the worker at
/// start-up (exit 2), before it takes any message.
#[test]
fn locales_are_validated_and_categories_need_unsubscribe_settings() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d.path().join("templates")).unwrap();
    std::fs::write(d.path().join("hello.yaml"), LOCALIZED).unwrap();
    std::fs::write(d.path().join("templates/hello.hbs"), "Hello\n").unwrap();
    std::fs::write(d.path().join("templates/hello.de.hbs"), "Hallo {{#if}}\n").unwrap();
    let env = herald_tests::process::HeraldEnv::default();
    let out = env.run(&["workflows", "validate", d.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("hello.de.hbs"), "{err}");

    let n = tempfile::tempdir().unwrap();
    std::fs::write(n.path().join("news.yaml"), NEWSLETTER).unwrap();
    std::fs::write(n.path().join("receipt.yaml"), SHOP).unwrap();
    let db = tempfile::tempdir().unwrap();
    let mut env = herald_tests::process::HeraldEnv::default();
    env.set("HERALD_WORKFLOWS", n.path().display().to_string())
        .set(
            "HERALD_DATABASE_URL",
            format!("sqlite://{}/h.db?mode=rwc", db.path().display()),
        )
        .set("HERALD_NATS_URL", "nats://127.0.0.1:1")
        .set("HERALD_SMTP_URL", "smtp://127.0.0.1:1");
    let out = env.run(&["worker"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("workflow news has a category"), "{err}");
    // A worker that runs only the transactional workflow needs no
    // unsubscribe settings: it gets past them (to NATS, unreachable here).
    let out = env.run(&["worker", "--workflow", "receipt"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!err.contains("has a category"), "{err}");
    let out = env.run(&[
        "worker",
        "--public-url",
        "http://x.example",
        "--unsubscribe-secret",
        "short",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("at least 16 characters"), "{err}");
    assert!(!err.contains("short\""), "the secret is not echoed: {err}");
}
