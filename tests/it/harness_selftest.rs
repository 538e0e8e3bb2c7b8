//! The harness itself: real nats-server with JetStream, restart keeps the store,
//! and the SMTP sink records and scripts replies.
use async_nats::jetstream::stream;
use herald_tests::nats::NatsServer;
use herald_tests::smtp::{Reply, SmtpSink};
use mail_send::SmtpClientBuilder;
use mail_send::mail_builder::MessageBuilder;

#[tokio::test]
async fn nats_restart_keeps_stream() {
    let mut nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    js.create_stream(stream::Config {
        name: "SELFTEST".into(),
        subjects: vec!["selftest.>".into()],
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await
    .unwrap();
    js.publish("selftest.a", "hello".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let version = nats.client().await.server_info().version;
    let (major, minor) = {
        let mut it = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
        (it.next().unwrap_or(0), it.next().unwrap_or(0))
    };
    assert!(
        major > 2 || (major == 2 && minor >= 10),
        "nats-server {version} < 2.10"
    );

    nats.restart().await;
    let js = nats.jetstream().await;
    let mut s = js.get_stream("SELFTEST").await.unwrap();
    assert_eq!(s.info().await.unwrap().state.messages, 1);
}

async fn send(port: u16, subject: &str) -> Result<(), mail_send::Error> {
    let mut client = SmtpClientBuilder::new("127.0.0.1", port)
        .unwrap()
        .implicit_tls(false)
        .connect_plain()
        .await?;
    let msg = MessageBuilder::new()
        .from("a@example.com")
        .to("b@example.com")
        .subject(subject)
        .text_body("body");
    client.send(msg).await.map(|_| ())
}

#[tokio::test]
async fn smtp_sink_records_and_scripts() {
    let sink = SmtpSink::start().await;
    send(sink.port, "first").await.unwrap();
    assert_eq!(sink.count(), 1);
    let got = &sink.received()[0];
    assert_eq!(got.header("Subject").as_deref(), Some("first"));
    assert_eq!(got.rcpt_to, vec!["b@example.com".to_string()]);

    sink.script([
        Reply::Code(451, "4.3.0 try again later".into()),
        Reply::Code(550, "5.1.1 no such user".into()),
    ]);
    match send(sink.port, "second").await {
        Err(mail_send::Error::UnexpectedReply(r)) => assert_eq!(r.code, 451),
        other => panic!("expected 451, got {other:?}"),
    }
    match send(sink.port, "third").await {
        Err(mail_send::Error::UnexpectedReply(r)) => assert_eq!(r.code, 550),
        other => panic!("expected 550, got {other:?}"),
    }
    sink.script([Reply::DropConnection]);
    assert!(send(sink.port, "fourth").await.is_err());
    sink.set_down(true);
    assert!(send(sink.port, "fifth").await.is_err());
    sink.set_down(false);
    send(sink.port, "sixth").await.unwrap();
    assert_eq!(sink.count(), 2, "only accepted messages are recorded");
    assert_eq!(sink.data_commands(), 5);
}
