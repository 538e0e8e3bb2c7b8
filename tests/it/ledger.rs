//! The delivery ledger's claim, against the real databases: what keeps two
//! workers from sending the same email.
use std::time::Duration;

use herald::ledger::{self, Claim, Key};
use herald_tests::both_backends;
use herald_tests::db::{Backend, TestDb};
use uuid::Uuid;

const LEASE: Duration = Duration::from_secs(60);

fn key(event_id: Uuid) -> Key<'static> {
    Key {
        event_id,
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
        ledger::claim(&db, &k, 0, "s", LEASE).await.unwrap(),
        Claim::Send { attempt: 1 }
    );
    match ledger::claim(&db, &k, 0, "s", LEASE).await.unwrap() {
        Claim::InFlight { retry_after } => assert!(retry_after <= LEASE, "{retry_after:?}"),
        other => panic!("a second claim inside the lease got {other:?}"),
    }
    // With no lease left, the claim is stale: the crash window, sent again.
    assert_eq!(
        ledger::claim(&db, &k, 0, "s", Duration::ZERO)
            .await
            .unwrap(),
        Claim::Send { attempt: 2 }
    );
    ledger::mark_sent(&db, &k, "<m>", "250 ok").await.unwrap();
    assert_eq!(
        ledger::claim(&db, &k, 0, "s", Duration::ZERO)
            .await
            .unwrap(),
        Claim::Done {
            state: "sent".into()
        }
    );
}

both_backends!(a_fresh_claim_is_in_flight_a_stale_one_is_resent);

/// Two workers claiming the same rows at the same moment (a redelivery racing
/// a retry): for every row exactly one of them may send.
async fn concurrent_claims_send_each_delivery_once(backend: Backend) {
    let tdb = TestDb::new(backend).await;
    let db = tdb.connect().await;
    let ids: Vec<Uuid> = (0..30).map(|_| Uuid::now_v7()).collect();
    for id in &ids {
        // A row waiting for its retry: claimable, and contended.
        let k = key(*id);
        ledger::claim(&db, &k, 0, "s", LEASE).await.unwrap();
        ledger::mark_retrying(&db, &k, "451 try later", None)
            .await
            .unwrap();
    }
    let claim_all = |db: sea_orm::DatabaseConnection, ids: Vec<Uuid>| {
        tokio::spawn(async move {
            let mut sends = Vec::new();
            for id in ids {
                if let Claim::Send { attempt } =
                    ledger::claim(&db, &key(id), 0, "s", LEASE).await.unwrap()
                {
                    sends.push((id, attempt));
                }
            }
            sends
        })
    };
    let (a, b) = tokio::join!(
        claim_all(db.clone(), ids.clone()),
        claim_all(db.clone(), ids.clone())
    );
    let mut sends = a.unwrap();
    sends.extend(b.unwrap());
    sends.sort();
    let expected: Vec<(Uuid, u32)> = ids.iter().map(|id| (*id, 2)).collect();
    assert_eq!(
        sends, expected,
        "each row claimed exactly once, as attempt 2"
    );
}

both_backends!(concurrent_claims_send_each_delivery_once);
