//! The delivery ledger's claim, against the real databases: what keeps two
//! workers from sending the same email.
use std::time::Duration;

use herald::internals::ledger::{self, Claim, Key};
use herald_tests::both_backends;
use herald_tests::db::{Backend, TestDb};
use uuid::Uuid;

const LEASE: Duration = Duration::from_secs(60);

fn key(event_id: Uuid) -> Key<'static> {
    Key {
        event_id: event_id.into(),
        workflow: "notify",
        recipient: "a@example.com",
    }
}

/// A fresh `sending` row is another worker's: not claimable until it is
/// recorded or its lease runs out (a worker that died mid-send).
async fn a_fresh_claim_is_in_flight_a_stale_one_is_resent(backend: Backend) {
    let tdb = TestDb::new(backend).await;
    let db = tdb.connect().await;
    let k = key(Uuid::now_v7());
    assert_eq!(
        ledger::claim(&db, &k, 0, "s", LEASE, true).await.unwrap(),
        Claim::Send { attempt: 1 }
    );
    match ledger::claim(&db, &k, 0, "s", LEASE, true).await.unwrap() {
        Claim::InFlight { retry_after } => assert!(retry_after <= LEASE, "{retry_after:?}"),
        other => panic!("a second claim inside the lease got {other:?}"),
    }
    // With no lease left, the claim is stale: the crash window, sent again.
    assert_eq!(
        ledger::claim(&db, &k, 0, "s", Duration::ZERO, true)
            .await
            .unwrap(),
        Claim::Send { attempt: 2 }
    );
    ledger::mark_sent(&db, &k, "<m>", "250 ok").await.unwrap();
    assert_eq!(
        ledger::claim(&db, &k, 0, "s", Duration::ZERO, true)
            .await
            .unwrap(),
        Claim::Done {
            state: herald_entities::delivery::DeliveryState::Sent
        }
    );
}

both_backends!(a_fresh_claim_is_in_flight_a_stale_one_is_resent);

/// Two workers claiming the same rows at the same moment (a redelivery racing
/// a retry): for every row exactly one of them may send.
async fn concurrent_claims_send_each_delivery_once(backend: Backend) {
    let tdb = TestDb::new(backend).await;
    let db = tdb.connect().await;
    // Rows waiting for their retry: claimable, and contended.
    let ids = thirty_deliveries(&db, "retrying").await;
    let sends = race(&db, &ids, |db, id| async move {
        ledger::claim(&db, &key(id), 0, "s", LEASE, true)
            .await
            .unwrap()
    })
    .await;
    let expected: Vec<(Uuid, u32)> = ids.iter().map(|id| (*id, 2)).collect();
    assert_eq!(
        sends, expected,
        "each row claimed exactly once, as attempt 2"
    );
}

/// 30 deliveries, each claimed once (attempt 1) and then recorded as
/// `state` ("retrying" or "sent").
async fn thirty_deliveries(db: &sea_orm::DatabaseConnection, state: &str) -> Vec<Uuid> {
    let ids: Vec<Uuid> = (0..30).map(|_| Uuid::now_v7()).collect();
    for id in &ids {
        let k = key(*id);
        ledger::claim(db, &k, 0, "s", LEASE, true).await.unwrap();
        match state {
            "sent" => ledger::mark_sent(db, &k, "<m>", "250 ok").await.unwrap(),
            _ => ledger::mark_retrying(db, &k, "451 try later", None)
                .await
                .unwrap(),
        }
    }
    ids
}

/// Two tasks run `claim` over every id at once; the (id, attempt) of each
/// `Send` either of them got, sorted.
async fn race<F, Fut>(db: &sea_orm::DatabaseConnection, ids: &[Uuid], claim: F) -> Vec<(Uuid, u32)>
where
    F: Fn(sea_orm::DatabaseConnection, Uuid) -> Fut + Copy + Send + 'static,
    Fut: std::future::Future<Output = Claim> + Send,
{
    let run = |db: sea_orm::DatabaseConnection, ids: Vec<Uuid>| {
        tokio::spawn(async move {
            let mut sends = Vec::new();
            for id in ids {
                if let Claim::Send { attempt } = claim(db.clone(), id).await {
                    sends.push((id, attempt));
                }
            }
            sends
        })
    };
    let (a, b) = tokio::join!(run(db.clone(), ids.to_vec()), run(db.clone(), ids.to_vec()));
    let mut sends = a.unwrap();
    sends.extend(b.unwrap());
    sends.sort();
    sends
}

both_backends!(concurrent_claims_send_each_delivery_once);

/// Two `replay --resend` runs over the same range at once: each sent
/// delivery is resent once, not once per run.
async fn concurrent_resends_send_each_delivery_once(backend: Backend) {
    let tdb = TestDb::new(backend).await;
    let db = tdb.connect().await;
    let ids = thirty_deliveries(&db, "sent").await;
    let sends = race(&db, &ids, |db, id| async move {
        ledger::claim_resend(&db, &key(id), "template fix")
            .await
            .unwrap()
    })
    .await;
    let expected: Vec<(Uuid, u32)> = ids.iter().map(|id| (*id, 2)).collect();
    assert_eq!(
        sends, expected,
        "each delivery resent exactly once, as attempt 2"
    );
}

both_backends!(concurrent_resends_send_each_delivery_once);

/// `deliveries_to`: an address finds the deliveries whose recipient list
/// holds it whole (any case, alone or among others), never a longer address
/// that contains it, and LIKE's wildcards in it match only themselves.
async fn deliveries_to_matches_whole_addresses(backend: Backend) {
    let tdb = TestDb::new(backend).await;
    let db = tdb.connect().await;
    let mut ids = Vec::new();
    for recipient in [
        "ann@x.org",
        "a@x.org,ann@x.org,zed@x.org",
        "joann@x.org",
        "an_n@x.org",
        "b@x.org,ann@x.org",
    ] {
        let id = Uuid::now_v7();
        let k = Key {
            event_id: id.into(),
            workflow: "notify",
            recipient,
        };
        ledger::claim(&db, &k, 0, "s", LEASE, true).await.unwrap();
        ledger::mark_sent(&db, &k, "<m>", "250 ok").await.unwrap();
        ids.push(id);
    }
    let found = |address: &'static str, limit: u64| {
        let db = db.clone();
        async move {
            herald::ledger::deliveries_to(&db, address, limit)
                .await
                .unwrap()
                .into_iter()
                .map(|d| d.recipient)
                .collect::<Vec<_>>()
        }
    };
    let ann = found(" ANN@x.org ", 10).await;
    assert_eq!(ann.len(), 3, "{ann:?}");
    assert!(!ann.contains(&"joann@x.org".to_string()));
    assert_eq!(found("an_n@x.org", 10).await, vec!["an_n@x.org"]);
    assert!(found("a%@x.org", 10).await.is_empty());
    assert_eq!(found("ann@x.org", 2).await.len(), 2, "limited");
    // Newest first.
    assert_eq!(found("ann@x.org", 1).await, vec!["b@x.org,ann@x.org"]);
}

both_backends!(deliveries_to_matches_whole_addresses);

/// `hourly_activity`: this hour's deliveries by state; rows changed before
/// `since` are left out.
async fn hourly_activity_counts_by_hour_and_state(backend: Backend) {
    let tdb = TestDb::new(backend).await;
    let db = tdb.connect().await;
    thirty_deliveries(&db, "sent").await;
    thirty_deliveries(&db, "retrying").await;
    let now = chrono::Utc::now();
    let rows = herald::ledger::hourly_activity(&db, now - chrono::Duration::hours(24))
        .await
        .unwrap();
    let this_hour = now.timestamp() / 3600 * 3600;
    let count = |state: &str| {
        rows.iter()
            .filter(|r| r.state == state && r.hour.timestamp() == this_hour)
            .map(|r| r.count)
            .sum::<i64>()
    };
    // A delivery recorded at the turn of the hour may fall in the last one.
    let all: i64 = rows.iter().map(|r| r.count).sum();
    assert_eq!(all, 60, "{rows:?}");
    assert!(count("sent") + count("retrying") > 0, "{rows:?}");
    let later = herald::ledger::hourly_activity(&db, now + chrono::Duration::hours(1))
        .await
        .unwrap();
    assert!(later.is_empty(), "{later:?}");
}

both_backends!(hourly_activity_counts_by_hour_and_state);

/// The worker's group commit: new deliveries claimed by many deliveries at
/// once through one writer, and by a second worker's writer racing it, with
/// every key offered twice in the same group: each delivery is claimed
/// exactly once (attempt 1), and the grouped `sent` records all land.
/// 200 deliveries: groups then pass one statement's budget on PostgreSQL
/// and are written as several statements in one transaction.
async fn grouped_claims_send_each_new_delivery_once(backend: Backend) {
    use herald::internals::ledger::{NewClaims, Sent, SentRecord, Writer};
    use std::sync::Arc;
    let tdb = TestDb::new(backend).await;
    let db = tdb.connect().await;
    let ids: Vec<Uuid> = (0..200).map(|_| Uuid::now_v7()).collect();
    let writers = [
        Arc::new(Writer::<NewClaims>::new(db.clone())),
        Arc::new(Writer::<NewClaims>::new(db.clone())),
    ];
    let mut tasks = Vec::new();
    for w in &writers {
        // Twice per writer: the same key twice in one group.
        for _ in 0..2 {
            for id in &ids {
                let (w, db, id) = (w.clone(), db.clone(), *id);
                tasks.push(tokio::spawn(async move {
                    let c = ledger::claim_grouped(&db, &w, &key(id), 0, "s", LEASE, true)
                        .await
                        .unwrap();
                    (id, c)
                }));
            }
        }
    }
    let mut sends = Vec::new();
    for t in tasks {
        if let (id, Claim::Send { attempt }) = t.await.unwrap() {
            sends.push((id, attempt));
        }
    }
    sends.sort();
    let expected: Vec<(Uuid, u32)> = ids.iter().map(|id| (*id, 1)).collect();
    assert_eq!(sends, expected, "each new delivery claimed exactly once");

    let sent = Arc::new(Writer::<Sent>::new(db.clone()));
    let records: Vec<_> = ids
        .iter()
        .map(|id| {
            let (sent, id) = (sent.clone(), *id);
            tokio::spawn(async move {
                sent.write(SentRecord {
                    key: (&key(id)).into(),
                    message_id: format!("<{id}@x>"),
                    reply: "250 ok".into(),
                })
                .await
                .unwrap()
            })
        })
        .collect();
    for r in records {
        r.await.unwrap();
    }
    for id in &ids {
        let rows = herald::ledger::deliveries_of(&db, (*id).into())
            .await
            .unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].state, herald::ledger::DeliveryState::Sent);
        assert_eq!(
            rows[0].message_id.as_deref(),
            Some(format!("<{id}@x>").as_str())
        );
        assert_eq!(rows[0].smtp_response.as_deref(), Some("250 ok"));
        assert!(rows[0].sent_at.is_some());
    }
}

both_backends!(grouped_claims_send_each_new_delivery_once);
