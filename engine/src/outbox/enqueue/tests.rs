//! Unit tests of enqueue's validation: what it refuses before any I/O.
use super::*;
use serde_json::json;

#[test]
fn rejects_bad_input_before_io() {
    let o = EnqueueOptions::default();
    assert!(matches!(
        check(&NewEvent::new("events.a", json!([1])), &o),
        Err(EnqueueError::PayloadNotObject { kind: "an array" })
    ));
    assert!(matches!(
        check(&NewEvent::new("orders.a", json!({})), &o),
        Err(EnqueueError::InvalidSubject { .. })
    ));
    let small = EnqueueOptions {
        max_payload_bytes: 10,
    };
    assert!(matches!(
        check(
            &NewEvent::new("events.a", json!({"k": "0123456789"})),
            &small
        ),
        Err(EnqueueError::PayloadTooLarge { max: 10, .. })
    ));
    assert!(matches!(
        check(
            &NewEvent::new("events.a", json!({})).header("x", "a\r\nb"),
            &o
        ),
        Err(EnqueueError::InvalidHeader { .. })
    ));
    assert!(matches!(
        check(
            &NewEvent::new("events.a", json!({})).aggregate("a/b", 1),
            &o
        ),
        Err(EnqueueError::InvalidAggregate { .. })
    ));
    // Names NATS would refuse: the relay could not publish them.
    for name in ["café", "a b", "a:b", ""] {
        assert!(
            matches!(
                check(&NewEvent::new("events.a", json!({})).header(name, "v"), &o),
                Err(EnqueueError::InvalidHeader { .. })
            ),
            "{name:?}"
        );
    }
    assert!(matches!(
        check(
            &NewEvent::new("events.a", json!({})).aggregate("vault", "7\n8"),
            &o
        ),
        Err(EnqueueError::InvalidAggregateId { .. })
    ));
    let huge = EnqueueOptions {
        max_payload_bytes: 4 * DEFAULT_MAX_PAYLOAD,
    };
    assert!(matches!(
        check(
            &NewEvent::new("events.a", json!({"k": "x".repeat(DEFAULT_MAX_PAYLOAD)})),
            &huge
        ),
        Err(EnqueueError::PayloadTooLarge {
            max: DEFAULT_MAX_PAYLOAD,
            ..
        })
    ));
    let ok = check(
        &NewEvent::new("events.a", json!({})).aggregate("vault", 7),
        &o,
    )
    .unwrap();
    assert_eq!(ok.aggregate_type.as_deref(), Some("vault"));
    assert_eq!(ok.aggregate_id.as_deref(), Some("7"));
}
