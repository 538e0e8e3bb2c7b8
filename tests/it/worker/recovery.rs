//! Crashes and surprises: a worker killed at each step sends once, foreign
//! messages, a deleted consumer, a delivery claimed by another worker.

use super::{FAST_RETRY, flowing, notify, stream_ack_floor};
use herald_tests::db::Backend;
use herald_tests::process::Herald;
use herald_tests::scenario::{Scenario, World};
use herald_tests::{both_backends, wait};
use serde_json::json;
use std::time::Duration;

/// Run relay and a worker that aborts at `failpoint` while handling one
/// event; returns once that worker has died (the relay keeps running).
async fn crash_worker_at(backend: Backend, failpoint: &str) -> (World, Herald) {
    let w = notify(backend).await;
    let relay = w.relay();
    let mut crashing = w.h.clone();
    crashing.set("HERALD_FAILPOINT", failpoint);
    let mut worker = crashing.spawn(&["worker", "--ack-wait", "2s"]);
    w.emit(
        "events.test.a",
        json!({"email": "a@example.com", "name": "A"}),
    )
    .await;
    let status = worker.wait(Duration::from_secs(60)).await;
    assert!(!status.success(), "the failpoint aborted the worker");
    (w, relay)
}

/// Kill the worker after the ledger says `sent` but before the ack: the
/// redelivered message finds the ledger row and sends nothing.
async fn crash_after_ledger_before_ack_sends_once(backend: Backend) {
    let (w, _relay) = crash_worker_at(backend, "after_ledger_sent").await;
    assert_eq!(w.sink.count(), 1);
    let _worker = w.worker();
    wait::until(
        "the redelivered message is acked",
        wait::DEFAULT,
        || async { stream_ack_floor(&w.env).await >= 1 },
    )
    .await;
    assert_eq!(w.sink.count(), 1, "no second email");
}

/// Kill the worker after SMTP accepted but before the ledger write: the
/// message is sent again with the same Message-ID (the documented window).
async fn crash_after_accept_before_ledger_resends_same_message_id(backend: Backend) {
    let (w, _relay) = crash_worker_at(backend, "after_smtp_accept").await;
    let _worker = w.worker();
    w.wait_emails(2).await;
    w.wait_sent(1).await;
    let got = w.sink.received();
    assert_eq!(
        got.len(),
        2,
        "one duplicate inside the accepted-but-not-recorded window"
    );
    assert_eq!(
        got[0].message_id(),
        got[1].message_id(),
        "a duplicate is recognisable downstream"
    );
}

both_backends!(
    crash_after_ledger_before_ack_sends_once,
    crash_after_accept_before_ledger_resends_same_message_id
);

/// A message that is not a Herald event (no Nats-Msg-Id) is dead-lettered
/// whole and does not block the event behind it.
async fn foreign_message_dead_letters_and_others_flow(backend: Backend) {
    let (w, _relay, _worker) = flowing(backend).await;
    let js = w.env.nats.jetstream().await;
    js.publish("events.test.foreign", r#"{"email":"x@example.com"}"#.into())
        .await
        .unwrap()
        .await
        .unwrap();
    w.emit(
        "events.test.after",
        json!({"email": "b@example.com", "name": "B"}),
    )
    .await;
    w.wait_emails(2).await;
    wait::until(
        "the foreign message is dead-lettered",
        wait::DEFAULT,
        || async { w.count("SELECT COUNT(*) FROM herald_dead_letters").await == 1 },
    )
    .await;
    use sea_orm::EntityTrait;
    let dl = herald_entities::dead_letter::Entity::find()
        .one(&w.env.conn)
        .await
        .unwrap()
        .unwrap();
    assert!(dl.reason.contains("no Nats-Msg-Id"), "{}", dl.reason);
    assert_eq!(dl.subject, "events.test.foreign");
    assert!(dl.payload.contains("x@example.com"), "kept whole");
}

both_backends!(foreign_message_dead_letters_and_others_flow);

/// The worker killed -9 at several points while 500 events flow, restarted
/// each time: every event is delivered; duplicates can only come from the
/// accepted-but-not-recorded window, and keep their Message-ID.
async fn worker_killed_repeatedly_delivers_everything(backend: Backend) {
    let w = Scenario::new(backend)
        .workflow(
            "notify.yaml",
            &FAST_RETRY
                .replace("{{event.email}}", "u{{event.n}}@example.com")
                .replace("{{event.name}}", "{{event.n}}"),
        )
        .start()
        .await;
    let _relay = w.relay();
    w.env.enqueue_many("events.test.n", 500, 25).await;
    // Four kill points anywhere in the run, a random one possibly before the
    // previous worker had even bound its consumer.
    let mut rng = herald_tests::rng("worker_killed_repeatedly_delivers_everything");
    let mut kills: Vec<usize> = (0..4).map(|_| rng.usize(10..490)).collect();
    kills.sort_unstable();
    eprintln!("kill -9 after {kills:?} emails");
    for &at in &kills {
        let mut worker = w.worker();
        wait::until(&format!("{at} emails"), wait::DEFAULT, || async {
            w.sink.count() >= at
        })
        .await;
        worker.kill9();
    }
    let _worker = w.worker();
    wait::until(
        "all 500 deliveries recorded sent",
        Duration::from_secs(120),
        || async {
            w.count("SELECT COUNT(*) FROM herald_deliveries WHERE state = 'sent'")
                .await
                == 500
        },
    )
    .await;
    let got = w.sink.received();
    let mut by_id = std::collections::HashMap::new();
    for m in &got {
        *by_id.entry(m.message_id()).or_insert(0) += 1;
    }
    assert_eq!(by_id.len(), 500, "every event delivered");
    let duplicates = got.len() - 500;
    eprintln!(
        "worker killed {} times: {duplicates} duplicate email(s), all with the original Message-ID",
        kills.len()
    );
    // Each kill can interrupt at most `concurrency` sends between SMTP accept and the ledger write.
    assert!(duplicates <= kills.len() * 16, "{duplicates} duplicates");
    // And every duplicate came through that window: its delivery was claimed
    // again after its worker died (attempts > 1), never twice at once.
    for (mid, n) in by_id.iter().filter(|(_, n)| **n > 1) {
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
        let event_id = mid.trim_start_matches('<').split('.').next().unwrap();
        let row = herald_entities::delivery::Entity::find()
            .filter(
                herald_entities::delivery::Column::EventId
                    .eq(uuid::Uuid::parse_str(event_id).unwrap()),
            )
            .one(&w.env.conn)
            .await
            .unwrap()
            .unwrap();
        assert!(
            row.attempts >= 2,
            "{mid} sent {n} times on attempt {}",
            row.attempts
        );
    }
}

both_backends!(worker_killed_repeatedly_delivers_everything);

/// An operator deletes a workflow's durable consumer while the worker runs
/// (by mistake, or to reset it): the worker binds a new one and carries on.
async fn deleted_consumer_is_recreated(backend: Backend) {
    let (w, _relay, worker) = flowing(backend).await;
    let js = w.env.nats.jetstream().await;
    let stream = js.get_stream("HERALD").await.unwrap();
    stream.delete_consumer("herald-notify").await.unwrap();
    w.emit(
        "events.test.b",
        json!({"email": "b@example.com", "name": "B"}),
    )
    .await;
    wait::until(
        "the worker re-creates its consumer and sends the next email",
        wait::DEFAULT,
        || async { w.sink.count() >= 2 },
    )
    .await;
    assert!(
        worker.log().to_lowercase().contains("consumer deleted"),
        "the worker says why it re-binds:\n{}",
        worker.log()
    );
    // The re-created consumer starts from the stream's start; the ledger
    // skips the first event: once both messages are acked, two emails.
    w.wait_sent(2).await;
    wait::until("the new consumer acked both", wait::DEFAULT, || async {
        stream_ack_floor(&w.env).await >= 2
    })
    .await;
    assert_eq!(w.sink.count(), 2, "the first event was not sent again");
}

both_backends!(deleted_consumer_is_recreated);

/// A delivery another worker has just claimed (it may be sending it right
/// now) is not sent by this one: the message waits (nak with delay) until the
/// other records it, then is acked with nothing sent.
async fn delivery_claimed_elsewhere_is_not_sent_twice(backend: Backend) {
    let w = notify(backend).await;
    let _relay = w.relay();
    let id = w
        .emit(
            "events.test.a",
            json!({"email": "a@example.com", "name": "A"}),
        )
        .await;
    w.env.wait_all_published().await;
    let key = herald::internals::ledger::Key {
        event_id: id.parse().unwrap(),
        workflow: "notify",
        recipient: "a@example.com",
    };
    // The other worker claims it, then the message reaches this one.
    herald::internals::ledger::claim(
        &w.env.conn,
        &key,
        0,
        "Hello A",
        Duration::from_secs(60),
        true,
    )
    .await
    .unwrap();
    // A lease far longer than the worker's start-up, so the claim is fresh
    // when the message arrives; the worker looks again every 2 s at most.
    let worker = w.h.spawn(&["worker", "--ack-wait", "30s"]);
    wait::until(
        "the worker defers to the other claim",
        wait::DEFAULT,
        || async {
            worker
                .log()
                .contains("another worker is sending this email")
        },
    )
    .await;
    // The other worker's send succeeds and is recorded.
    herald::internals::ledger::mark_sent(&w.env.conn, &key, "<other>", "250 ok")
        .await
        .unwrap();
    wait::until("the message is acked", wait::DEFAULT, || async {
        stream_ack_floor(&w.env).await == 1
    })
    .await;
    assert_eq!(w.sink.count(), 0, "this worker sent nothing");
}

both_backends!(delivery_claimed_elsewhere_is_not_sent_twice);
