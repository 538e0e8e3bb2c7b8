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
    pub store: tempfile::TempDir,
    config: PathBuf,
}

impl NatsServer {
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
            store,
            config,
        };
        s.spawn().await;
        s
    }

    async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.store.path().join("nats.log"))
            .expect("nats log");
        let child = Command::new(&self.bin)
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
        format!("nats://127.0.0.1:{}", self.port)
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

    pub async fn client(&self) -> async_nats::Client {
        async_nats::connect(self.url())
            .await
            .expect("connect to test nats")
    }

    pub async fn jetstream(&self) -> async_nats::jetstream::Context {
        async_nats::jetstream::new(self.client().await)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}
