//! Poison messages and panics: each becomes a dead letter, a stopped consumer is
//! restarted, and `/readyz` says so meanwhile.

use super::{NUMBERED, readyz};
use herald_tests::db::Backend;
use herald_tests::scenario::Scenario;
use herald_tests::{both_backends, wait};
use std::time::Duration;

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
    // Each says why: the array is not an object; the deep object is one,
    // but deeper than the parser reads (it was called "not an object").
    for (reason, n) in [
        ("%is not a JSON object%", 1),
        ("%cannot be read: recursion limit exceeded%", 1),
    ] {
        let sql = format!("SELECT COUNT(*) FROM herald_dead_letters WHERE reason LIKE '{reason}'");
        assert_eq!(w.count(&sql).await, n, "{reason}");
    }
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
