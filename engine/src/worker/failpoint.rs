//! Test support, compiled in only with the `failpoints` feature (the test
//! suite's build): at a named point, abort the process (to prove crash
//! windows) or panic (to prove panics are contained), when
//! `HERALD_FAILPOINT` names it: `NAME` aborts, `panic:NAME` panics, and
//! `panic-once:NAME` panics the first time only. Read once: the send path
//! must not consult the environment per email.

#[cfg(feature = "failpoints")]
mod armed {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicBool, Ordering};

    static ARMED: OnceLock<Option<String>> = OnceLock::new();
    static FIRED: AtomicBool = AtomicBool::new(false);

    pub fn hit(name: &str) {
        let armed = ARMED.get_or_init(|| std::env::var("HERALD_FAILPOINT").ok());
        let Some(a) = armed.as_deref() else {
            return;
        };
        if a == name {
            std::process::abort();
        }
        if a.strip_prefix("panic:") == Some(name) {
            panic!("failpoint {name}");
        }
        if a.strip_prefix("panic-once:") == Some(name) && !FIRED.swap(true, Ordering::SeqCst) {
            panic!("failpoint {name} (once)");
        }
    }
}

#[cfg(feature = "failpoints")]
pub use armed::hit;

/// Without the `failpoints` feature: nothing, and free.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn hit(_name: &str) {}
