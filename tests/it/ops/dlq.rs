//! Dead letters: re-drive after a template fix, retry one or a whole workflow.

use super::{BROKEN, ok_stdout, with_workflow};
use herald_tests::db::Backend;
use herald_tests::scenario::Scenario;
use herald_tests::{both_backends, wait};
use std::time::Duration;

/// A template bug dead-letters 20 events; after the fix, a re-drive sends 20
/// emails once, and a second re-drive sends nothing.
async fn dlq_redrive_after_template_fix(backend: Backend) {
    let w = with_workflow(backend, BROKEN).await;
    let _relay = w.h.spawn(&["relay", "--relay-poll", "50ms"]);
    let _worker = w.h.spawn(&["worker"]);
    w.emit_users("events.test.hello", 20).await;
    wait::until("20 dead letters", wait::DEFAULT, || async {
        w.env
            .scalar("SELECT COUNT(*) FROM herald_dead_letters")
            .await
            == 20
    })
    .await;
    let list: Vec<serde_json::Value> =
        serde_json::from_str(&ok_stdout(&w.run(&["dlq", "list", "--json"]).await)).unwrap();
    assert_eq!(list.len(), 20);
    assert!(
        list[0]["reason"]
            .as_str()
            .unwrap()
            .contains("missing variable event.greeting")
    );
    let shown: serde_json::Value = serde_json::from_str(&ok_stdout(
        &w.run(&["dlq", "show", &list[0]["id"].to_string(), "--json"])
            .await,
    ))
    .unwrap();
    assert_eq!(
        shown["payload"]["email"], list[0]["payload"]["email"],
        "{shown}"
    );
    assert!(
        shown["reason"].as_str().unwrap().contains("event.greeting"),
        "{shown}"
    );
    assert!(
        shown["rendered"]["error"]
            .as_str()
            .unwrap()
            .contains("missing variable event.greeting"),
        "{shown}"
    );
    assert_eq!(w.sink.count(), 0);

    std::fs::write(
        w.workflows_dir().join("wf.yaml"),
        BROKEN.replace("{{event.greeting}}", "Hello {{event.name}}"),
    )
    .unwrap();
    let fixed: serde_json::Value = serde_json::from_str(&ok_stdout(
        &w.run(&["dlq", "show", &list[0]["id"].to_string(), "--json"])
            .await,
    ))
    .unwrap();
    // Which event got dead letter 1 depends on the worker's concurrency.
    assert_eq!(
        fixed["rendered"][0]["to"][0], fixed["payload"]["email"],
        "after the fix: {fixed}"
    );
    let name = fixed["payload"]["name"].as_str().unwrap();
    assert_eq!(
        fixed["rendered"][0]["subject"],
        format!("Hello {name}"),
        "{fixed}"
    );
    let out = ok_stdout(&w.run(&["dlq", "retry", "--all"]).await);
    assert!(out.contains("20 delivered"), "{out}");
    assert_eq!(w.sink.count(), 20);
    let to = w.sink.distinct_recipients();
    assert_eq!(to.len(), 20, "each recipient once");
    let out = ok_stdout(&w.run(&["dlq", "retry", "--all"]).await);
    assert!(out.contains("re-drove 0"), "{out}");
    assert_eq!(w.sink.count(), 20, "a second re-drive sends nothing");
    let list: Vec<serde_json::Value> =
        serde_json::from_str(&ok_stdout(&w.run(&["dlq", "list", "--json"]).await)).unwrap();
    assert!(list.is_empty());
    // --all keeps the re-driven ones, and says where each stands.
    let all = ok_stdout(&w.run(&["dlq", "list", "--all"]).await);
    let mut lines = all.lines();
    let header = lines.next().unwrap();
    let state_at = header.find("state").expect(&all);
    let rows: Vec<&str> = lines.filter(|l| !l.contains("dead letter(s)")).collect();
    assert_eq!(rows.len(), 20, "{all}");
    for row in rows {
        assert_eq!(row.get(state_at..state_at + 9), Some("re-driven"), "{all}");
    }
}

both_backends!(dlq_redrive_after_template_fix);

/// dlq retry ID re-drives one dead letter; --workflow limits --all.
async fn dlq_retry_one_and_by_workflow(backend: Backend) {
    let w = Scenario::new(backend)
        .workflow("a.yaml", BROKEN)
        .workflow("b.yaml", &BROKEN.replace("name: greet", "name: other"))
        .start()
        .await;
    let d = w.workflows_dir();
    let _relay = w.h.spawn(&["relay", "--relay-poll", "50ms"]);
    let mut worker = w.h.spawn(&["worker"]);
    w.emit_users("events.test.x", 3).await;
    wait::until(
        "6 dead letters (3 events × 2 workflows)",
        wait::DEFAULT,
        || async {
            w.env
                .scalar("SELECT COUNT(*) FROM herald_dead_letters")
                .await
                == 6
        },
    )
    .await;
    worker.terminate(Duration::from_secs(30)).await;
    for f in ["a.yaml", "b.yaml"] {
        let text = std::fs::read_to_string(d.join(f)).unwrap();
        std::fs::write(
            d.join(f),
            text.replace("{{event.greeting}}", "Hello {{event.name}}"),
        )
        .unwrap();
    }
    let greet: Vec<serde_json::Value> = serde_json::from_str(&ok_stdout(
        &w.run(&["dlq", "list", "--workflow", "greet", "--json"])
            .await,
    ))
    .unwrap();
    assert_eq!(greet.len(), 3);
    let out = ok_stdout(&w.run(&["dlq", "retry", &greet[0]["id"].to_string()]).await);
    assert!(
        out.contains("re-drove 1 dead letter(s): 1 delivered"),
        "{out}"
    );
    assert_eq!(w.sink.count(), 1);
    let out = ok_stdout(
        &w.run(&["dlq", "retry", "--all", "--workflow", "other"])
            .await,
    );
    assert!(
        out.contains("re-drove 3 dead letter(s): 3 delivered"),
        "{out}"
    );
    assert_eq!(w.sink.count(), 4);
    let left: Vec<serde_json::Value> =
        serde_json::from_str(&ok_stdout(&w.run(&["dlq", "list", "--json"]).await)).unwrap();
    assert_eq!(left.len(), 2, "greet's other two are still dead letters");
    // A misspelt workflow: re-drive refuses it, list says who has any.
    let out = w
        .run(&["dlq", "retry", "--all", "--workflow", "gret"])
        .await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("no workflow named \"gret\""), "{err}");
    let out = w.run(&["dlq", "list", "--workflow", "gret"]).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(
            "no dead letters of a workflow named \"gret\"; workflows with dead letters: greet"
        ),
        "{err}"
    );
}

both_backends!(dlq_retry_one_and_by_workflow);

/// A re-drive closes its dead letter only once the event has an outcome.
/// Interrupted while the SMTP server is down, or answered with a 4xx, the
/// dead letter stays open (it was closed first, and the email was then in
/// no list: nothing else owns a dead-lettered event); a later re-drive
/// delivers it once.
async fn an_unfinished_redrive_leaves_its_dead_letter_open(backend: Backend) {
    let w = Scenario::new(backend)
        .workflow("wf.yaml", super::NUMBERED)
        .start()
        .await;
    w.sink
        .script([herald_tests::smtp::Reply::Code(550, "5.7.1 no".into())]);
    let _relay = w.relay();
    let mut worker = w.worker();
    w.env.enqueue_many("events.test.n", 1, 0).await;
    w.wait_count("SELECT COUNT(*) FROM herald_dead_letters", 1)
        .await;
    worker.terminate(Duration::from_secs(30)).await;
    let open = "SELECT COUNT(*) FROM herald_dead_letters WHERE retried_at IS NULL";

    // Down: the re-drive waits for the server; stopped meanwhile.
    w.sink.set_outage(Some(herald_tests::smtp::Outage::Refuse));
    let mut redrive = w.h.spawn(&["dlq", "retry", "--all"]);
    // It says what it waits for, and that stopping is safe.
    wait::until("the re-drive waits for SMTP", wait::DEFAULT, || async {
        let log = redrive.log();
        log.contains("SMTP transport unreachable")
            && log.contains("waiting for the SMTP server to answer; Ctrl-C stops")
    })
    .await;
    redrive.terminate(Duration::from_secs(30)).await;
    assert_eq!(w.count(open).await, 1, "{}", redrive.log());
    w.sink.set_outage(None);

    // A 4xx: retrying, not resolved; still open.
    w.sink
        .script([herald_tests::smtp::Reply::Code(451, "4.3.0 later".into())]);
    let out = w.run(&["dlq", "retry", "--all"]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("0 delivered, 1 failed"), "{text}");
    assert_eq!(w.count(open).await, 1);

    let out = w.run(&["dlq", "retry", "--all"]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("1 delivered, 0 failed; sent 1"), "{text}");
    assert_eq!(w.count(open).await, 0);
    assert_eq!(w.sink.count(), 1);
    // Closed now: re-driving it by id says so.
    let out = w.run(&["dlq", "retry", "1"]).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("dead letter 1 is already closed"), "{err}");
}

both_backends!(an_unfinished_redrive_leaves_its_dead_letter_open);
