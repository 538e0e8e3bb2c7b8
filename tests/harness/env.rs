//! One test's world: its own database, nats-server and herald environment.
use std::collections::HashMap;
use std::time::Duration;

use async_nats::jetstream::consumer::pull::OrderedConfig;
use futures::StreamExt;
use herald::outbox::{NewEvent, enqueue};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement, TransactionTrait};
use serde_json::json;

use crate::db::{Backend, TestDb};
use crate::nats::NatsServer;
use crate::process::HeraldEnv;
use crate::wait;

pub struct TestEnv {
    pub db: TestDb,
    pub conn: DatabaseConnection,
    pub nats: NatsServer,
    pub herald: HeraldEnv,
}

/// A message as it sits in the stream.
#[derive(Debug, Clone)]
pub struct StreamMsg {
    pub stream_seq: u64,
    pub subject: String,
    pub msg_id: String,
    pub aggregate: Option<String>,
    pub outbox_seq: i64,
    pub payload: serde_json::Value,
}

impl TestEnv {
    pub async fn start(backend: Backend) -> TestEnv {
        Self::start_with(backend, "").await
    }

    pub async fn start_with(backend: Backend, nats_config: &str) -> TestEnv {
        let db = TestDb::new(backend).await;
        let conn = db.connect().await;
        let nats = NatsServer::start_with(nats_config).await;
        let mut herald = HeraldEnv::default();
        herald
            .set("HERALD_DATABASE_URL", db.url.clone())
            .set("HERALD_NATS_URL", nats.url())
            .set("HERALD_LOG", "warn,herald=debug");
        TestEnv {
            db,
            conn,
            nats,
            herald,
        }
    }

    /// Enqueue `n` events spread over `aggregates` aggregates, committed in
    /// transactions of 100. Payload: `{"n": i}`.
    pub async fn enqueue_many(
        &self,
        subject: &str,
        n: usize,
        aggregates: usize,
    ) -> Vec<uuid::Uuid> {
        enqueue_many_on(&self.conn, subject, n, aggregates).await
    }

    pub async fn scalar(&self, sql: &str) -> i64 {
        let row = self
            .conn
            .query_one_raw(Statement::from_string(
                self.conn.get_database_backend(),
                sql,
            ))
            .await
            .expect("query")
            .expect("a row");
        row.try_get_by_index::<i64>(0).expect("an integer")
    }

    pub async fn unpublished(&self) -> i64 {
        self.scalar("SELECT COUNT(*) FROM herald_outbox WHERE published_at IS NULL")
            .await
    }

    pub async fn stream_len(&self) -> u64 {
        let js = self.nats.jetstream().await;
        match js.get_stream("HERALD").await {
            Ok(mut s) => s.info().await.map(|i| i.state.messages).unwrap_or(0),
            Err(_) => 0,
        }
    }

    pub async fn wait_until_unpublished(&self, n: i64) {
        wait::until(
            &format!("{n} outbox row(s) left unpublished"),
            Duration::from_secs(120),
            || async { self.unpublished().await == n },
        )
        .await;
    }

    pub async fn wait_all_published(&self) {
        wait::until(
            "every outbox row is published",
            Duration::from_secs(120),
            || async { self.unpublished().await == 0 },
        )
        .await;
    }

    /// Every message in the stream, in stream order.
    pub async fn stream_messages(&self) -> Vec<StreamMsg> {
        let total = self.stream_len().await as usize;
        stream_messages_of(&self.nats.jetstream().await, total).await
    }
}

/// The first `total` messages of stream HERALD, in stream order.
pub async fn stream_messages_of(
    js: &async_nats::jetstream::Context,
    total: usize,
) -> Vec<StreamMsg> {
    // A cluster that has just healed may refuse for a moment (503
    // "JetStream system temporarily unavailable") though the stream
    // reports a leader: retry the set-up until it answers.
    let mut msgs = wait::ok("an ordered consumer on HERALD", wait::DEFAULT, || async {
        let stream = js.get_stream("HERALD").await.map_err(|e| e.to_string())?;
        let consumer = stream
            .create_consumer(OrderedConfig {
                filter_subject: "events.>".into(),
                ..Default::default()
            })
            .await
            .map_err(|e| e.to_string())?;
        consumer.messages().await.map_err(|e| e.to_string())
    })
    .await;
    let mut out = Vec::with_capacity(total);
    while out.len() < total {
        let m = tokio::time::timeout(Duration::from_secs(30), msgs.next())
            .await
            .expect("stream read timed out")
            .expect("stream ended")
            .expect("message");
        let info = m.info().expect("info");
        let h = m.headers.clone().unwrap_or_default();
        let get = |k: &str| h.get(k).map(|v| v.as_str().to_string());
        out.push(StreamMsg {
            stream_seq: info.stream_sequence,
            subject: m.subject.to_string(),
            msg_id: get("Nats-Msg-Id").unwrap_or_default(),
            aggregate: get("Herald-Aggregate"),
            outbox_seq: get("Herald-Outbox-Seq")
                .and_then(|s| s.parse().ok())
                .unwrap_or(-1),
            payload: serde_json::from_slice(&m.payload).unwrap_or(serde_json::Value::Null),
        });
    }
    out
}

/// Assert each msg id appears once and each aggregate's outbox seqs increase.
pub fn assert_once_and_ordered(msgs: &[StreamMsg], expected: usize) {
    let mut seen = HashMap::new();
    for m in msgs {
        *seen.entry(m.msg_id.clone()).or_insert(0) += 1;
    }
    let dups: Vec<_> = seen.iter().filter(|(_, c)| **c > 1).collect();
    assert!(dups.is_empty(), "duplicate msg ids in stream: {dups:?}");
    assert_eq!(seen.len(), expected, "distinct events in stream");
    let mut last: HashMap<String, i64> = HashMap::new();
    for m in msgs {
        if let Some(a) = &m.aggregate {
            let prev = last.insert(a.clone(), m.outbox_seq);
            if let Some(p) = prev {
                assert!(
                    p < m.outbox_seq,
                    "aggregate {a}: outbox seq {} after {p}",
                    m.outbox_seq
                );
            }
        }
    }
}

/// Enqueue `n` events spread over `aggregates` aggregates, committed in
/// transactions of 100. Payload: `{"n": i}`.
pub async fn enqueue_many_on(
    conn: &DatabaseConnection,
    subject: &str,
    n: usize,
    aggregates: usize,
) -> Vec<uuid::Uuid> {
    let mut ids = Vec::with_capacity(n);
    for chunk in (0..n).collect::<Vec<_>>().chunks(100) {
        let txn = conn.begin().await.expect("begin");
        for &i in chunk {
            let mut ev = NewEvent::new(subject, json!({ "n": i }));
            if aggregates > 0 {
                ev = ev.aggregate("agg", i % aggregates);
            }
            ids.push(enqueue(&txn, ev).await.expect("enqueue").as_uuid());
        }
        txn.commit().await.expect("commit");
    }
    ids
}
