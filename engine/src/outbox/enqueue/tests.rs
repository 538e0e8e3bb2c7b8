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
    // 127 levels deep is read back by the worker; 128 is not.
    let nested = |levels: usize| {
        let mut v = json!(1);
        for _ in 1..levels {
            v = json!({ "a": v });
        }
        v
    };
    assert!(check(&NewEvent::new("events.a", nested(128)), &o).is_ok());
    assert!(matches!(
        check(&NewEvent::new("events.a", nested(129)), &o),
        Err(EnqueueError::PayloadTooDeep { max: 127 })
    ));
    let text = nested(128).to_string();
    assert!(serde_json::from_str::<serde_json::Value>(&text).is_ok());
    let text = nested(129).to_string();
    assert!(serde_json::from_str::<serde_json::Value>(&text).is_err());
    let ok = check(
        &NewEvent::new("events.a", json!({})).aggregate("vault", 7),
        &o,
    )
    .unwrap();
    assert_eq!(ok.aggregate_type.as_deref(), Some("vault"));
    assert_eq!(ok.aggregate_id.as_deref(), Some("7"));
}
