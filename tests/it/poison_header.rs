//! Open finding of the stream_message fuzz target's review (docs/fuzzing.md):
//! a message whose header value holds a bare CR (`X: a\rb`), which anyone
//! allowed to publish on `events.>` can send and nats-server stores and
//! delivers, panics async-nats 0.51's connection task (header.rs: "invalid
//! header value"). The subscription ends, every later send fails, and the
//! client still says `Connected`: such a message in the stream would stop
//! every worker's NATS client, again on each redelivery. The fix belongs in
//! async-nats (refuse or drop the header, not panic): nats-io/nats.rs pull
//! request #1612 (open as of 2026-11) does that. Until a release carries
//! it, this test says what must hold, and is ignored.
use std::time::Duration;

use futures::StreamExt;
use herald_tests::nats::NatsServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
#[ignore = "async-nats 0.51 panics on a CR in a header value (open, upstream)"]
async fn a_bare_cr_in_a_header_value_does_not_stop_the_client() {
    let nats = NatsServer::start().await;
    let client = async_nats::connect(nats.url()).await.unwrap();
    let mut sub = client.subscribe("x").await.unwrap();
    client.flush().await.unwrap();
    // A raw publisher: what any client library may send.
    let mut raw = tokio::net::TcpStream::connect(("127.0.0.1", nats.port))
        .await
        .unwrap();
    let mut info = vec![0u8; 4096];
    let _ = raw.read(&mut info).await.unwrap();
    let header = "NATS/1.0\r\nX: a\rb\r\n\r\n";
    let payload = "poison";
    raw.write_all(
        format!(
            "CONNECT {{\"verbose\":false,\"headers\":true}}\r\nHPUB x {} {}\r\n{header}{payload}\r\nPUB x 2\r\nok\r\nPING\r\n",
            header.len(),
            header.len() + payload.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
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
