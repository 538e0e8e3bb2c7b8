//! Hard bounces suppress the address; one-click unsubscribe stops only that
//! category.

use super::{NEWSLETTER, SHOP};
use herald_tests::db::Backend;
use herald_tests::scenario::{Scenario, World};
use herald_tests::{both_backends, http_request};
use serde_json::{Value, json};

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

/// An address suppressed by hand (a bad one refused): reset mail
/// (ignore_suppression) still goes.
async fn suppressed_by_hand_only_reset_mail_goes(w: &World) {
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
}

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

    suppressed_by_hand_only_reset_mail_goes(&w).await;

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

    // Suppressed again: a resend's dry run says it would not go, and the
    // resend sends nothing to it (the dry run once listed it as sent).
    assert!(
        w.run(&["suppressions", "add", "ops@example.com"])
            .await
            .status
            .success()
    );
    let sent = w.sink.count();
    let resend = [
        "replay",
        "--workflow",
        "receipt",
        "--since",
        "1h",
        "--resend",
    ];
    let dry = w.run(&[&resend[..], &["--dry-run"]].concat()).await;
    let text = String::from_utf8_lossy(&dry.stdout);
    assert!(
        text.contains(
            "to ops@example.com  subject \"Receipt 4\"  (suppressed or unsubscribed: not sent)"
        ),
        "{text}"
    );
    assert!(!text.contains("would be sent again"), "{text}");
    let real = w.run(&resend).await;
    assert!(
        real.status.success(),
        "{}",
        String::from_utf8_lossy(&real.stderr)
    );
    assert_eq!(
        w.sink.count(),
        sent,
        "nothing resent to a suppressed address"
    );
}

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

/// The newsletter carries List-Unsubscribe (one-click HTTPS, then mailto),
/// the receipt none, and no mail holds the secret; the one-click path.
fn only_the_newsletter_offers_unsubscribe(w: &World, public: &str) -> String {
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
    path
}

/// A GET (a link scanner) shows a page, and a forged token gets 400: nothing
/// is recorded.
async fn scanners_and_forgeries_record_nothing(w: &World, addr: &str, path: &str) {
    // A GET (a link scanner) shows a page and changes nothing.
    let page = http_request(addr, "GET", path, "").await.unwrap();
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(
        page.contains("<form") && page.contains("method=\"post\""),
        "{page}"
    );
    assert_eq!(w.count("SELECT COUNT(*) FROM herald_unsubscribes").await, 0);

    // A forged token: 400, nothing recorded.
    let mut forged = path.to_string();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    let r = http_request(addr, "POST", &forged, "List-Unsubscribe=One-Click")
        .await
        .unwrap();
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    let r = http_request(addr, "POST", "/u/garbage", "").await.unwrap();
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    assert_eq!(w.count("SELECT COUNT(*) FROM herald_unsubscribes").await, 0);
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
    let path = only_the_newsletter_offers_unsubscribe(&w, &public);

    scanners_and_forgeries_record_nothing(&w, &addr, &path).await;

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
    let subjects = w.sink.subjects();
    assert!(subjects.contains(&"Receipt 2".to_string()), "{subjects:?}");
    assert!(!subjects.contains(&"News 2".to_string()), "{subjects:?}");
}

/// Many deliveries in flight at once, so their address checks are asked
/// together: each email gets its own answer. 60 events to two workflows
/// (receipts, and newsletters of category `newsletters`); u0–u9 are
/// suppressed, u10–u19 unsubscribed from newsletters, u20–u24 unsubscribed
/// from another category only.
async fn grouped_address_checks_answer_each_email(backend: Backend) {
    use herald::outbox::{NewEvent, enqueue};
    use herald::unsubscribe::Subscriber;
    use sea_orm::TransactionTrait;
    let w = Scenario::new(backend)
        .workflow("receipt.yaml", SHOP)
        .workflow("news.yaml", NEWSLETTER)
        .start()
        .await;
    let db = &w.env.conn;
    let user = |i: usize| format!("u{i}@example.com");
    for i in 0..10 {
        herald::suppression::add(db, &user(i), "test", None, "manual")
            .await
            .unwrap();
    }
    for (range, category) in [(10..20, "newsletters"), (20..25, "offers")] {
        for i in range {
            let s = Subscriber {
                address: user(i),
                category: category.into(),
            };
            herald::unsubscribe::record(db, &s).await.unwrap();
        }
    }
    let txn = db.begin().await.unwrap();
    for i in 0..60 {
        enqueue(
            &txn,
            NewEvent::new("events.shop.paid", json!({"email": user(i), "n": i})),
        )
        .await
        .unwrap();
    }
    txn.commit().await.unwrap();
    let _relay = w.relay();
    let _worker = w.worker_with(&["--concurrency", "64"]);
    w.wait_count(
        "SELECT COUNT(*) FROM herald_deliveries WHERE state IN ('sent', 'suppressed', 'unsubscribed')",
        120,
    )
    .await;
    assert_eq!(
        states(&w, "receipt").await,
        [50, 10, 0],
        "receipt: sent, suppressed, unsubscribed"
    );
    assert_eq!(
        states(&w, "news").await,
        [40, 10, 10],
        "news: sent, suppressed, unsubscribed"
    );
    // Each recipient's own answer: u0 gets nothing, u10 only the receipt,
    // u20 (unsubscribed from another category) both.
    for (i, sent) in [(0, 0), (10, 1), (20, 2)] {
        let q = format!(
            "SELECT COUNT(*) FROM herald_deliveries WHERE recipient = '{}' AND state = 'sent'",
            user(i)
        );
        assert_eq!(w.count(&q).await, sent, "{}", user(i));
    }
    assert_eq!(w.sink.count(), 90);
}

/// A workflow's deliveries by state: sent, suppressed, unsubscribed.
async fn states(w: &World, workflow: &str) -> Vec<i64> {
    let mut out = Vec::new();
    for state in ["sent", "suppressed", "unsubscribed"] {
        let q = format!(
            "SELECT COUNT(*) FROM herald_deliveries WHERE workflow = '{workflow}' AND state = '{state}'"
        );
        out.push(w.count(&q).await);
    }
    out
}

both_backends!(
    a_hard_bounce_suppresses_the_address,
    one_click_unsubscribe_stops_only_that_category,
    grouped_address_checks_answer_each_email
);
