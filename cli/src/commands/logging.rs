//! Logging: the subscriber, with every configured secret redacted in
//! every line.

use anyhow::Result;

use super::{Global, LogFormat, usage};

/// Log output with every secret of the configured URLs replaced: Herald
/// never logs a URL unredacted, and this also covers what a dependency
/// might log at a verbose level a user asked for.
#[derive(Clone)]
struct RedactingStderr {
    secrets: std::sync::Arc<Vec<String>>,
}

impl std::io::Write for RedactingStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut text = String::from_utf8_lossy(buf).into_owned();
        for s in self.secrets.iter() {
            text = text.replace(s.as_str(), herald::secret::REDACTED);
        }
        std::io::stderr().write_all(text.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for RedactingStderr {
    type Writer = RedactingStderr;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

pub(super) fn init_logging(global: &Global, http_token: Option<&str>) -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(&global.log)
        .map_err(|e| usage(format!("invalid --log filter {:?}: {e}", global.log)))?;
    let mut secrets: Vec<String> = [
        Some(&global.database_url),
        Some(&global.nats_url),
        global.smtp_url.as_ref(),
    ]
    .into_iter()
    .flatten()
    .flat_map(|u| herald::secret::secrets_in(u.expose()))
    .chain(http_token.map(str::to_string))
    .collect();
    // Longest first: a secret that contains another is replaced whole.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let writer = RedactingStderr {
        secrets: std::sync::Arc::new(secrets),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(
            global
                .color
                .enabled(std::io::IsTerminal::is_terminal(&std::io::stderr())),
        );
    // A second init (tests calling in-process) is harmless, so its error is ignored.
    let _ = match global.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .event_format(crate::json_log::ListsAsArrays::default())
            .try_init(),
    };
    Ok(())
}
