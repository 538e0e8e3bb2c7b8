//! The relay: every committed row reaches the stream once, whatever crashes.

mod exactly_once;
mod faults;
mod streams;

const FAST: &[&str] = &["relay", "--relay-lease", "2s", "--relay-poll", "50ms"];

fn relay_args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut v: Vec<&str> = FAST.to_vec();
    v.extend_from_slice(extra);
    v
}
