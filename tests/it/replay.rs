//! Replay after an outage: the ledger decides, nobody is emailed twice.
use std::time::Duration;

use herald_tests::both_backends;
use herald_tests::db::Backend;
use herald_tests::process::HeraldEnv;
use herald_tests::scenario::{Scenario, World, run_off_runtime};
use herald_tests::wait;

const WF: &str = r#"
name: notify
on: { subjects: ["events.test.>"] }
email:
  from: "Test <noreply@test.example>"
  to: "u{{event.n}}@example.com"
  subject: "n={{event.n}}"
  text: "event {{event.n}}"
"#;

async fn world(backend: Backend, nats_config: &str) -> World {
    Scenario::new(backend)
        .workflow("wf.yaml", WF)
        .nats_config(nats_config)
        .start()
        .await
}

/// Run herald off the runtime (the sink it sends to runs on it).
async fn run(h: &HeraldEnv, args: &[&str]) -> (Option<i32>, String, String) {
    let out = run_off_runtime(h, args).await;
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `replay --dry-run` over the last hour: all 15 listed, the 10 sent marked,
/// no warning of lost messages, nothing sent.
async fn a_dry_run_lists_all_and_sends_nothing(w: &World) {
    let (code, out, err) = run(
        &w.h,
        &[
            "replay",
            "--workflow",
            "notify",
            "--since",
            "1h",
            "--dry-run",
        ],
    )
    .await;
    assert_eq!(code, Some(0), "{err}");
    assert!(
        !err.contains("older ones are gone"),
        "a stream younger than --since lost nothing: {err}"
    );
    assert_eq!(
        out.lines().filter(|l| l.starts_with("seq ")).count(),
        15,
        "{out}"
    );
    assert_eq!(out.matches("already sent").count(), 10, "{out}");
    assert!(
        out.contains("replayed 15, sent 5, skipped 10, failed 0"),
        "{out}"
    );
    assert_eq!(w.sink.count(), 10, "a dry run sends nothing");
}

/// The durable consumer is lost while 5 events were not yet processed; a
/// replay of the last hour sends only those 5.
async fn replay_after_consumer_loss_sends_only_unsent(backend: Backend) {
    let w = world(backend, "").await;
    let mut relay = w.h.spawn(&["relay", "--relay-poll", "50ms"]);
    let mut worker = w.h.spawn(&["worker"]);
    w.env.enqueue_many("events.test.a", 10, 0).await;
    wait::until("10 emails", wait::DEFAULT, || async {
        w.sink.count() == 10
    })
    .await;
    assert_eq!(
        worker.terminate(Duration::from_secs(30)).await.code(),
        Some(0)
    );
    w.env.enqueue_many("events.test.b", 5, 0).await;
    wait::until("15 events in the stream", wait::DEFAULT, || async {
        w.env.stream_len().await == 15
    })
    .await;
    let js = w.env.nats.jetstream().await;
    js.get_stream("HERALD")
        .await
        .unwrap()
        .delete_consumer("herald-notify")
        .await
        .unwrap();

    a_dry_run_lists_all_and_sends_nothing(&w).await;

    let (code, out, err) = run(&w.h, &["replay", "--workflow", "notify", "--since", "1h"]).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("replayed 15, sent 5, skipped 10, failed 0"),
        "{out}"
    );
    assert_eq!(w.sink.count(), 15);
    let to = w.sink.distinct_recipients();
    assert_eq!(
        to.len(),
        10,
        "5 new events reuse n=0..4 addresses: 10 distinct, 15 emails, no duplicate event"
    );

    let (code, out, _) = run(&w.h, &["replay", "--workflow", "notify", "--from-seq", "1"]).await;
    assert_eq!(code, Some(0));
    assert!(
        out.contains("replayed 15, sent 0, skipped 15, failed 0"),
        "{out}"
    );
    assert_eq!(w.sink.count(), 15, "a second replay sends nothing");
    assert_eq!(
        relay.terminate(Duration::from_secs(30)).await.code(),
        Some(0)
    );
}

/// --resend sends again, with a distinct Message-ID and the reason recorded.
async fn replay_resend_marks_new_message_ids(backend: Backend) {
    let w = world(backend, "").await;
    let _relay = w.h.spawn(&["relay", "--relay-poll", "50ms"]);
    let mut worker = w.h.spawn(&["worker"]);
    w.env.enqueue_many("events.test.a", 3, 0).await;
    wait::until("3 emails", wait::DEFAULT, || async { w.sink.count() == 3 }).await;
    worker.terminate(Duration::from_secs(30)).await;
    let (code, out, err) = run(
        &w.h,
        &[
            "replay",
            "--workflow",
            "notify",
            "--from-seq",
            "1",
            "--resend",
            "--reason",
            "template fix",
        ],
    )
    .await;
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("replayed 3, sent 3, skipped 0, failed 0"),
        "{out}"
    );
    let got = w.sink.received();
    assert_eq!(got.len(), 6);
    let originals: Vec<_> = got[..3].iter().map(|m| m.message_id()).collect();
    for m in &got[3..] {
        assert!(m.message_id().contains(".r2@"), "{}", m.message_id());
        assert!(!originals.contains(&m.message_id()));
    }
    assert_eq!(
        w.env.scalar("SELECT COUNT(*) FROM herald_deliveries WHERE resend_reason = 'template fix' AND state = 'sent'").await,
        3
    );
}

/// A range the stream no longer holds is reported, not silently skipped.
async fn replay_of_a_range_gone_says_so(backend: Backend) {
    let w = world(backend, "").await;
    let js = w.env.nats.jetstream().await;
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "HERALD".into(),
        subjects: vec!["events.>".into()],
        max_messages: 5,
        ..Default::default()
    })
    .await
    .unwrap();
    let _relay = w.h.spawn(&["relay", "--relay-poll", "50ms"]);
    w.env.enqueue_many("events.test.a", 10, 0).await;
    w.env.wait_all_published().await;
    let (code, _, err) = run(
        &w.h,
        &[
            "replay",
            "--workflow",
            "notify",
            "--from-seq",
            "1",
            "--dry-run",
        ],
    )
    .await;
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("no longer holds sequence 1") && err.contains("starts at 6"),
        "{err}"
    );
}

both_backends!(
    replay_after_consumer_loss_sends_only_unsent,
    replay_resend_marks_new_message_ids,
    replay_of_a_range_gone_says_so,
);

#[test]
fn replay_needs_a_start() {
    let out = HeraldEnv::default().run(&["replay", "--workflow", "x"]);
    assert_eq!(out.status.code(), Some(2));
    // A range that cannot hold anything is a usage error, before any I/O.
    for (args, says) in [
        (&["--from-seq", "0"][..], "0 is not in 1.."),
        (&["--since", "1h", "--until", "2h"], "is before --since"),
    ] {
        let out = HeraldEnv::default().run(&[&["replay", "--workflow", "x"][..], args].concat());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

/// SIGINT stops a replay between messages; it prints where to continue, and
/// continuing from there finishes the range with nobody emailed twice.
async fn replay_interrupted_then_resumed(backend: Backend) {
    let w = world(backend, "").await;
    let mut relay = w.h.spawn(&["relay", "--relay-poll", "50ms"]);
    w.env.enqueue_many("events.test.a", 20, 0).await;
    w.env.wait_all_published().await;
    relay.terminate(Duration::from_secs(30)).await;
    w.sink
        .script((0..20).map(|_| herald_tests::smtp::Reply::Delay(Duration::from_millis(200))));
    let mut replay =
        w.h.spawn(&["replay", "--workflow", "notify", "--from-seq", "1"]);
    wait::until("the replay has sent a few", wait::DEFAULT, || async {
        w.sink.count() >= 3
    })
    .await;
    replay.signal("INT");
    let status = replay.wait(Duration::from_secs(30)).await;
    let log = replay.log();
    assert_eq!(status.code(), Some(1), "{log}");
    let next: u64 = log
        .split("continue with --from-seq ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no continuation hint in:\n{log}"));
    assert!(next < 21, "interrupted before the end: {log}");
    let (code, out, err) = run(
        &w.h,
        &[
            "replay",
            "--workflow",
            "notify",
            "--from-seq",
            &next.to_string(),
        ],
    )
    .await;
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("failed 0"), "{out}");
    assert_eq!(w.sink.count(), 20, "every event once across both runs");
}

both_backends!(replay_interrupted_then_resumed);

/// A replay over a range a running worker is still working through: a
/// delivery that worker has claimed (and may be sending right now) is left
/// to it, not sent a second time, and is not a failure of the replay.
async fn replay_leaves_in_flight_deliveries_to_their_worker(backend: Backend) {
    let w = world(backend, "").await;
    let mut relay = w.h.spawn(&["relay", "--relay-poll", "50ms"]);
    let ids = w.env.enqueue_many("events.test.a", 2, 0).await;
    w.env.wait_all_published().await;
    // The other worker's claim on the first event's delivery, made just now.
    let key = herald::internals::ledger::Key {
        event_id: ids[0].into(),
        workflow: "notify",
        recipient: "u0@example.com",
    };
    let claim = herald::internals::ledger::claim(
        &w.env.conn,
        &key,
        0,
        "n=0",
        Duration::from_secs(60),
        true,
    )
    .await
    .unwrap();
    assert_eq!(claim, herald::internals::ledger::Claim::Send { attempt: 1 });
    let (code, out, err) = run(&w.h, &["replay", "--workflow", "notify", "--from-seq", "1"]).await;
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("replayed 2, sent 1, skipped 1, failed 0"),
        "{out}{err}"
    );
    let to: Vec<String> = w
        .sink
        .received()
        .iter()
        .map(|m| m.rcpt_to.join(","))
        .collect();
    assert_eq!(
        to,
        ["u1@example.com"],
        "only the unclaimed delivery is sent"
    );
    assert_eq!(
        relay.terminate(Duration::from_secs(30)).await.code(),
        Some(0)
    );
}

both_backends!(replay_leaves_in_flight_deliveries_to_their_worker);

const FAN_OUT: &str = r#"
name: wave
on: { subjects: ["events.wave.>"] }
for_each: event.recipients
email:
  from: "Test <noreply@test.example>"
  to: "{{item.email}}"
  subject: "code {{item.code}}"
  text: "your code is {{item.code}}"
"#;

/// A fan-out that lists the same address twice sends two emails (one per
/// item, the second's ledger key carries its index). The dry run keys the
/// ledger as the worker does: with the repeated item's delivery gone from
/// the ledger (as if its message was never processed), it says that one
/// would be sent, not that it was, and the replay then sends exactly it.
async fn replay_dry_run_keys_repeated_recipients_as_the_worker(backend: Backend) {
    let w = Scenario::new(backend)
        .workflow("wf.yaml", FAN_OUT)
        .start()
        .await;
    let _relay = w.relay();
    let mut worker = w.worker();
    w.emit(
        "events.wave.sent",
        serde_json::json!({"recipients": [
            {"email": "a@example.com", "code": "A1"},
            {"email": "b@example.com", "code": "B1"},
            {"email": "a@example.com", "code": "A2"},
        ]}),
    )
    .await;
    w.wait_sent(3).await;
    assert_eq!(w.sink.count(), 3);
    assert_eq!(
        worker.terminate(Duration::from_secs(30)).await.code(),
        Some(0)
    );
    use sea_orm::ConnectionTrait;
    let gone = w
        .env
        .conn
        .execute_unprepared("DELETE FROM herald_deliveries WHERE recipient LIKE '%#2'")
        .await
        .unwrap();
    assert_eq!(gone.rows_affected(), 1, "the repeated item has its own key");
    let (code, out, err) = run(
        &w.h,
        &["replay", "--workflow", "wave", "--since", "1h", "--dry-run"],
    )
    .await;
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out.matches("already sent").count(), 2, "{out}");
    assert!(
        out.contains("replayed 1, sent 1, skipped 2, failed 0"),
        "{out}"
    );
    assert_eq!(w.sink.count(), 3, "a dry run sends nothing");
    let (code, out, err) = run(&w.h, &["replay", "--workflow", "wave", "--since", "1h"]).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("replayed 1, sent 1, skipped 2, failed 0"),
        "{out}"
    );
    let got = w.sink.received();
    assert_eq!(got.len(), 4);
    assert!(
        got[3].data.contains("A2"),
        "the replay sent the repeated item"
    );
}

both_backends!(replay_dry_run_keys_repeated_recipients_as_the_worker);
