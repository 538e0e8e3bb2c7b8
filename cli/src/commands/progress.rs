//! Progress of a long operator command (replay, republish): a bar with rate
//! and ETA on a terminal, a log line every 2 s otherwise (CI, systemd).
use std::io::IsTerminal;
use std::time::{Duration, Instant};

pub struct Progress {
    what: &'static str,
    bar: Option<indicatif::ProgressBar>,
    last_line: Instant,
}

impl Progress {
    /// `what` names the operation in log lines; `unit` labels the position
    /// (e.g. "seq") next to the bar.
    pub fn new(what: &'static str, unit: &str) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = indicatif::ProgressBar::new(0);
            b.set_style(
                indicatif::ProgressStyle::with_template(&format!(
                    "{{bar:40}} {{pos}}/{{len}} {unit} {{msg}} {{per_sec}} ETA {{eta}}"
                ))
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            b
        });
        Progress {
            what,
            bar,
            last_line: Instant::now(),
        }
    }

    /// `done` of `total` so far; `at` is where the operation stands (a sequence).
    pub fn update(&mut self, done: u64, total: u64, at: i64) {
        match &self.bar {
            Some(b) => {
                b.set_length(total);
                b.set_position(done);
                b.set_message(at.to_string());
            }
            None if self.last_line.elapsed() > Duration::from_secs(2) => {
                self.last_line = Instant::now();
                tracing::info!(what = self.what, done, total, at, "progress");
            }
            None => {}
        }
    }

    pub fn finish(self) {
        if let Some(b) = self.bar {
            b.finish_and_clear();
        }
    }
}
