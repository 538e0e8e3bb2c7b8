//! Test support: abort the process at a named point when `HERALD_FAILPOINT`
//! names it, to prove crash windows (see tests/it/worker.rs). Read once: the
//! send path must not consult the environment per email.
use std::sync::OnceLock;

static ARMED: OnceLock<Option<String>> = OnceLock::new();

pub fn hit(name: &str) {
    let armed = ARMED.get_or_init(|| std::env::var("HERALD_FAILPOINT").ok());
    if armed.as_deref() == Some(name) {
        std::process::abort();
    }
}
