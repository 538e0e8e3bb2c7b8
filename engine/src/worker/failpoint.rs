//! Test support, compiled in only with the `failpoints` feature (the test
//! suite's build): at a named point, abort the process (to prove crash
//! windows) or panic (to prove panics are contained), when
//! `HERALD_FAILPOINT` names it: `NAME` aborts, `panic:NAME` panics, and
//! `panic-once:NAME` panics the first time only; `fail-every:N:NAME` makes
//! every Nth call of [`fails`] at that point answer true (an injected
//! error, e.g. a relay row the server refused); `pause-once:MS:NAME` makes
//! the first call of [`pause`] there answer a wait of MS milliseconds (a
//! process frozen mid-work). Read once: the send path must not consult the
//! environment per email.

#[cfg(feature = "failpoints")]
mod armed {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicBool, Ordering};

    use std::sync::atomic::AtomicU64;

    static ARMED: OnceLock<Option<String>> = OnceLock::new();
    static FIRED: AtomicBool = AtomicBool::new(false);
    static CALLS: AtomicU64 = AtomicU64::new(0);

    fn armed() -> Option<&'static str> {
        ARMED
            .get_or_init(|| std::env::var("HERALD_FAILPOINT").ok())
            .as_deref()
    }

    pub fn fails(name: &str) -> bool {
        let Some((every, point)) = armed()
            .and_then(|a| a.strip_prefix("fail-every:"))
            .and_then(|rest| rest.split_once(':'))
        else {
            return false;
        };
        let Ok(every) = every.parse::<u64>() else {
            return false;
        };
        point == name
            && every > 0
            && (CALLS.fetch_add(1, Ordering::SeqCst) + 1).is_multiple_of(every)
    }

    pub fn pause(name: &str) -> Option<std::time::Duration> {
        let (ms, point) = armed()?.strip_prefix("pause-once:")?.split_once(':')?;
        let ms = ms.parse::<u64>().ok()?;
        (point == name && !FIRED.swap(true, Ordering::SeqCst))
            .then(|| std::time::Duration::from_millis(ms))
    }

    pub fn hit(name: &str) {
        let armed = armed();
        let Some(a) = armed else {
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
pub use armed::{fails, hit, pause};

/// Without the `failpoints` feature: nothing, and free.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn hit(_name: &str) {}

/// Without the `failpoints` feature: never.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn fails(_name: &str) -> bool {
    false
}

/// Without the `failpoints` feature: never.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn pause(_name: &str) -> Option<std::time::Duration> {
    None
}
