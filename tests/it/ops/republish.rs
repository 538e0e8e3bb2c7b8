//! Republishing after a stream is lost: nothing sent twice, and republished
//! events keep their order.

use super::{NUMBERED, ok_stdout, with_workflow};
use herald_tests::db::Backend;
use herald_tests::{both_backends, wait};
use serde_json::json;
use std::time::Duration;

/// JetStream lost its messages (store wiped); the outbox still holds the
/// published rows: republish restores the stream and the ledger keeps the
/// worker from emailing anyone twice.
async fn republish_after_stream_loss_sends_nothing_twice(backend: Backend) {
    let w = with_workflow(backend, NUMBERED).await;
    let mut relay = w.h.spawn(&["relay", "--relay-poll", "50ms"]);
    let mut worker = w.h.spawn(&["worker"]);
    w.env.enqueue_many("events.test.n", 20, 0).await;
    wait::until("20 emails", wait::DEFAULT, || async {
        w.sink.count() == 20
    })
    .await;
    relay.terminate(Duration::from_secs(30)).await;
    worker.terminate(Duration::from_secs(30)).await;
    // The stream loses everything it acknowledged.
    let js = w.env.nats.jetstream().await;
    js.delete_stream("HERALD").await.unwrap();
    // In pages of 7 (7 + 7 + 6): a long range is never held in memory whole.
    let out = ok_stdout(
        &w.run(&["outbox", "republish", "--since", "1h", "--batch", "7"])
            .await,
    );
    assert!(
        out.contains("republished 20 row(s): 20 stored again"),
        "{out}"
    );
    herald_tests::env::assert_once_and_ordered(&w.env.stream_messages().await, 20);
    let _worker = w.h.spawn(&["worker"]);
    wait::until(
        "the new consumer has acked all 20",
        wait::DEFAULT,
        || async {
            let Ok(s) = js.get_stream("HERALD").await else {
                return false;
            };
            let Ok(mut c) = s
                .get_consumer::<async_nats::jetstream::consumer::pull::Config>("herald-numbered")
                .await
            else {
                return false;
            };
            c.info()
                .await
                .is_ok_and(|i| i.ack_floor.stream_sequence >= 20)
        },
    )
    .await;
    assert_eq!(w.sink.count(), 20, "duplicates: {}", w.sink.count() - 20);
    let out = ok_stdout(
        &w.run(&[
            "outbox",
            "republish",
            "--since",
            "1h",
            "--subject",
            "events.other.>",
        ])
        .await,
    );
    assert!(out.contains("republished 0 row(s)"), "{out}");
}

/// Regression (found by the soak): the stream is lost with events not yet
/// emailed, later events of the same aggregate are published into the
/// recreated stream, then `outbox republish` puts the earlier ones behind
/// them. The worker used to hold each later event at the head of its lane,
/// waiting for the earlier one queued behind it (and, with lanes or
/// max_ack_pending full, never pulled): nothing was emailed again. Now all
/// are emailed, in the aggregate's order, even with room for only 4 in flight.
async fn republished_events_behind_later_ones_are_emailed_in_order(backend: Backend) {
    let w = with_workflow(
        backend,
        &NUMBERED.replace("u{{event.n}}@example.com", "agg@example.com"),
    )
    .await;
    let mut relay = w.h.spawn(&["relay", "--relay-poll", "50ms"]);
    let old = herald_tests::env::enqueue_many_on(&w.env.conn, "events.test.n", 10, 1).await;
    w.env.wait_all_published().await;
    let js = w.env.nats.jetstream().await;
    js.delete_stream("HERALD").await.unwrap();
    // n = 10..19 of the same aggregate go into a recreated stream first.
    let txn = sea_orm::TransactionTrait::begin(&w.env.conn).await.unwrap();
    for n in 10..20 {
        herald::outbox::enqueue(
            &txn,
            herald::outbox::NewEvent::new("events.test.n", json!({ "n": n })).aggregate("agg", 0),
        )
        .await
        .unwrap();
    }
    txn.commit().await.unwrap();
    w.env.wait_all_published().await;
    assert_eq!(w.env.stream_len().await, 10);
    let out = ok_stdout(&w.run(&["outbox", "republish", "--since", "1h"]).await);
    assert!(out.contains("10 stored again"), "{out}");
    assert_eq!(old.len(), 10);
    let worker =
        w.h.spawn(&["worker", "--ack-wait", "5s", "--max-ack-pending", "4"]);
    wait::until("20 emails", Duration::from_secs(120), || async {
        w.sink.count() >= 20
    })
    .await;
    assert_eq!(w.sink.count(), 20, "worker log:\n{}", worker.log());
    let order = w.sink.subjects();
    let expected: Vec<String> = (0..20).map(|n| format!("n={n}")).collect();
    assert_eq!(order, expected);
    relay.terminate(Duration::from_secs(30)).await;
}

both_backends!(
    republish_after_stream_loss_sends_nothing_twice,
    republished_events_behind_later_ones_are_emailed_in_order
);
