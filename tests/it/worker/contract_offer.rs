//! USE-CASES.md case 4: contract-offer transitions committed with their audit
//! rows are emailed; rolled-back ones leave nothing.

use herald_tests::both_backends;
use herald_tests::db::Backend;
use herald_tests::scenario::Scenario;
use serde_json::json;

/// One contract transition as the league's admin route makes it (USE-CASES.md
/// case 4): the audit row and the event in the route's one transaction,
/// committed, or rolled back when the route fails after writing both.
#[allow(clippy::too_many_arguments)] // one transition's fields, named at each call
async fn offer_transition(
    db: &sea_orm::DatabaseConnection,
    audit_id: i64,
    subject: &str,
    from: Option<&str>,
    tier: &str,
    previous_tier: Option<&str>,
    commit: bool,
) {
    use sea_orm::{ConnectionTrait, TransactionTrait};
    let mut payload: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            herald_tests::example_workflows().join("samples/events.contract.offered.json"),
        )
        .unwrap(),
    )
    .unwrap();
    payload["transition"] = json!({"from": from, "to": "offered"});
    payload["offer"]["tier"] = json!(tier);
    if let Some(p) = previous_tier {
        payload["previous"] = json!({ "tier": p });
    }
    let txn = db.begin().await.unwrap();
    txn.execute_unprepared(&format!(
        "INSERT INTO contract_audit (id, contract_id, event_type, old_state, new_state, actor) \
         VALUES ({audit_id}, 7, '{subject}', {}, 'offered', 'admin@league.example')",
        from.map_or("NULL".to_string(), |f| format!("'{f}'"))
    ))
    .await
    .unwrap();
    herald::outbox::enqueue(
        &txn,
        herald::outbox::NewEvent::new(subject, payload).aggregate("contract", 7),
    )
    .await
    .unwrap();
    if commit {
        txn.commit().await.unwrap();
    } else {
        txn.rollback().await.unwrap();
    }
}

/// USE-CASES.md case 4: every transition that mints an offer is an event
/// committed with its audit row, and the contract-offers workflow emails the
/// parent for each; a transition the route rolls back leaves no audit row,
/// no event and no email.
async fn contract_offer_transitions_email_with_their_audit_rows(backend: Backend) {
    use sea_orm::ConnectionTrait;
    let w = Scenario::new(backend).examples().start().await;
    w.env
        .conn
        .execute_unprepared(
            "CREATE TABLE contract_audit (id BIGINT PRIMARY KEY, contract_id BIGINT NOT NULL, \
             event_type TEXT NOT NULL, old_state TEXT, new_state TEXT NOT NULL, actor TEXT NOT NULL)",
        )
        .await
        .unwrap();
    let _relay = w.relay();
    let _worker = w.worker();
    let db = &w.env.conn;
    offer_transition(db, 1, "events.contract.offered", None, "Gold", None, true).await;
    // A forced re-offer whose route fails after the audit row and the event.
    offer_transition(
        db,
        2,
        "events.contract.reoffered",
        Some("offered"),
        "Gold",
        None,
        false,
    )
    .await;
    offer_transition(
        db,
        3,
        "events.contract.reoffered",
        Some("declined"),
        "Gold",
        None,
        true,
    )
    .await;
    offer_transition(
        db,
        4,
        "events.contract.tier_changed",
        Some("signed"),
        "Platinum",
        Some("Gold"),
        true,
    )
    .await;
    w.wait_sent(3).await;
    assert_eq!(w.count("SELECT COUNT(*) FROM contract_audit").await, 3);
    assert_eq!(w.count("SELECT COUNT(*) FROM herald_outbox").await, 3);
    let got = w.sink.received();
    assert_eq!(got.len(), 3, "one email per committed transition");
    let mut subjects: Vec<String> = got.iter().filter_map(|m| m.header("Subject")).collect();
    subjects.sort();
    assert_eq!(
        subjects,
        [
            "Contract offer for Jordan Park (U14 Hawks)",
            "Contract offer for Jordan Park (U14 Hawks)",
            "New contract tier for Jordan Park: Platinum",
        ]
    );
    assert!(got.iter().all(|m| m.rcpt_to == ["casey@example.com"]));
    assert!(
        got.iter()
            .any(|m| m.decoded().contains("whose link no longer works")),
        "the re-offer says the old link is void"
    );
    assert!(
        got.iter().any(|m| m
            .decoded()
            .contains("from the Gold tier to the Platinum tier")),
        "the tier change names both tiers"
    );
}

both_backends!(contract_offer_transitions_email_with_their_audit_rows);
