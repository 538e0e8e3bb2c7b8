//! A real nats-server with JetStream, owned by one test.
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::wait;

/// Locate nats-server ≥ 2.10: `HERALD_NATS_SERVER_BIN`, then the project-local
/// install made by `scripts/setup.sh`, then `nats-server` on PATH.
pub fn binary() -> PathBuf {
    if let Ok(p) = std::env::var("HERALD_NATS_SERVER_BIN") {
        return PathBuf::from(p);
    }
    let local = crate::workspace_root().join(".tools/nats/bin/nats-server");
    if local.exists() {
        return local;
    }
    PathBuf::from("nats-server")
}

pub struct NatsServer {
    bin: PathBuf,
    child: Option<Child>,
    pub port: u16,
    /// The address it listens on (127.0.0.1, or a network namespace's).
    pub host: String,
    pub store: tempfile::TempDir,
    config: PathBuf,
    /// A command the server runs under (`ip netns exec NAME`), if any.
    wrapper: Vec<String>,
}

impl NatsServer {
    /// The server process's id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Start with default limits.
    pub async fn start() -> NatsServer {
        Self::start_with("").await
    }

    /// Start with extra config lines (e.g. `max_payload: 4096`).
    pub async fn start_with(extra_config: &str) -> NatsServer {
        Self::start_bin(binary(), extra_config).await
    }

    /// Start a given nats-server binary (e.g. an old one, to test refusal).
    pub async fn start_bin(bin: PathBuf, extra_config: &str) -> NatsServer {
        Self::start_full(bin, "", extra_config).await
    }

    /// Start with extra lines inside the `jetstream {}` block (e.g. `sync_interval: always`).
    pub async fn start_with_jetstream(jetstream_config: &str) -> NatsServer {
        Self::start_full(binary(), jetstream_config, "").await
    }

    async fn start_full(bin: PathBuf, jetstream_config: &str, extra_config: &str) -> NatsServer {
        let store = tempfile::tempdir().expect("temp store dir");
        let port = crate::free_port();
        let config = store.path().join("nats.conf");
        std::fs::write(
            &config,
            format!(
                "listen: 127.0.0.1:{port}\njetstream {{\n  store_dir: {:?}\n  {jetstream_config}\n}}\n{extra_config}\n",
                store.path().join("js")
            ),
        )
        .expect("write nats config");
        let mut s = NatsServer {
            bin,
            child: None,
            port,
            host: "127.0.0.1".into(),
            store,
            config,
            wrapper: Vec::new(),
        };
        s.spawn().await;
        s
    }

    async fn spawn(&mut self) {
        self.launch();
        self.wait_ready().await;
    }

    /// Start the process without waiting for it to answer (cluster nodes
    /// answer JetStream requests only once a quorum of them runs).
    fn launch(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.store.path().join("nats.log"))
            .expect("nats log");
        let mut cmd = match self.wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(&self.bin);
                c
            }
            None => Command::new(&self.bin),
        };
        let child = cmd
            .arg("-c")
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start nats-server {:?}: {e}; run scripts/setup.sh or set HERALD_NATS_SERVER_BIN",
                    self.bin
                )
            });
        self.child = Some(child);
    }

    async fn wait_ready(&self) {
        let url = self.url();
        wait::until("nats-server answers with JetStream", wait::DEFAULT, || {
            let url = url.clone();
            async move {
                let Ok(client) = async_nats::connect(&url).await else {
                    return false;
                };
                let info = client.server_info();
                // Old servers (refusal tests) answer account queries in a
                // format the current client may not parse: their flag suffices.
                if !herald::jetstream::server_supported(&info.version) {
                    return info.jetstream;
                }
                async_nats::jetstream::new(client)
                    .query_account()
                    .await
                    .is_ok()
            }
        })
        .await;
    }

    pub fn url(&self) -> String {
        format!("nats://{}:{}", self.host, self.port)
    }

    pub fn store_dir(&self) -> &Path {
        self.store.path()
    }

    /// Kill -9 the server (simulates a crash); the store stays.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start again on the same port and store.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }

    /// Start a killed server again (no-op while it runs).
    pub async fn start_again(&mut self) {
        if self.child.is_none() {
            self.spawn().await;
        }
    }

    /// Lose the JetStream store (a disk lost or wiped): kill the server and
    /// delete its `js` directory; `start_again` brings it back empty.
    pub fn kill_and_wipe(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(self.store.path().join("js"));
    }

    pub async fn client(&self) -> async_nats::Client {
        async_nats::connect(self.url())
            .await
            .expect("connect to test nats")
    }

    pub async fn jetstream(&self) -> async_nats::jetstream::Context {
        async_nats::jetstream::new(self.client().await)
    }

    /// Publish with a raw protocol client: what any client library may
    /// send, including header blocks async-nats itself refuses to build
    /// (`header_lines` without the `NATS/1.0` line and the blank line).
    /// Returns when the server answered the PING after the publish.
    pub async fn publish_raw(&self, subject: &str, header_lines: &str, payload: &[u8]) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut raw = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
            .await
            .expect("connect to test nats");
        let mut buf = vec![0u8; 4096];
        let _ = raw.read(&mut buf).await.expect("INFO");
        let header = format!("NATS/1.0\r\n{header_lines}\r\n");
        let mut out = format!(
            "CONNECT {{\"verbose\":false,\"headers\":true}}\r\nHPUB {subject} {} {}\r\n{header}",
            header.len(),
            header.len() + payload.len()
        )
        .into_bytes();
        out.extend_from_slice(payload);
        out.extend_from_slice(b"\r\nPING\r\n");
        raw.write_all(&out).await.expect("raw publish");
        let mut seen = String::new();
        while !seen.contains("PONG") {
            let n = raw.read(&mut buf).await.expect("PONG");
            assert!(n > 0, "the server closed the raw connection: {seen}");
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Where the nodes of a cluster listen.
#[derive(Debug, Clone)]
pub enum Placement {
    /// All on 127.0.0.1, distinct ports.
    Loopback,
    /// Each node in its own network namespace (see [`crate::netns::Netns`]),
    /// at `hosts[i]`, run under `wrappers[i]` (`ip netns exec NAME`).
    Namespaces {
        hosts: Vec<String>,
        wrappers: Vec<Vec<String>>,
    },
}

/// A JetStream cluster of three nats-server processes (R3 streams survive
/// one node down), each with its own store, restartable one at a time.
pub struct NatsCluster {
    pub nodes: Vec<NatsServer>,
}

impl NatsCluster {
    /// Three nodes on loopback ports, ready for R3 streams.
    pub async fn start() -> NatsCluster {
        Self::start_placed(Placement::Loopback).await
    }

    pub async fn start_placed(placement: Placement) -> NatsCluster {
        let n = 3;
        let (hosts, wrappers): (Vec<String>, Vec<Vec<String>>) = match placement {
            Placement::Loopback => (vec!["127.0.0.1".into(); n], vec![Vec::new(); n]),
            Placement::Namespaces { hosts, wrappers } => (hosts, wrappers),
        };
        // Loopback nodes need distinct ports; namespaced ones could share,
        // but distinct ports keep every URL unambiguous in logs.
        let ports: Vec<u16> = (0..n).map(|_| crate::free_port()).collect();
        let cluster_ports: Vec<u16> = (0..n).map(|_| crate::free_port()).collect();
        let routes: Vec<String> = (0..n)
            .map(|i| format!("nats-route://{}:{}", hosts[i], cluster_ports[i]))
            .collect();
        let mut nodes = Vec::with_capacity(n);
        for i in 0..n {
            let store = tempfile::tempdir().expect("temp store dir");
            let config = store.path().join("nats.conf");
            std::fs::write(
                &config,
                format!(
                    "server_name: n{i}\nlisten: {host}:{port}\n\
                     jetstream {{\n  store_dir: {store:?}\n}}\n\
                     cluster {{\n  name: herald-test-{first}\n  listen: {host}:{cport}\n  routes: [{routes}]\n}}\n",
                    host = hosts[i],
                    port = ports[i],
                    store = store.path().join("js"),
                    cport = cluster_ports[i],
                    routes = routes.join(", "),
                    // Its own cluster name: a route port another test's
                    // cluster took meanwhile cannot merge the two.
                    first = cluster_ports[0],
                ),
            )
            .expect("write nats config");
            let mut s = NatsServer {
                bin: binary(),
                child: None,
                port: ports[i],
                host: hosts[i].clone(),
                store,
                config,
                wrapper: wrappers[i].clone(),
            };
            s.launch();
            nodes.push(s);
        }
        for s in &nodes {
            s.wait_ready().await;
        }
        let c = NatsCluster { nodes };
        c.wait_r3_possible().await;
        c
    }

    /// Every node's URL, comma-separated (as `--nats-url` takes them).
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(NatsServer::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// A client that may connect to any node (and reconnects to another).
    pub async fn jetstream(&self) -> async_nats::jetstream::Context {
        let client = async_nats::ConnectOptions::new()
            .max_reconnects(None)
            .connect(self.nodes.iter().map(NatsServer::url).collect::<Vec<_>>())
            .await
            .expect("connect to test cluster");
        async_nats::jetstream::new(client)
    }

    /// The meta layer knows all three peers once an R3 stream can be made:
    /// make one and delete it.
    async fn wait_r3_possible(&self) {
        let js = self.jetstream().await;
        wait::until("the cluster accepts an R3 stream", wait::DEFAULT, || {
            let js = js.clone();
            async move {
                let made = js
                    .create_stream(async_nats::jetstream::stream::Config {
                        name: "PROBE".into(),
                        subjects: vec!["probe.>".into()],
                        num_replicas: 3,
                        ..Default::default()
                    })
                    .await
                    .is_ok();
                made && js.delete_stream("PROBE").await.is_ok()
            }
        })
        .await;
    }

    /// Index of the node leading `stream` now, if it has a leader.
    pub async fn stream_leader(&self, stream: &str) -> Option<usize> {
        let js = self.jetstream().await;
        let info = tokio::time::timeout(std::time::Duration::from_secs(5), async {
            js.get_stream(stream)
                .await
                .ok()
                .map(|s| s.cached_info().clone())
        })
        .await
        .ok()??;
        let leader = info.cluster?.leader?;
        leader.strip_prefix('n')?.parse().ok()
    }

    /// Whether `stream` has a leader and both followers are online and current.
    pub async fn stream_healthy(&self, stream: &str) -> bool {
        let js = self.jetstream().await;
        let info = tokio::time::timeout(std::time::Duration::from_secs(5), async {
            js.get_stream(stream)
                .await
                .ok()
                .map(|s| s.cached_info().clone())
        })
        .await
        .ok()
        .flatten();
        let Some(cluster) = info.and_then(|i| i.cluster) else {
            return false;
        };
        cluster.leader.is_some()
            && cluster.replicas.len() == self.nodes.len() - 1
            && cluster.replicas.iter().all(|p| p.current && !p.offline)
    }

    /// Ask the stream's leader to step down (a graceful leader change).
    pub async fn step_down(&self, stream: &str) -> bool {
        let js = self.jetstream().await;
        js.client()
            .request(
                format!("$JS.API.STREAM.LEADER.STEPDOWN.{stream}"),
                bytes::Bytes::new(),
            )
            .await
            .is_ok()
    }
}
