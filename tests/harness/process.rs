//! The `herald` binary as a child process, for crash and signal tests.
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// Path of the `herald` binary: `HERALD_BIN`, else `target/debug/herald`
/// (the README's test command builds it before the tests run).
pub fn herald_bin() -> PathBuf {
    if let Ok(p) = std::env::var("HERALD_BIN") {
        return PathBuf::from(p);
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| crate::workspace_root().join("target"));
    let bin = target.join("debug/herald");
    assert!(
        bin.exists(),
        "{} not found: run scripts/test.sh, or build it first (`cargo build --bin herald --features failpoints`), or set HERALD_BIN",
        bin.display()
    );
    assert_test_build(&bin);
    bin
}

/// The suite's crash tests need the failpoints build; a plain `cargo build`
/// overwrites it. Say so once, plainly, instead of letting them time out.
fn assert_test_build(bin: &std::path::Path) {
    static CHECKED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    let r = CHECKED.get_or_init(|| {
        let out = Command::new(bin)
            .arg("--version")
            .output()
            .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
        if String::from_utf8_lossy(&out.stdout).contains("+failpoints") {
            Ok(())
        } else {
            Err(format!(
                "{} is not the test build: run scripts/test.sh, or `cargo build --bin herald --features failpoints`",
                bin.display()
            ))
        }
    });
    if let Err(e) = r {
        panic!("{e}");
    }
}

/// Environment for one herald invocation.
#[derive(Clone, Debug, Default)]
pub struct HeraldEnv {
    pub vars: BTreeMap<String, String>,
    pub cwd: Option<PathBuf>,
}

impl HeraldEnv {
    pub fn set(&mut self, k: &str, v: impl Into<String>) -> &mut Self {
        self.vars.insert(k.to_string(), v.into());
        self
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(herald_bin());
        c.args(args);
        c.env_remove("RUST_LOG");
        for k in [
            "HERALD_DATABASE_URL",
            "HERALD_NATS_URL",
            "HERALD_SMTP_URL",
            "HERALD_WORKFLOWS",
            "HERALD_STREAM",
            // A developer's own configuration must not reach the tests.
            "HERALD_CONFIG",
            "HERALD_COLOR",
            "NO_COLOR",
        ] {
            c.env_remove(k);
        }
        c.envs(&self.vars);
        if let Some(d) = &self.cwd {
            c.current_dir(d);
        }
        c
    }

    /// Run to completion; returns the output.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args)
            .stdin(Stdio::null())
            .output()
            .expect("run herald")
    }

    /// Start a long-running command (relay, worker) with logs to a file.
    pub fn spawn(&self, args: &[&str]) -> Herald {
        let log = tempfile::NamedTempFile::new().expect("log file");
        let child = self
            .command(args)
            .stdin(Stdio::null())
            .stdout(log.reopen().expect("log"))
            .stderr(log.reopen().expect("log"))
            .spawn()
            .expect("spawn herald");
        Herald { child, log }
    }
}

pub struct Herald {
    child: Child,
    log: tempfile::NamedTempFile,
}

impl Herald {
    /// The process id (benchmarks read its memory from /proc).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Send a signal by name (e.g. "INT").
    pub fn signal(&self, name: &str) {
        let _ = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status();
    }

    /// Crash it: SIGKILL, no cleanup.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Ask it to stop (SIGTERM) and wait up to `deadline` for the exit status.
    pub async fn terminate(&mut self, deadline: Duration) -> ExitStatus {
        self.signal("TERM");
        self.wait(deadline).await
    }

    /// Wait for exit up to `deadline` (panics with the log if it does not
    /// exit). Polls without blocking the runtime the test's servers run on.
    pub async fn wait(&mut self, deadline: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st;
            }
            if start.elapsed() > deadline {
                let _ = self.child.kill();
                panic!(
                    "herald did not exit within {deadline:?}; log:\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn try_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }
}

impl Drop for Herald {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
