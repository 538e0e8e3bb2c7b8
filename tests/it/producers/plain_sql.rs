//! Plain SQL inserts: what the database refuses (rows the relay could not
//! publish) and how `herald_enqueue` names the faulty field.

use super::insert;
use crate::worker::FAST_RETRY;
use herald::outbox;
use herald_entities::outbox as row;
use herald_tests::both_backends;
use herald_tests::db::{Backend, TestDb};
use herald_tests::scenario::Scenario;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, RuntimeErr, Value};

/// The minimal contract: `INSERT INTO herald_outbox (subject, payload)`, every
/// other column the database's, is published and delivered.
async fn plain_insert_of_subject_and_payload_delivers(backend: Backend) {
    let w = Scenario::new(backend)
        .workflow("notify.yaml", FAST_RETRY)
        .start()
        .await;
    let _relay = w.relay();
    let _worker = w.worker();
    w.env
        .conn
        .execute_unprepared(
            r#"INSERT INTO herald_outbox (subject, payload) VALUES ('events.test.plain', '{"email": "plain@example.com", "name": "Plain"}')"#,
        )
        .await
        .unwrap();
    w.wait_emails(1).await;
    w.wait_sent(1).await;
    let r = row::Entity::find().one(&w.env.conn).await.unwrap().unwrap();
    assert!(r.published_at.is_some());
    assert_eq!(r.headers, "{}");
    assert_eq!(r.ordering_key, None);
    let m = &w.sink.received()[0];
    assert_eq!(m.rcpt_to, ["plain@example.com"]);
    assert_eq!(
        m.message_id(),
        format!("<{}.notify.0@test.example>", r.event_id)
    );
}

both_backends!(plain_insert_of_subject_and_payload_delivers);

fn sqlstate(e: &DbErr) -> Option<String> {
    match e {
        DbErr::Exec(RuntimeErr::SqlxError(s)) | DbErr::Query(RuntimeErr::SqlxError(s)) => s
            .as_database_error()
            .and_then(|d| d.code())
            .map(|c| c.into_owned()),
        _ => None,
    }
}

/// Columns and values of one row to insert.
type Row = (Vec<&'static str>, Vec<Value>);

/// A row of `subject` and `payload` only.
fn row_of(subject: &str, payload: &str) -> Row {
    (
        vec!["subject", "payload"],
        vec![subject.into(), payload.into()],
    )
}

/// A valid row with one more column `col` set to `v`.
fn row_with(col: &'static str, v: Value) -> Row {
    (
        vec!["subject", "payload", col],
        vec!["events.a".into(), "{}".into(), v],
    )
}

/// A valid row with an aggregate type and id.
fn row_with_aggregate(t: &str, i: Option<&str>) -> Row {
    (
        vec!["subject", "payload", "aggregate_type", "aggregate_id"],
        vec![
            "events.a".into(),
            "{}".into(),
            t.into(),
            i.map(str::to_string).into(),
        ],
    )
}

/// Rows the database must refuse, each with the constraint that refuses it.
fn refused_rows(backend: Backend, over_limit: &str) -> Vec<(Row, &'static str)> {
    let mut cases = vec![
        (
            row_of("orders.created", "{}"),
            "herald_outbox_subject_under_events",
        ),
        (
            row_of("events..created", "{}"),
            "herald_outbox_subject_valid",
        ),
        (row_of("events.a b", "{}"), "herald_outbox_subject_valid"),
        (row_of("events.>", "{}"), "herald_outbox_subject_valid"),
        (row_of("events.a", "[1, 2]"), "herald_outbox_payload_object"),
        (
            row_of("events.a", r#""text""#),
            "herald_outbox_payload_object",
        ),
        (
            row_of("events.a", "{not json"),
            "herald_outbox_payload_object",
        ),
        (row_of("events.a", over_limit), "herald_outbox_payload_size"),
        (
            row_with("headers", r#"{"Herald-X": "1"}"#.into()),
            "herald_outbox_headers_valid",
        ),
        (
            row_with("headers", r#"{"Nats-Msg-Id": "1"}"#.into()),
            "herald_outbox_headers_valid",
        ),
        (
            row_with("headers", r#"{"a b": "1"}"#.into()),
            "herald_outbox_headers_valid",
        ),
        (
            row_with("headers", r#"{"n": 1}"#.into()),
            "herald_outbox_headers_valid",
        ),
        (
            row_with("headers", r#"{"x": "a\r\nb"}"#.into()),
            "herald_outbox_headers_valid",
        ),
        (
            row_with("headers", "[]".into()),
            "herald_outbox_headers_valid",
        ),
        (
            row_with_aggregate("a/b", Some("1")),
            "herald_outbox_aggregate_type_valid",
        ),
        (
            row_with_aggregate("contract", None),
            "herald_outbox_aggregate_pair",
        ),
        (
            row_with_aggregate("contract", Some("1\n2")),
            "herald_outbox_aggregate_id_valid",
        ),
    ];
    if backend == Backend::Sqlite {
        // The text of a UUID where SQLite needs its 16 bytes.
        cases.push((
            row_with("event_id", "0190b6c3-1b2a-7c3d-8e4f-0123456789ab".into()),
            "herald_outbox_event_id_bytes",
        ));
    }
    cases
}

/// What the relay could not publish, the database refuses, and its error
/// names the field (the constraint, or the trigger's message).
async fn database_refuses_rows_the_relay_cannot_publish(backend: Backend) {
    let db = TestDb::new(backend).await;
    let conn = db.connect().await;
    let at_limit = format!(
        r#"{{"k":"{}"}}"#,
        "x".repeat(outbox::DEFAULT_MAX_PAYLOAD - 8)
    );
    assert_eq!(at_limit.len(), outbox::DEFAULT_MAX_PAYLOAD);
    let over_limit = format!(
        r#"{{"k":"{}"}}"#,
        "x".repeat(outbox::DEFAULT_MAX_PAYLOAD - 7)
    );
    let cases = refused_rows(backend, &over_limit);
    for ((cols, values), constraint) in cases {
        let what = format!(
            "{cols:?} = {:?}",
            values
                .iter()
                .map(|v| v.to_string().chars().take(60).collect::<String>())
                .collect::<Vec<_>>()
        );
        let err = insert(&conn, &cols, values)
            .await
            .expect_err(&format!("refused: {what}"));
        assert!(
            err.to_string().contains(constraint),
            "{what}: expected {constraint} in: {err}"
        );
    }
    let (cols, values) = row_of("events.a", &at_limit);
    insert(&conn, &cols, values)
        .await
        .expect("1 MiB exactly is accepted");
    assert_eq!(
        row::Entity::find().all(&conn).await.unwrap().len(),
        1,
        "nothing but the row at the limit"
    );
    if backend == Backend::Postgres {
        herald_enqueue_errors_name_the_field(&conn).await;
    }
}

both_backends!(database_refuses_rows_the_relay_cannot_publish);

/// herald_enqueue's errors: SQLSTATE 22023 (23505 for a duplicate id), text
/// naming the field.
async fn herald_enqueue_errors_name_the_field(conn: &DatabaseConnection) {
    let cases = [
        (
            "SELECT herald_enqueue('orders.x', '{}')",
            r#"herald_enqueue: subject "orders.x" must start with "events.""#,
        ),
        (
            "SELECT herald_enqueue('events.a..b', '{}')",
            r#"herald_enqueue: subject "events.a..b" is not a valid NATS subject"#,
        ),
        (
            "SELECT herald_enqueue('events.a', '[1]')",
            "herald_enqueue: payload must be a JSON object, got array",
        ),
        (
            &format!(
                "SELECT herald_enqueue('events.a', jsonb_build_object('k', repeat('x', {})))",
                outbox::DEFAULT_MAX_PAYLOAD
            ),
            "herald_enqueue: payload is 1048585 bytes, over the limit of 1048576 bytes",
        ),
        (
            "SELECT herald_enqueue('events.a', '{}', 'contract')",
            "herald_enqueue: aggregate_type and aggregate_id go together",
        ),
        (
            "SELECT herald_enqueue('events.a', '{}', 'a b', '1')",
            r#"herald_enqueue: aggregate_type "a b" must be letters"#,
        ),
        (
            r#"SELECT herald_enqueue('events.a', '{}', headers => '{"Herald-Seq": "1"}')"#,
            r#"herald_enqueue: header "Herald-Seq" is reserved for Herald"#,
        ),
        (
            r#"SELECT herald_enqueue('events.a', '{}', headers => '{"n": 1}')"#,
            r#"herald_enqueue: header "n" must be a string, got number"#,
        ),
    ];
    for (sql, message) in cases {
        let err = conn.execute_unprepared(sql).await.expect_err(sql);
        assert!(err.to_string().contains(message), "{sql}: {err}");
        assert_eq!(sqlstate(&err).as_deref(), Some("22023"), "{sql}: {err}");
    }
    let id = uuid::Uuid::now_v7();
    let sql = format!("SELECT herald_enqueue('events.a', '{{}}', event_id => '{id}')");
    conn.execute_unprepared(&sql).await.unwrap();
    let err = conn.execute_unprepared(&sql).await.unwrap_err();
    assert!(
        err.to_string().contains(&format!(
            "herald_enqueue: event_id {id} is already in the outbox"
        )),
        "{err}"
    );
    assert_eq!(sqlstate(&err).as_deref(), Some("23505"));
}
