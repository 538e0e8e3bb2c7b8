//! One test's whole world, built in one way: its database, nats-server, SMTP
//! sink, workflows directory and the environment herald processes run with.
//!
//! ```ignore
//! let s = Scenario::new(backend).workflow("notify.yaml", NOTIFY).start().await;
//! let _relay = s.relay();
//! let _worker = s.worker();
//! s.emit("events.test.a", json!({"email": "a@example.com"})).await;
//! s.wait_emails(1).await;
//! ```
use std::process::Output;
use std::time::Duration;

use crate::db::Backend;
use crate::env::TestEnv;
use crate::process::{Herald, HeraldEnv};
use crate::smtp::{SmtpSink, Tls};
use crate::wait;

/// What to build.
pub struct Scenario {
    backend: Backend,
    nats_config: String,
    files: Vec<(String, String)>,
    examples: bool,
    tls: Tls,
}

/// The running world.
pub struct World {
    pub env: TestEnv,
    pub sink: SmtpSink,
    /// The herald environment: database, NATS, SMTP sink and workflows.
    pub h: HeraldEnv,
    _dir: Option<tempfile::TempDir>,
}

impl Scenario {
    pub fn new(backend: Backend) -> Scenario {
        Scenario {
            backend,
            nats_config: String::new(),
            files: Vec::new(),
            examples: false,
            tls: Tls::None,
        }
    }

    /// A file of the workflows directory (`notify.yaml`, `templates/x.hbs`).
    pub fn workflow(mut self, path: &str, text: &str) -> Scenario {
        self.files.push((path.to_string(), text.to_string()));
        self
    }

    /// Run the example workflows shipped in `workflows/` instead.
    pub fn examples(mut self) -> Scenario {
        self.examples = true;
        self
    }

    /// Extra nats-server configuration lines (e.g. `max_payload: 4096`).
    pub fn nats_config(mut self, lines: &str) -> Scenario {
        self.nats_config = lines.to_string();
        self
    }

    /// A sink speaking TLS (STARTTLS or implicit).
    pub fn smtp_tls(mut self, tls: Tls) -> Scenario {
        self.tls = tls;
        self
    }

    pub async fn start(self) -> World {
        let env = TestEnv::start_with(self.backend, &self.nats_config).await;
        let sink = SmtpSink::start_with(self.tls).await;
        let dir = (!self.examples).then(|| {
            let d = tempfile::tempdir().expect("workflows dir");
            for (name, text) in &self.files {
                let p = d.path().join(name);
                if let Some(parent) = p.parent() {
                    std::fs::create_dir_all(parent).expect("workflows subdir");
                }
                std::fs::write(p, text).expect("write workflow file");
            }
            d
        });
        let workflows = match &dir {
            Some(d) => d.path().to_path_buf(),
            None => crate::example_workflows(),
        };
        let mut h = env.herald.clone();
        let smtp = match self.tls {
            Tls::None => sink.url(),
            Tls::StartTls => format!("{}?tls_insecure=true", sink.url()),
            Tls::Implicit => format!("smtps://127.0.0.1:{}?tls_insecure=true", sink.port),
        };
        // Bulk-mail workflows (a `category`) need one-click unsubscribe;
        // a fixed secret keeps their links, and golden files, stable.
        h.set("HERALD_SMTP_URL", smtp)
            .set("HERALD_WORKFLOWS", workflows.display().to_string())
            .set("HERALD_PUBLIC_URL", "https://herald.test")
            .set("HERALD_UNSUBSCRIBE_SECRET", "test-unsubscribe-secret-0123");
        World {
            env,
            sink,
            h,
            _dir: dir,
        }
    }
}

impl World {
    /// A relay polling every 50 ms (plus `args`).
    pub fn relay(&self) -> Herald {
        self.relay_with(&[])
    }

    pub fn relay_with(&self, args: &[&str]) -> Herald {
        let mut all = vec!["relay", "--relay-poll", "50ms"];
        all.extend_from_slice(args);
        self.h.spawn(&all)
    }

    /// A worker with a 2 s ack wait (claims of dead workers expire quickly).
    pub fn worker(&self) -> Herald {
        self.worker_with(&[])
    }

    pub fn worker_with(&self, args: &[&str]) -> Herald {
        let mut all = vec!["worker", "--ack-wait", "2s"];
        all.extend_from_slice(args);
        self.h.spawn(&all)
    }

    /// Run a herald command to completion off the async runtime (the SMTP
    /// sink it may send to runs on the runtime).
    pub async fn run(&self, args: &[&str]) -> Output {
        run_off_runtime(&self.h, args).await
    }

    /// `herald emit`; returns the event id. Panics (with stderr) on failure.
    pub async fn emit(&self, subject: &str, payload: serde_json::Value) -> String {
        let out = self
            .run(&[
                "emit",
                "--subject",
                subject,
                "--payload",
                &payload.to_string(),
            ])
            .await;
        assert!(
            out.status.success(),
            "emit failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Emit `n` events `{"email": "u{i}@example.com", "name": "U{i}"}` on `subject`.
    pub async fn emit_users(&self, subject: &str, n: usize) {
        for i in 0..n {
            self.emit(
                subject,
                serde_json::json!({"email": format!("u{i}@example.com"), "name": format!("U{i}")}),
            )
            .await;
        }
    }

    /// The workflows directory (tests rewrite a workflow to "fix" it).
    pub fn workflows_dir(&self) -> std::path::PathBuf {
        match &self._dir {
            Some(d) => d.path().to_path_buf(),
            None => crate::example_workflows(),
        }
    }

    pub async fn wait_emails(&self, n: usize) {
        wait::until(
            &format!("{n} email(s) reach the sink"),
            wait::DEFAULT,
            || async { self.sink.count() >= n },
        )
        .await;
    }

    /// Wait until the ledger records `n` deliveries as sent.
    pub async fn wait_sent(&self, n: i64) {
        wait::until(
            &format!("{n} deliveries recorded sent"),
            wait::DEFAULT,
            || async { self.sent().await == n },
        )
        .await;
    }

    /// Deliveries the ledger records as sent.
    pub async fn sent(&self) -> i64 {
        self.count("SELECT COUNT(*) FROM herald_deliveries WHERE state = 'sent'")
            .await
    }

    pub async fn count(&self, sql: &str) -> i64 {
        self.env.scalar(sql).await
    }

    /// Wait until `sql` counts `n`, with a generous deadline.
    pub async fn wait_count(&self, sql: &str, n: i64) {
        wait::until(
            &format!("{sql} = {n}"),
            Duration::from_secs(120),
            || async { self.count(sql).await == n },
        )
        .await;
    }
}

/// Run herald to completion on a blocking thread.
pub async fn run_off_runtime(h: &HeraldEnv, args: &[&str]) -> Output {
    let h = h.clone();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        h.run(&a)
    })
    .await
    .expect("herald run task")
}
