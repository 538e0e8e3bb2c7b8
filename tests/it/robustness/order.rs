//! Per-aggregate order under kills, refusals and drops; dead letters that hold
//! back their aggregate only; full concurrency for events without one.

use super::NUMBERED;
use herald::outbox::{NewEvent, enqueue};
use herald_tests::db::Backend;
use herald_tests::scenario::Scenario;
use herald_tests::smtp::{Received, Reply};
use herald_tests::{both_backends, wait};
use sea_orm::TransactionTrait;
use serde_json::json;
use std::time::{Duration, Instant};

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

/// A sink that delays its replies at random, refuses some messages (451) and
/// drops some sessions after the message.
fn chaotic_replies(rng: &mut fastrand::Rng) -> Vec<Reply> {
    (0..1500)
        .map(|_| match rng.u32(0..100) {
            0..5 => Reply::Code(451, "4.3.0 try again".into()),
            5..7 => Reply::DropConnection,
            _ => Reply::Delay(Duration::from_millis(rng.u64(0..15))),
        })
        .collect()
}

/// For every aggregate, the first copies arrived in the order emitted.
fn each_aggregate_in_order(got: &[Received], aggregates: usize, per: usize) {
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
}

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
    w.sink.script(chaotic_replies(&mut rng));
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
    each_aggregate_in_order(&w.sink.received(), aggregates, per);
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
    // A dry run says what the replay will do, counted alike.
    let out = w
        .run(&[
            "replay",
            "--workflow",
            "ordered",
            "--from-seq",
            "1",
            "--dry-run",
        ])
        .await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("replayed 6, sent 0, skipped 4, failed 2"),
        "{text}"
    );
    assert_eq!(
        text.matches("held behind dead-lettered event").count(),
        2,
        "{text}"
    );
    assert_eq!(
        text.matches("recorded as dead: skipped").count(),
        1,
        "{text}"
    );
    // A replay over the range holds them again without a second dead
    // letter each, and counts them as failed (not delivered).
    let out = w
        .run(&["replay", "--workflow", "ordered", "--from-seq", "1"])
        .await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("replayed 6, sent 0, skipped 4, failed 2"),
        "{text}"
    );
    assert_eq!(w.count("SELECT COUNT(*) FROM herald_dead_letters").await, 3);
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
    let subjects = w.sink.subjects();
    assert_eq!(subjects, vec!["n=1", "n=2"]);
    let list: Vec<serde_json::Value> =
        serde_json::from_slice(&w.run(&["dlq", "list", "--json"]).await.stdout).unwrap();
    assert!(list.is_empty(), "{list:?}");
}

/// An unfinished earlier event is waited for however many events of other
/// subjects stand between it and the later one: the check once read only
/// the aggregate's next 100 rows and let the later event go first.
async fn an_earlier_event_behind_many_others_is_still_waited_for(backend: Backend) {
    let w = Scenario::new(backend)
        .workflow("wf.yaml", PER_AGGREGATE)
        .start()
        .await;
    let txn = w.env.conn.begin().await.unwrap();
    for n in 0..150 {
        let other = NewEvent::new("events.other.step", json!({"n": n})).aggregate("agg", 7);
        enqueue(&txn, other).await.unwrap();
    }
    for n in 0..2 {
        let mine =
            NewEvent::new("events.order.step", json!({"agg": 7, "n": n})).aggregate("agg", 7);
        enqueue(&txn, mine).await.unwrap();
    }
    txn.commit().await.unwrap();
    let _relay = w.relay();
    w.env.wait_all_published().await;
    // Only the later of the two: the earlier one has not been emailed.
    let out = w
        .run(&["replay", "--workflow", "ordered", "--from-seq", "152"])
        .await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("replayed 1, sent 0"), "{text}");
    assert_eq!(w.sink.count(), 0, "the later event went first");
    // The worker sends both, in order.
    let _worker = w.worker();
    w.wait_sent(2).await;
    let order = w.sink.subjects();
    assert_eq!(order, vec!["n=0", "n=1"]);
}

both_backends!(
    a_dead_letter_holds_back_its_aggregate_only,
    discarding_a_dead_letter_releases_its_aggregate,
    an_earlier_event_behind_many_others_is_still_waited_for,
);
