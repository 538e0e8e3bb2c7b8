//! Uncertain deliveries (the connection drops after the final "."): resent with
//! the same Message-ID, or held for an operator.

use super::NUMBERED;
use herald_tests::both_backends;
use herald_tests::db::Backend;
use herald_tests::scenario::Scenario;
use herald_tests::smtp::Reply;

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
