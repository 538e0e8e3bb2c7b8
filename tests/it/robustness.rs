//! Robustness: nothing a workflow, a payload, a stream message, an outage
//! or a flag contains may panic the worker, stop a consumer silently, lose
//! order, or leak a secret. Each test here is a symptom a new user hit.
use herald::outbox::{NewEvent, enqueue};
use herald_tests::both_backends;
use herald_tests::db::Backend;
use herald_tests::golden::{golden, normalize};
use herald_tests::process::HeraldEnv;
use std::time::{Duration, Instant};

use herald_tests::scenario::{Scenario, World, run_off_runtime};
use herald_tests::smtp::{Outage, Reply};
use herald_tests::wait;
use sea_orm::TransactionTrait;
use serde_json::json;

fn workflows(files: &[(&str, &str)]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for (name, text) in files {
        let p = d.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    d
}

const BASE: &str = "name: w\non: { subjects: [events.a] }\nemail:\n  from: a@example.com\n  to: \"{{event.email}}\"\n";

/// `workflows validate` does everything rendering would do that can fail
/// without the payload: a bad date pattern, an unknown helper, partials that
/// include each other (which overflowed the stack and aborted the process),
/// a missing partial. Each is reported at its file:line:col, exit 2; and
/// `workflows render` refuses the same directory instead of panicking.
#[test]
fn validate_refuses_what_rendering_would_fail_on() {
    let d = workflows(&[
        (
            "w.yaml",
            &format!(
                "{BASE}  subject: \"{{{{date event.shipped_at \\\"%Q\\\"}}}}\"\n  text: \"{{{{currency event.price \\\"EUR\\\"}}}}\"\n  html_file: templates/body.hbs\n"
            ),
        ),
        ("templates/partials/pa.hbs", "a{{> pb}}"),
        ("templates/partials/pb.hbs", "b{{> pa}}"),
        ("templates/body.hbs", "<p>\n{{> pa}} {{> nope}}</p>"),
    ]);
    let dir = d.path().to_str().unwrap();
    let out = HeraldEnv::default().run(&["workflows", "validate", dir]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let w = d.path().join("w.yaml").display().to_string();
    let body = d.path().join("templates/body.hbs").display().to_string();
    let pb = d
        .path()
        .join("templates/partials/pb.hbs")
        .display()
        .to_string();
    for expected in [
        format!("{w}:6:12: email.subject: date: invalid date pattern \"%Q\""),
        format!("{w}:7:9: email.text: unknown helper \"currency\""),
        format!("{pb}:1:1: partials include each other in a cycle: pa -> pb -> pa"),
        format!("{body}:2:"),
        "unknown partial \"nope\"".to_string(),
    ] {
        assert!(err.contains(&expected), "missing {expected:?} in:\n{err}");
    }
    assert!(!err.contains("panicked"), "{err}");

    let mut env = HeraldEnv::default();
    env.set("HERALD_WORKFLOWS", dir);
    let out = env.run(&[
        "workflows",
        "render",
        "w",
        "--payload",
        r#"{"email":"a@example.com","shipped_at":"2026-01-01T00:00:00Z","price":1}"#,
    ]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A pattern that arrives in the payload is checked at render time: an
/// error naming it, not a panic (exit 101).
#[test]
fn a_date_pattern_from_the_payload_is_an_error_not_a_panic() {
    let d = workflows(&[(
        "w.yaml",
        &format!("{BASE}  subject: \"{{{{date event.at event.pattern}}}}\"\n  text: t\n"),
    )]);
    let mut env = HeraldEnv::default();
    env.set("HERALD_WORKFLOWS", d.path().to_str().unwrap());
    let out = env.run(&[
        "workflows",
        "render",
        "w",
        "--payload",
        r#"{"email":"a@example.com","at":"2026-01-01T00:00:00Z","pattern":"%Q"}"#,
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("invalid date pattern \"%Q\""), "{err}");
}

const PEOPLE: &str = r#"
name: people
on: { subjects: ["events.people.>"] }
email:
  from: "Club \"Tigers\" <noreply@club.example>"
  to: "{{event.name}} <{{event.email}}>"
  cc: "{{event.cc}}"
  subject: "Hello {{event.name}}"
  text: "Hi {{event.name}}"
"#;

/// Display names as RFC 5322 has them: a comma or quotes in a name stay in
/// the name (it used to dead-letter as `invalid address "Lovelace"`), UTF-8
/// becomes an encoded word, and a rendered list with a quoted name holding
/// a comma is two addresses. Compared with golden files.
async fn display_names_with_commas_quotes_and_utf8(backend: Backend) {
    let w = Scenario::new(backend)
        .workflow("people.yaml", PEOPLE)
        .start()
        .await;
    let _relay = w.relay();
    let _worker = w.worker();
    let ada = w
        .emit(
            "events.people.joined",
            json!({"name": "Lovelace, Ada", "email": "ada@example.com",
                   "cc": "\"Doe, J.\" <j@example.org>, k@example.org"}),
        )
        .await;
    let jurgen = w
        .emit(
            "events.people.joined",
            json!({"name": "Jürgen \"Jay\" Müller", "email": "j@xn--mller-kva.example", "cc": ""}),
        )
        .await;
    w.wait_sent(2).await;
    assert_eq!(w.count("SELECT COUNT(*) FROM herald_dead_letters").await, 0);
    let got = w.sink.received();
    let find = |to: &str| got.iter().find(|m| m.rcpt_to[0] == to).unwrap().clone();
    let m = find("ada@example.com");
    assert_eq!(
        m.rcpt_to,
        vec!["ada@example.com", "j@example.org", "k@example.org"]
    );
    golden("address.display-name-comma", &normalize(&m.data, &ada));
    let m = find("j@xn--mller-kva.example");
    golden("address.display-name-utf8", &normalize(&m.data, &jurgen));
}

both_backends!(display_names_with_commas_quotes_and_utf8);

/// One email per `{"n": i}` event, a small retry budget: an outage that
/// counted attempts would dead-letter everything.
const NUMBERED: &str = r#"
name: numbered
on: { subjects: ["events.test.>"] }
email:
  from: "Test <noreply@test.example>"
  to: "u{{event.n}}@example.com"
  subject: "n={{event.n}}"
  text: "event {{event.n}}"
retry:
  max_attempts: 2
  backoff: { initial: 100ms, max: 200ms }
"#;

async fn readyz(addr: &str) -> Option<String> {
    herald_tests::http_get(addr.to_string(), "/readyz").await
}

/// Wait until `/readyz` answers 503 naming the SMTP outage and `detail`.
async fn readyz_names_smtp_outage(addr: &str, detail: &str) {
    wait::until(
        &format!("/readyz names the SMTP outage ({detail})"),
        wait::DEFAULT,
        || async {
            readyz(addr).await.is_some_and(|r| {
                r.starts_with("HTTP/1.1 503") && r.contains("smtp: failing") && r.contains(detail)
            })
        },
    )
    .await
}

/// Let an outage go on for `secs` (the condition is the time itself).
async fn outage_lasts(secs: u64) {
    let since = Instant::now();
    wait::until(
        &format!("the outage has lasted {secs} s"),
        wait::DEFAULT,
        || async { since.elapsed() >= Duration::from_secs(secs) },
    )
    .await
}

/// After an outage: every event emailed exactly once, nothing dead-lettered,
/// no attempt counted for it.
async fn delivered_once_nothing_counted(w: &World, n: usize) {
    w.wait_sent(n as i64).await;
    assert_eq!(w.sink.count(), n, "each email once");
    assert_eq!(w.sink.distinct_recipients().len(), n);
    assert_eq!(w.count("SELECT COUNT(*) FROM herald_dead_letters").await, 0);
    assert_eq!(
        w.count("SELECT COUNT(*) FROM herald_deliveries WHERE attempts <> 1")
            .await,
        0,
        "the outage cost no attempt"
    );
}

/// An SMTP server refusing connections for ~3 seconds used to dead-letter
/// every event in flight (each burnt its attempts on "Connection refused").
/// Now the transport is down, deliveries wait, nothing is counted.
async fn smtp_refusing_connections_briefly_dead_letters_nothing(backend: Backend) {
    let w = Scenario::new(backend)
        .workflow("wf.yaml", NUMBERED)
        .start()
        .await;
    let addr = format!("127.0.0.1:{}", herald_tests::free_port());
    let _relay = w.relay();
    let _worker = w.worker_with(&["--http", &addr]);
    w.wait_count("SELECT COUNT(*) FROM herald_outbox", 0).await;
    w.sink.set_outage(Some(Outage::Refuse));
    w.env.enqueue_many("events.test.n", 20, 4).await;
    readyz_names_smtp_outage(&addr, "").await;
    outage_lasts(3).await;
    w.sink.set_outage(None);
    delivered_once_nothing_counted(&w, 20).await;
    wait::until("/readyz is 200 again", wait::DEFAULT, || async {
        readyz(&addr)
            .await
            .is_some_and(|r| r.starts_with("HTTP/1.1 200"))
    })
    .await;
}

/// Down for 30 s, in every way a server is down (connections dropped, a 421
/// greeting, connections refused), with `max_attempts: 2`: afterwards every
/// email is delivered once, nothing is dead-lettered, and `/readyz` said 503
/// (naming the SMTP transport) during the outage and says 200 after. The
/// worker logged the outage once per change of state.
async fn smtp_down_for_30s_then_everything_delivered_once(backend: Backend) {
    let w = Scenario::new(backend)
        .workflow("wf.yaml", NUMBERED)
        .start()
        .await;
    let addr = format!("127.0.0.1:{}", herald_tests::free_port());
    let _relay = w.relay();
    let worker = w.worker_with(&["--http", &addr]);
    w.sink.set_outage(Some(Outage::Drop));
    w.env.enqueue_many("events.test.n", 60, 6).await;
    let since = Instant::now();
    wait::until("/readyz names the SMTP outage", wait::DEFAULT, || async {
        readyz(&addr)
            .await
            .is_some_and(|r| r.starts_with("HTTP/1.1 503") && r.contains("smtp: failing"))
    })
    .await;
    for (until, outage) in [
        (10, Some(Outage::Greet421)),
        (20, Some(Outage::Refuse)),
        (30, None),
    ] {
        wait::until(
            &format!("{until} s of outage, /readyz 503"),
            wait::DEFAULT,
            || async {
                let r = readyz(&addr).await.unwrap_or_default();
                assert!(
                    !r.starts_with("HTTP/1.1 200"),
                    "ready during the outage: {r}"
                );
                since.elapsed() >= Duration::from_secs(until)
            },
        )
        .await;
        w.sink.set_outage(outage);
    }
    delivered_once_nothing_counted(&w, 60).await;
    wait::until("/readyz is 200 again", wait::DEFAULT, || async {
        readyz(&addr)
            .await
            .is_some_and(|r| r.starts_with("HTTP/1.1 200"))
    })
    .await;
    let log = worker.log();
    let outages = log.matches("SMTP transport unreachable").count();
    assert!(
        (1..=3).contains(&outages),
        "logged once per change of state, not per message: {outages}\n{log}"
    );
}

/// A server that accepts connections and never greets (blackholed, hung,
/// or a TLS port spoken to in plain text) is an outage like a refused
/// connection: each connect times out (`connect_timeout=1s`), the
/// transport is down, nothing is counted or dead-lettered, and everything
/// goes once the server answers.
async fn smtp_connect_timeouts_are_an_outage(backend: Backend) {
    let w = Scenario::new(backend)
        .workflow("wf.yaml", NUMBERED)
        .start()
        .await;
    let addr = format!("127.0.0.1:{}", herald_tests::free_port());
    let _relay = w.relay();
    let mut h = w.h.clone();
    h.set(
        "HERALD_SMTP_URL",
        format!("{}?connect_timeout=1s", w.sink.url()),
    );
    let _worker = h.spawn(&["worker", "--http", &addr]);
    w.wait_count("SELECT COUNT(*) FROM herald_outbox", 0).await;
    w.sink.set_outage(Some(Outage::Silent));
    w.env.enqueue_many("events.test.n", 20, 4).await;
    readyz_names_smtp_outage(&addr, "connect timeout").await;
    outage_lasts(4).await;
    w.sink.set_outage(None);
    delivered_once_nothing_counted(&w, 20).await;
}

both_backends!(
    smtp_refusing_connections_briefly_dead_letters_nothing,
    smtp_down_for_30s_then_everything_delivered_once,
    smtp_connect_timeouts_are_an_outage,
);

/// A TLS handshake that never completes (smtps:// to a server that accepts
/// the connection and says nothing) is an outage like any connect timeout:
/// nothing counted or dead-lettered, every email once when it answers.
#[tokio::test]
async fn a_tls_handshake_that_never_completes_is_an_outage() {
    let w = Scenario::new(Backend::Sqlite)
        .workflow("wf.yaml", NUMBERED)
        .start()
        .await;
    let tls = herald_tests::smtp::SmtpSink::start_with(herald_tests::smtp::Tls::Implicit).await;
    tls.set_outage(Some(Outage::Silent));
    let addr = format!("127.0.0.1:{}", herald_tests::free_port());
    let _relay = w.relay();
    let mut h = w.h.clone();
    h.set(
        "HERALD_SMTP_URL",
        format!(
            "smtps://127.0.0.1:{}?tls_insecure=true&connect_timeout=1s",
            tls.port
        ),
    );
    let _worker = h.spawn(&["worker", "--http", &addr]);
    w.env.enqueue_many("events.test.n", 5, 0).await;
    readyz_names_smtp_outage(&addr, "connect timeout").await;
    outage_lasts(3).await;
    tls.set_outage(None);
    w.wait_sent(5).await;
    assert_eq!(tls.count(), 5, "each email once");
    assert!(tls.received().iter().all(|m| m.tls));
    assert_eq!(w.count("SELECT COUNT(*) FROM herald_dead_letters").await, 0);
    assert_eq!(
        w.count("SELECT COUNT(*) FROM herald_deliveries WHERE attempts <> 1")
            .await,
        0,
        "the outage cost no attempt"
    );
}

/// A host name that does not resolve is an outage, not a failure of each
/// message: `/readyz` names the lookup failure, no delivery is counted or
/// dead-lettered however long it lasts, and a worker given the right
/// address afterwards sends every email once.
#[tokio::test]
async fn an_smtp_host_that_does_not_resolve_is_an_outage() {
    let w = Scenario::new(Backend::Sqlite)
        .workflow("wf.yaml", NUMBERED)
        .start()
        .await;
    let addr = format!("127.0.0.1:{}", herald_tests::free_port());
    let _relay = w.relay();
    let mut h = w.h.clone();
    h.set("HERALD_SMTP_URL", "smtp://no-such-host.invalid:2525");
    let mut worker = h.spawn(&["worker", "--http", &addr]);
    w.env.enqueue_many("events.test.n", 10, 2).await;
    readyz_names_smtp_outage(&addr, "no-such-host.invalid").await;
    outage_lasts(4).await;
    assert_eq!(w.count("SELECT COUNT(*) FROM herald_dead_letters").await, 0);
    assert_eq!(
        w.count("SELECT COUNT(*) FROM herald_deliveries WHERE attempts > 0")
            .await,
        0,
        "no attempt counted for an unreachable server"
    );
    assert_eq!(
        worker.terminate(Duration::from_secs(30)).await.code(),
        Some(0)
    );
    let _worker = w.worker();
    delivered_once_nothing_counted(&w, 10).await;
}

fn uncertain_workflow(policy: &str) -> String {
    format!(
        "{}on_uncertain: {policy}\n",
        NUMBERED.replace("max_attempts: 2", "max_attempts: 3")
    )
}

/// The connection drops after the final "." and the server had the message:
/// `on_uncertain: resend` (the default) sends it again with the same
/// Message-ID, so the copy can be recognised; counted as uncertain.
async fn uncertain_delivery_is_resent_with_the_same_message_id(backend: Backend) {
    let mut w = Scenario::new(backend)
        .workflow("wf.yaml", &uncertain_workflow("resend"))
        .start()
        .await;
    let smtp = format!("{}?timeout=1s", w.sink.url());
    w.h.set("HERALD_SMTP_URL", smtp);
    w.sink.script([Reply::AcceptThenDrop, Reply::Stall]);
    let addr = format!("127.0.0.1:{}", herald_tests::free_port());
    let _relay = w.relay();
    let _worker = w.worker_with(&["--http", &addr]);
    w.env.enqueue_many("events.test.n", 1, 0).await;
    w.wait_sent(1).await;
    let got = w.sink.received();
    assert_eq!(
        got.len(),
        2,
        "accepted, then resent after the drop (the stall was not recorded)"
    );
    assert_eq!(
        got[0].message_id(),
        got[1].message_id(),
        "one Message-ID for the copies"
    );
    assert_eq!(w.sink.data_commands(), 3);
    assert_eq!(w.count("SELECT COUNT(*) FROM herald_dead_letters").await, 0);
    let metrics = herald_tests::http_get(addr, "/metrics")
        .await
        .unwrap_or_default();
    assert!(
        metrics.contains("herald_uncertain_total{role=\"worker\",workflow=\"numbered\"} 2"),
        "{metrics}"
    );
}

/// `on_uncertain: hold`: the delivery is recorded `uncertain` and becomes a
/// dead letter for an operator, not sent again; a re-drive sends it with the
/// same Message-ID.
async fn uncertain_delivery_is_held_for_an_operator(backend: Backend) {
    let w = Scenario::new(backend)
        .workflow("wf.yaml", &uncertain_workflow("hold"))
        .start()
        .await;
    w.sink.script([Reply::DropConnection]);
    let _relay = w.relay();
    let _worker = w.worker();
    w.env.enqueue_many("events.test.n", 1, 0).await;
    w.wait_count(
        "SELECT COUNT(*) FROM herald_dead_letters WHERE kind = 'uncertain'",
        1,
    )
    .await;
    assert_eq!(
        w.count("SELECT COUNT(*) FROM herald_deliveries WHERE state = 'uncertain'")
            .await,
        1
    );
    assert_eq!(w.sink.data_commands(), 1, "not sent again by itself");
    let out = w.run(&["dlq", "retry", "--all"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    w.wait_sent(1).await;
    assert_eq!(w.sink.count(), 1);
    assert!(
        w.sink.received()[0].message_id().starts_with('<'),
        "a Message-ID"
    );
}

both_backends!(
    uncertain_delivery_is_resent_with_the_same_message_id,
    uncertain_delivery_is_held_for_an_operator,
);

/// Emails of one aggregate go to one address: its order at the sink is the
/// order they were sent in.
const PER_AGGREGATE: &str = r#"
name: ordered
on: { subjects: ["events.order.>"] }
email:
  from: "Test <noreply@test.example>"
  to: "a{{event.agg}}@example.com"
  subject: "n={{event.n}}"
  text: "aggregate {{event.agg}} event {{event.n}}"
retry:
  max_attempts: 50
  backoff: { initial: 50ms, max: 200ms }
"#;

/// Per-aggregate order end to end: 50 aggregates × 20 events, two relays
/// (one killed -9 mid-run and restarted; every 7th row refused once before
/// it is published, so it backs off while later rows of its aggregate are
/// ready), a worker killed -9 mid-run and
/// restarted, and a sink that delays its replies at random, refuses some
/// messages (451) and drops some sessions after the message (uncertain):
/// for every aggregate, the emails arrive in the order they were emitted.
async fn order_per_aggregate_end_to_end(backend: Backend) {
    let w = Scenario::new(backend)
        .workflow("wf.yaml", PER_AGGREGATE)
        .start()
        .await;
    let mut rng = herald_tests::rng("order_per_aggregate_end_to_end");
    let replies: Vec<Reply> = (0..1500)
        .map(|_| match rng.u32(0..100) {
            0..5 => Reply::Code(451, "4.3.0 try again".into()),
            5..7 => Reply::DropConnection,
            _ => Reply::Delay(Duration::from_millis(rng.u64(0..15))),
        })
        .collect();
    w.sink.script(replies);
    let (aggregates, per) = (50usize, 20usize);
    let txn_events: Vec<(usize, usize)> = (0..per)
        .flat_map(|n| (0..aggregates).map(move |a| (a, n)))
        .collect();
    // A killed relay's leases expire after 3 s: its rows go to the other.
    // Every 7th first publish is refused before it reaches the stream
    // (failpoint): the rows of its aggregate behind it must wait for it.
    let mut failing = w.h.clone();
    failing.set("HERALD_FAILPOINT", "fail-every:7:relay_publish");
    let relay = || failing.spawn(&["relay", "--relay-poll", "50ms", "--relay-lease", "3s"]);
    let mut relay_a = relay();
    let _relay_b = relay();
    let mut worker = w.worker();
    let kill_relay_at = rng.usize(200..600);
    let kill_worker_at = rng.usize(200..600);
    for (i, chunk) in txn_events.chunks(50).enumerate() {
        let txn = w.env.conn.begin().await.unwrap();
        for (a, n) in chunk {
            enqueue(
                &txn,
                NewEvent::new("events.order.step", json!({"agg": a, "n": n})).aggregate("agg", a),
            )
            .await
            .unwrap();
        }
        txn.commit().await.unwrap();
        let done = (i + 1) * 50;
        if done == kill_relay_at / 50 * 50 {
            relay_a.kill9();
            relay_a = relay();
        }
        if done == kill_worker_at / 50 * 50 {
            wait::until(
                "some emails before the worker dies",
                wait::DEFAULT,
                || async { w.sink.count() > 0 },
            )
            .await;
            worker.kill9();
            worker = w.worker();
        }
    }
    w.wait_sent((aggregates * per) as i64).await;
    assert!(
        w.count("SELECT COUNT(*) FROM herald_outbox WHERE attempts > 0")
            .await
            > 0,
        "the relay's injected failures happened"
    );
    let got = w.sink.received();
    for a in 0..aggregates {
        let to = format!("a{a}@example.com");
        let mut seen = Vec::new();
        for m in got.iter().filter(|m| m.rcpt_to == vec![to.clone()]) {
            let n: usize = m.header("Subject").unwrap()[2..].parse().unwrap();
            // A crash-window resend repeats a message; order is about firsts.
            if !seen.contains(&n) {
                seen.push(n);
            }
        }
        assert_eq!(
            seen,
            (0..per).collect::<Vec<_>>(),
            "aggregate {a} out of order: {seen:?}"
        );
    }
    assert_eq!(w.count("SELECT COUNT(*) FROM herald_dead_letters").await, 0);
}

both_backends!(order_per_aggregate_end_to_end);

/// Per-aggregate order costs events without an aggregate nothing: eight
/// such events waiting in the stream, a server that takes 2 s to answer
/// each, `--concurrency 8`: all eight are in flight at once (the last MAIL
/// FROM reaches the server before the first reply), not one after another
/// (as they are, 16 s, when the eight share an aggregate).
#[tokio::test]
async fn events_without_an_aggregate_keep_full_concurrency() {
    let w = Scenario::new(Backend::Sqlite)
        .workflow("wf.yaml", NUMBERED)
        .start()
        .await;
    let delay = Duration::from_secs(2);
    w.sink.script((0..8).map(|_| Reply::Delay(delay)));
    w.env.enqueue_many("events.test.n", 8, 0).await;
    let _relay = w.relay();
    wait::until("8 events in the stream", wait::DEFAULT, || async {
        w.env.stream_len().await == 8
    })
    .await;
    let _worker = w.worker_with(&["--concurrency", "8"]);
    w.wait_sent(8).await;
    let at: Vec<Instant> = w.sink.received().iter().map(|m| m.at).collect();
    let first = *at.iter().min().unwrap();
    let last = *at.iter().max().unwrap();
    assert!(
        last.duration_since(first) < delay,
        "the eight were admitted over {:?}: sent one after another",
        last.duration_since(first)
    );
}

/// Poison published straight to the stream (no Nats-Msg-Id, a non-JSON
/// payload, a 0-byte payload, a huge header, a valid id with a payload that
/// is not an object, a bare CR in a header value): each becomes a dead letter with its reason, the next
/// 100 events flow, and the consumer stays up.
async fn poison_messages_dead_letter_and_the_consumer_stays_up(backend: Backend) {
    let w = Scenario::new(backend)
        .workflow("wf.yaml", NUMBERED)
        .start()
        .await;
    let addr = format!("127.0.0.1:{}", herald_tests::free_port());
    let _relay = w.relay();
    let worker = w.worker_with(&["--http", &addr]);
    let js = w.env.nats.jetstream().await;
    w.env.enqueue_many("events.test.n", 1, 0).await;
    w.wait_sent(1).await;
    let mut huge = async_nats::HeaderMap::new();
    huge.insert("X-Huge", "h".repeat(60_000).as_str());
    let with_id = || {
        let mut h = async_nats::HeaderMap::new();
        h.insert("Nats-Msg-Id", uuid::Uuid::now_v7().to_string().as_str());
        h
    };
    // An object nested 20,000 deep: parsing must stop at a depth limit
    // (serde_json's 128), never recurse until the stack overflows.
    let deep = format!("{}1{}", "{\"a\":".repeat(20_000), "}".repeat(20_000));
    let poison: Vec<(async_nats::HeaderMap, Vec<u8>)> = vec![
        (async_nats::HeaderMap::new(), b"{\"n\": 1}".to_vec()),
        (with_id(), b"not json at all".to_vec()),
        (async_nats::HeaderMap::new(), b"".to_vec()),
        (huge, b"{}".to_vec()),
        (with_id(), b"[1, 2, 3]".to_vec()),
        (with_id(), deep.into_bytes()),
    ];
    for (h, body) in poison {
        js.publish_with_headers("events.test.poison", h, bytes::Bytes::from(body))
            .await
            .unwrap()
            .await
            .unwrap();
    }
    // A bare CR inside a header value: async-nats will not build it, any
    // other client may; it used to end the worker's NATS connection task
    // (vendor/async-nats/HERALD-PATCH.md).
    w.env
        .nats
        .publish_raw(
            "events.test.poison",
            &format!(
                "Nats-Msg-Id: {}\r\nX-Poison: a\rb\r\n",
                uuid::Uuid::now_v7()
            ),
            b"not json either",
        )
        .await;
    w.env.enqueue_many("events.test.n", 100, 10).await;
    w.wait_sent(101).await;
    w.wait_count("SELECT COUNT(*) FROM herald_dead_letters", 7)
        .await;
    assert_eq!(w.sink.count(), 101);
    let ready = readyz(&addr).await.unwrap_or_default();
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
    assert!(
        !worker.log().contains("consumer stopped"),
        "{}",
        worker.log()
    );
}

/// A panic while processing one message (forced with a failpoint) is caught:
/// the message becomes a dead letter naming the panic, the consumer goes on
/// with the next ones, and the process stays up.
async fn a_panic_processing_a_message_is_a_dead_letter(backend: Backend) {
    let w = Scenario::new(backend)
        .workflow("wf.yaml", NUMBERED)
        .start()
        .await;
    let _relay = w.relay();
    let mut h = w.h.clone();
    h.set("HERALD_FAILPOINT", "panic-once:processing");
    let mut worker = h.spawn(&["worker", "--ack-wait", "2s"]);
    w.env.enqueue_many("events.test.n", 10, 0).await;
    w.wait_sent(9).await;
    w.wait_count("SELECT COUNT(*) FROM herald_dead_letters", 1)
        .await;
    let reason = w
        .count("SELECT COUNT(*) FROM herald_dead_letters WHERE reason LIKE '%panicked%failpoint processing%'")
        .await;
    assert_eq!(reason, 1, "the dead letter names the panic");
    assert!(worker.try_status().is_none(), "the worker is still running");
    assert_eq!(
        worker.terminate(Duration::from_secs(30)).await.code(),
        Some(0)
    );
}

/// A consumer session that dies (forced panic) is restarted with backoff,
/// logged at error, and the workflow's emails flow afterwards.
async fn a_consumer_that_stops_is_restarted(backend: Backend) {
    let w = Scenario::new(backend)
        .workflow("wf.yaml", NUMBERED)
        .start()
        .await;
    let _relay = w.relay();
    let mut h = w.h.clone();
    h.set("HERALD_FAILPOINT", "panic-once:consumer_session");
    let worker = h.spawn(&["worker", "--ack-wait", "2s"]);
    w.env.enqueue_many("events.test.n", 5, 0).await;
    w.wait_sent(5).await;
    let log = worker.log();
    assert!(
        log.contains("ERROR") && log.contains("consumer stopped; starting it again"),
        "{log}"
    );
}

/// While a workflow's consumer is down and being restarted (here: every
/// session panics right after binding), `/readyz` answers 503 naming that
/// consumer and why, `herald_consumer_up` is 0 for it, and the process
/// stays up and still stops cleanly on SIGTERM.
#[tokio::test]
async fn readyz_is_503_while_a_consumer_is_restarting() {
    let w = Scenario::new(Backend::Sqlite)
        .workflow("wf.yaml", NUMBERED)
        .start()
        .await;
    let addr = format!("127.0.0.1:{}", herald_tests::free_port());
    let mut h = w.h.clone();
    h.set("HERALD_FAILPOINT", "panic:consumer_session");
    let mut worker = h.spawn(&["worker", "--http", &addr]);
    wait::until(
        "/readyz 503 naming the restarting consumer",
        wait::DEFAULT,
        || async {
            readyz(&addr).await.is_some_and(|r| {
                r.starts_with("HTTP/1.1 503")
                    && r.contains("consumer numbered")
                    && r.contains("panicked")
            })
        },
    )
    .await;
    let metrics = herald_tests::http_get(addr.clone(), "/metrics")
        .await
        .unwrap_or_default();
    assert!(
        metrics.lines().any(|l| l.starts_with("herald_consumer_up{")
            && l.contains("numbered")
            && l.ends_with(" 0.0")),
        "{metrics}"
    );
    assert!(worker.try_status().is_none(), "{}", worker.log());
    assert_eq!(
        worker.terminate(Duration::from_secs(30)).await.code(),
        Some(0)
    );
}

both_backends!(
    poison_messages_dead_letter_and_the_consumer_stays_up,
    a_panic_processing_a_message_is_a_dead_letter,
    a_consumer_that_stops_is_restarted,
);

/// A dead-lettered event holds back the later events of its aggregate in
/// its workflow (held dead letters), and only those: other aggregates flow.
/// `herald status` lists the held aggregate; re-driving the dead letter
/// sends it and then what waited behind it, in order; `dlq discard` closes
/// one without sending and releases what it held.
async fn a_dead_letter_holds_back_its_aggregate_only(backend: Backend) {
    let w = Scenario::new(backend)
        .workflow("wf.yaml", PER_AGGREGATE)
        .start()
        .await;
    w.sink
        .script([Reply::Code(550, "5.1.1 mailbox unavailable".into())]);
    let _relay = w.relay();
    let mut worker = w.worker();
    for n in 0..3 {
        let txn = w.env.conn.begin().await.unwrap();
        for a in 0..2 {
            enqueue(
                &txn,
                NewEvent::new("events.order.step", json!({"agg": a, "n": n})).aggregate("agg", a),
            )
            .await
            .unwrap();
        }
        txn.commit().await.unwrap();
    }
    // One of the two aggregates got the 550 on its first event; the other's
    // three emails flow.
    w.wait_count("SELECT COUNT(*) FROM herald_dead_letters", 3)
        .await;
    w.wait_sent(3).await;
    let status: serde_json::Value =
        serde_json::from_slice(&w.run(&["status", "--json"]).await.stdout).unwrap();
    assert_eq!(status["consumers"][0]["name"], "herald-ordered", "{status}");
    assert_eq!(status["consumers"][0]["state"], "pulling", "{status}");
    let held = &status["held"]["workflows"];
    assert_eq!(held.as_array().map(Vec::len), Some(1), "{status}");
    assert_eq!(held[0]["held"], 2, "{status}");
    let front = held[0]["dead_letter"].to_string();
    let agg = held[0]["aggregate"]
        .as_str()
        .unwrap()
        .trim_start_matches("agg/")
        .to_string();
    worker.terminate(Duration::from_secs(30)).await;
    let out = w.run(&["dlq", "retry", &front]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("re-drove 3 dead letter(s): 3 delivered"),
        "{text}"
    );
    let to = format!("a{agg}@example.com");
    let order: Vec<String> = w
        .sink
        .received()
        .iter()
        .filter(|m| m.rcpt_to == vec![to.clone()])
        .map(|m| m.header("Subject").unwrap())
        .collect();
    assert_eq!(order, vec!["n=0", "n=1", "n=2"]);
    let status: serde_json::Value =
        serde_json::from_slice(&w.run(&["status", "--json"]).await.stdout).unwrap();
    assert_eq!(status["held"]["workflows"], json!([]), "{status}");
    assert_eq!(
        status["consumers"][0]["state"], "not pulling",
        "the worker is stopped: {status}"
    );
}

/// `dlq discard` closes the dead letter in front without sending it; what
/// it held back is delivered.
async fn discarding_a_dead_letter_releases_its_aggregate(backend: Backend) {
    let w = Scenario::new(backend)
        .workflow("wf.yaml", PER_AGGREGATE)
        .start()
        .await;
    w.sink
        .script([Reply::Code(550, "5.1.1 mailbox unavailable".into())]);
    let _relay = w.relay();
    let mut worker = w.worker();
    let txn = w.env.conn.begin().await.unwrap();
    for n in 0..3 {
        enqueue(
            &txn,
            NewEvent::new("events.order.step", json!({"agg": 7, "n": n})).aggregate("agg", 7),
        )
        .await
        .unwrap();
    }
    txn.commit().await.unwrap();
    w.wait_count("SELECT COUNT(*) FROM herald_dead_letters", 3)
        .await;
    worker.terminate(Duration::from_secs(30)).await;
    let front = w
        .count("SELECT MIN(id) FROM herald_dead_letters")
        .await
        .to_string();
    let out = w.run(&["dlq", "discard", &front]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(w.sink.count(), 2);
    let subjects: Vec<String> = w
        .sink
        .received()
        .iter()
        .map(|m| m.header("Subject").unwrap())
        .collect();
    assert_eq!(subjects, vec!["n=1", "n=2"]);
    let list: Vec<serde_json::Value> =
        serde_json::from_slice(&w.run(&["dlq", "list", "--json"]).await.stdout).unwrap();
    assert!(list.is_empty(), "{list:?}");
}

both_backends!(
    a_dead_letter_holds_back_its_aggregate_only,
    discarding_a_dead_letter_releases_its_aggregate,
);

const SMTP_PW: &str = "S3cretSmtpPW";
const DB_PW: &str = "S3cretDbPW";
const NATS_PW: &str = "S3cretNatsPW";

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
    let mut outputs: Vec<(String, String)> = Vec::new();
    let mut record = |what: &str, out: &std::process::Output| {
        outputs.push((
            what.to_string(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        ));
    };
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
        record(&cmd.join(" "), &run_off_runtime(&h, &cmd).await);
    }
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
        record(
            &format!("worker with {var}"),
            &run_off_runtime(&bad_env, &["worker"]).await,
        );
    }
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

/// Errors name their cause in a line, quickly: NATS down gives the URL and
/// the OS error at once (not "request timed out" after 10 s); a SQLite path
/// that does not exist says how to create it; no cause is repeated down the
/// chain; nothing prints Rust's Debug form.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_name_their_cause() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}?mode=rwc", dir.path().join("h.db").display());
    let mut h = HeraldEnv::default();
    let port = herald_tests::free_port();
    h.set("HERALD_DATABASE_URL", db.clone())
        .set("HERALD_NATS_URL", format!("nats://127.0.0.1:{port}"))
        .set("HERALD_SMTP_URL", "file://./mail")
        .set(
            "HERALD_WORKFLOWS",
            herald_tests::example_workflows().display().to_string(),
        );
    let started = Instant::now();
    let out = run_off_runtime(&h, &["relay"]).await;
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{err}");
    // Within a second on a quiet machine; the bound leaves room for a busy CI.
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        err.contains(&format!("nats://127.0.0.1:{port}"))
            && err.to_lowercase().contains("connection refused"),
        "{err}"
    );

    let missing = dir.path().join("nope.db");
    h.set(
        "HERALD_DATABASE_URL",
        format!("sqlite://{}", missing.display()),
    );
    let out = run_off_runtime(&h, &["status"]).await;
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("add ?mode=rwc"), "{err}");
    h.set("HERALD_DATABASE_URL", "sqlite:///no/such/dir/h.db?mode=rwc");
    let err = String::from_utf8_lossy(&run_off_runtime(&h, &["status"]).await.stderr).to_string();
    assert!(
        err.contains("the directory /no/such/dir does not exist"),
        "{err}"
    );
    // A PostgreSQL port nobody listens on: the OS's reason, not sqlx's
    // "pool timed out".
    let pg = format!("postgres://postgres@127.0.0.1:{port}/nothing");
    h.set("HERALD_DATABASE_URL", pg);
    let out = run_off_runtime(&h, &["relay"]).await;
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.to_lowercase().contains("connection refused") && !err.contains("timed out"),
        "{err}"
    );
    // An unknown host is named as such, at once (no 10 s timeout).
    h.set("HERALD_NATS_URL", "nats://no-such-host.invalid:4222");
    h.set("HERALD_DATABASE_URL", db.clone());
    let started = Instant::now();
    let out = run_off_runtime(&h, &["relay"]).await;
    let unknown = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{unknown}");
    assert!(
        unknown.contains("nats://no-such-host.invalid:4222")
            && (unknown.contains("lookup") || unknown.contains("not known")),
        "{unknown}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    // A file the OS refuses: its error, not only SQLite's "code: 14". An
    // immutable directory refuses even root; where chattr is not allowed
    // (some containers) this part is skipped, and says so.
    let locked = dir.path().join("locked");
    std::fs::create_dir(&locked).unwrap();
    let chattr = std::process::Command::new("chattr")
        .arg("+i")
        .arg(&locked)
        .status();
    if chattr.is_ok_and(|s| s.success()) {
        h.set(
            "HERALD_DATABASE_URL",
            format!("sqlite://{}/h.db?mode=rwc", locked.display()),
        );
        let out = run_off_runtime(&h, &["migrate"]).await;
        let _ = std::process::Command::new("chattr")
            .arg("-i")
            .arg(&locked)
            .status();
        let denied = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(out.status.code(), Some(1), "{denied}");
        assert!(
            denied.contains("operation not permitted") || denied.contains("permission denied"),
            "{denied}"
        );
    } else {
        eprintln!("chattr +i is not allowed here: the permission-denied case is skipped");
    }
    let lines: Vec<&str> = err.lines().collect();
    for (i, a) in lines.iter().enumerate() {
        for b in &lines[i + 1..] {
            let b = b.trim_start_matches("  caused by: ");
            assert!(!a.contains(b), "a cause repeated:\n{err}");
        }
    }
    assert!(
        !err.contains("Some(") && !err.contains(" { "),
        "Debug output: {err}"
    );
    // A duration that used to panic (exit 101) in Duration::from_secs_f64.
    let out = run_off_runtime(&h, &["worker", "--ack-wait", "99999999999999999999d"]).await;
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("longer than 100 years"), "{err}");
}

/// Commands that deliver email need an explicit --smtp-url: a forgotten one
/// used to send real deliveries into ./outbox-mail and mark them sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivering_commands_need_an_explicit_smtp_url() {
    let w = Scenario::new(Backend::Sqlite)
        .workflow("wf.yaml", NUMBERED)
        .start()
        .await;
    let mut h = w.h.clone();
    h.vars.remove("HERALD_SMTP_URL");
    for cmd in [
        vec!["worker"],
        vec!["dlq", "retry", "--all"],
        vec!["replay", "--workflow", "numbered", "--since", "1h"],
    ] {
        let out = run_off_runtime(&h, &cmd).await;
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{cmd:?}: {err}");
        assert!(err.contains("--smtp-url"), "{cmd:?}: {err}");
    }
    let _relay = w.relay();
    w.env.enqueue_many("events.test.n", 1, 0).await;
    w.env.wait_all_published().await;
    let out = run_off_runtime(
        &h,
        &[
            "replay",
            "--workflow",
            "numbered",
            "--since",
            "1h",
            "--dry-run",
        ],
    )
    .await;
    assert!(
        out.status.success(),
        "a dry run sends nothing: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// JSON logs hold real JSON values: numbers are numbers, lists are arrays,
/// and no field is a Rust Debug rendering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_hold_json_values() {
    let w = Scenario::new(Backend::Sqlite)
        .workflow("wf.yaml", NUMBERED)
        .start()
        .await;
    w.sink.script([Reply::Code(451, "4.3.0 later".into())]);
    let _relay = w.relay();
    let mut worker = w.worker_with(&["--log-format", "json"]);
    w.env.enqueue_many("events.test.n", 1, 0).await;
    w.wait_sent(1).await;
    worker.terminate(Duration::from_secs(30)).await;
    let log = worker.log();
    let mut saw_retry = false;
    let mut saw_start = false;
    for line in log.lines().filter(|l| l.starts_with('{')) {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        let fields = &v["fields"];
        if fields["message"] == "worker started" {
            saw_start = true;
            assert_eq!(
                fields["workflows"],
                serde_json::json!(["numbered"]),
                "{line}"
            );
        }
        if fields["message"] == "send failed, will retry" {
            saw_retry = true;
            assert!(fields["retry_in_ms"].is_u64(), "{line}");
            assert!(fields["attempt"].is_u64(), "{line}");
        }
        assert!(!line.contains("Some("), "{line}");
    }
    assert!(saw_retry && saw_start, "{log}");
}

/// `/readyz` tells the truth about NATS and the database, not only SMTP:
/// 503 naming the part while it is unreachable, 200 again when it is back.
/// The database part runs on PostgreSQL (a SQLite file cannot go away
/// under an open connection): connections to the test's database are
/// refused (ALLOW_CONNECTIONS false) and the worker's are terminated.
async fn readyz_names_nats_and_the_database_when_they_are_down(backend: Backend) {
    let mut w = Scenario::new(backend)
        .workflow("wf.yaml", NUMBERED)
        .start()
        .await;
    let addr = format!("127.0.0.1:{}", herald_tests::free_port());
    let _worker = w.worker_with(&["--http", &addr]);
    let ready = |part: &'static str| {
        let addr = addr.clone();
        async move {
            wait::until(&format!("/readyz 200 ({part})"), wait::DEFAULT, || async {
                readyz(&addr)
                    .await
                    .is_some_and(|r| r.starts_with("HTTP/1.1 200"))
            })
            .await
        }
    };
    let down = |needle: &'static str| {
        let addr = addr.clone();
        async move {
            wait::until(
                &format!("/readyz 503 naming {needle}"),
                wait::DEFAULT,
                || async {
                    readyz(&addr)
                        .await
                        .is_some_and(|r| r.starts_with("HTTP/1.1 503") && r.contains(needle))
                },
            )
            .await
        }
    };
    ready("start").await;
    w.env.nats.kill();
    down("nats: failing").await;
    w.env.nats.restart().await;
    ready("nats back").await;

    if backend == Backend::Postgres {
        let admin = sea_orm::Database::connect(herald_tests::db::pg_admin_url())
            .await
            .unwrap();
        let name = w.env.db.url.rsplit('/').next().unwrap().to_string();
        use sea_orm::ConnectionTrait;
        admin
            .execute_unprepared(&format!(
                "ALTER DATABASE {name} ALLOW_CONNECTIONS false; \
                 SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = '{name}' AND application_name LIKE 'herald worker%'"
            ))
            .await
            .unwrap();
        down("database: failing").await;
        admin
            .execute_unprepared(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"))
            .await
            .unwrap();
        ready("database back").await;
    }
}

both_backends!(readyz_names_nats_and_the_database_when_they_are_down);
