//! The transactional outbox: the event commits or rolls back with the caller's change.
use herald::outbox::{EnqueueError, EnqueueOptions, NewEvent, enqueue, enqueue_with};
use herald_entities::outbox as row;
use herald_tests::both_backends;
use herald_tests::db::{Backend, TestDb};
use sea_orm::{ConnectionTrait, EntityTrait, PaginatorTrait, TransactionTrait};
use serde_json::json;

async fn business_table(db: &sea_orm::DatabaseConnection) {
    db.execute_unprepared("CREATE TABLE contracts (id INTEGER PRIMARY KEY, status TEXT NOT NULL)")
        .await
        .unwrap();
    db.execute_unprepared("INSERT INTO contracts (id, status) VALUES (1, 'offered')")
        .await
        .unwrap();
}

async fn status(db: &sea_orm::DatabaseConnection) -> String {
    let r = db
        .query_one_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            "SELECT status FROM contracts WHERE id = 1",
        ))
        .await
        .unwrap()
        .unwrap();
    r.try_get::<String>("", "status").unwrap()
}

async fn commit_writes_one_row(backend: Backend) {
    let tdb = TestDb::new(backend).await;
    let db = tdb.connect().await;
    business_table(&db).await;

    let txn = db.begin().await.unwrap();
    txn.execute_unprepared("UPDATE contracts SET status = 'signed' WHERE id = 1")
        .await
        .unwrap();
    let id = enqueue(
        &txn,
        NewEvent::new("events.contract.signed", json!({"contract_id": 1})).aggregate("contract", 1),
    )
    .await
    .unwrap();
    txn.commit().await.unwrap();

    let rows = row::Entity::find().all(&db).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].event_id, id.as_uuid());
    assert_eq!(rows[0].subject, "events.contract.signed");
    assert_eq!(rows[0].ordering_key.as_deref(), Some("contract/1"));
    assert!(rows[0].published_at.is_none());
    assert_eq!(id.as_uuid().get_version_num(), 7, "event ids are UUIDv7");
    assert_eq!(status(&db).await, "signed");
}

async fn rollback_leaves_nothing(backend: Backend) {
    let tdb = TestDb::new(backend).await;
    let db = tdb.connect().await;
    business_table(&db).await;

    let txn = db.begin().await.unwrap();
    txn.execute_unprepared("UPDATE contracts SET status = 'signed' WHERE id = 1")
        .await
        .unwrap();
    enqueue(
        &txn,
        NewEvent::new("events.contract.signed", json!({"contract_id": 1})),
    )
    .await
    .unwrap();
    txn.rollback().await.unwrap();

    assert_eq!(
        row::Entity::find().count(&db).await.unwrap(),
        0,
        "no outbox row after rollback"
    );
    assert_eq!(
        status(&db).await,
        "offered",
        "the business change rolled back too"
    );
}

async fn rejects_invalid_events(backend: Backend) {
    let tdb = TestDb::new(backend).await;
    let db = tdb.connect().await;
    let txn = db.begin().await.unwrap();

    let err = enqueue(&txn, NewEvent::new("contract.signed", json!({})))
        .await
        .unwrap_err();
    assert!(matches!(err, EnqueueError::InvalidSubject { .. }), "{err}");
    let err = enqueue(&txn, NewEvent::new("events.contract.*", json!({})))
        .await
        .unwrap_err();
    assert!(matches!(err, EnqueueError::InvalidSubject { .. }), "{err}");
    let err = enqueue(&txn, NewEvent::new("events.contract.signed", json!("text")))
        .await
        .unwrap_err();
    assert!(
        matches!(err, EnqueueError::PayloadNotObject { kind: "a string" }),
        "{err}"
    );
    let err = enqueue(&txn, NewEvent::new("events.contract.signed", json!([1, 2])))
        .await
        .unwrap_err();
    assert!(
        matches!(err, EnqueueError::PayloadNotObject { .. }),
        "{err}"
    );
    let big = json!({ "blob": "x".repeat(1024 * 1024) });
    let err = enqueue(&txn, NewEvent::new("events.contract.signed", big))
        .await
        .unwrap_err();
    assert!(
        matches!(err, EnqueueError::PayloadTooLarge { max: 1048576, .. }),
        "{err}"
    );
    let opts = EnqueueOptions {
        max_payload_bytes: 64,
    };
    let err = enqueue_with(
        &txn,
        NewEvent::new("events.a", json!({"k": "v".repeat(100)})),
        &opts,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, EnqueueError::PayloadTooLarge { max: 64, .. }),
        "{err}"
    );
    txn.commit().await.unwrap();
    assert_eq!(row::Entity::find().count(&db).await.unwrap(), 0);
}

async fn duplicate_event_id_is_refused(backend: Backend) {
    let tdb = TestDb::new(backend).await;
    let db = tdb.connect().await;
    let id = uuid::Uuid::now_v7();
    let txn = db.begin().await.unwrap();
    enqueue(&txn, NewEvent::new("events.a", json!({})).event_id(id))
        .await
        .unwrap();
    txn.commit().await.unwrap();
    let txn = db.begin().await.unwrap();
    let err = enqueue(&txn, NewEvent::new("events.a", json!({})).event_id(id))
        .await
        .unwrap_err();
    assert!(
        matches!(err, EnqueueError::DuplicateEventId(d) if d == id.into()),
        "{err}"
    );
}

both_backends!(
    commit_writes_one_row,
    rollback_leaves_nothing,
    rejects_invalid_events,
    duplicate_event_id_is_refused
);

/// `herald::testing`, as an application's own test uses it: inside the
/// transaction, no NATS, no Herald process.
async fn testing_helper_sees_what_a_transaction_enqueued(backend: Backend) {
    let tdb = TestDb::new(backend).await;
    let db = tdb.connect().await;
    let txn = db.begin().await.unwrap();
    enqueue(
        &txn,
        NewEvent::new(
            "events.user.joined",
            json!({"email": "ada@example.com", "n": 1}),
        )
        .aggregate("user", 7),
    )
    .await
    .unwrap();
    let found = herald::testing::assert_enqueued(
        &txn,
        "events.user.joined",
        json!({"n": 1, "email": "ada@example.com"}),
    )
    .await
    .unwrap();
    assert_eq!(found.aggregate.as_deref(), Some("user/7"));
    let err = herald::testing::assert_enqueued(&txn, "events.user.left", json!({}))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("events.user.joined"),
        "names what was enqueued: {err}"
    );
    assert_eq!(
        herald::testing::count_enqueued(&txn, "events.user.joined")
            .await
            .unwrap(),
        1
    );
    txn.rollback().await.unwrap();
}

both_backends!(testing_helper_sees_what_a_transaction_enqueued);
