//! Finding of the stream_message fuzz target's review (docs/fuzzing.md): a
//! message whose header value holds a bare CR (`X: a\rb`), which anyone
//! allowed to publish on `events.>` can send and nats-server stores and
//! delivers, panicked async-nats 0.51's connection task (header.rs: "invalid
//! header value"): the subscription ended, every later send failed, and the
//! client still said `Connected`. Herald carries a fix in vendor/async-nats
//! (HERALD-PATCH.md) until a release has one (nats-io/nats.rs pull request
//! #1612); this test fails without it.
use std::time::Duration;

use futures::StreamExt;
use herald_tests::nats::NatsServer;

#[tokio::test]
async fn a_bare_cr_in_a_header_value_does_not_stop_the_client() {
    let nats = NatsServer::start().await;
    let client = async_nats::connect(nats.url()).await.unwrap();
    let mut sub = client.subscribe("x").await.unwrap();
    client.flush().await.unwrap();
    // A raw publisher: what any client library may send.
    nats.publish_raw("x", "X: a\rb\r\n", b"poison").await;
    client.publish("x", "ok".into()).await.unwrap();
    // The poison message may be dropped or delivered, but the next one must arrive.
    let deadline = Duration::from_secs(5);
    let mut got_ok = false;
    while let Ok(Some(m)) = tokio::time::timeout(deadline, sub.next()).await {
        if m.payload.as_ref() == b"ok" {
            got_ok = true;
            break;
        }
    }
    assert!(
        got_ok,
        "the subscription ended after a CR in a header value"
    );
    client.flush().await.expect("the client can still send");
}
