//! `herald config`: the effective configuration, each value with where it
//! came from (flag, env, file or default), secrets redacted; and the checks
//! a command makes at start-up that need no server, so that a file can be
//! validated before it is deployed (exit 2 when it is invalid).
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, FromArgMatches};

use super::{Cli, Command, Global, usage};
use crate::config::{Effective, Kind, Loaded, Source};

#[derive(Args, Debug)]
pub struct ConfigCmd {
    /// Print JSON: {"file": PATH|null, "settings": {KEY: {value, source, origin}, SECTION: {KEY: …}}}.
    #[arg(long)]
    pub json: bool,
}

pub fn run(g: &Global, cmd: ConfigCmd, loaded: &Loaded) -> Result<ExitCode> {
    let effective = loaded.effective()?;
    check(g, loaded)?;
    if cmd.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json(loaded, &effective))?
        );
    } else {
        print!("{}", text(loaded, &effective));
    }
    Ok(ExitCode::SUCCESS)
}

/// What relay, worker and up check before they dial anything.
fn check(g: &Global, loaded: &Loaded) -> Result<()> {
    herald::db::backend_of(g.database_url.expose())?;
    if let Some(smtp) = &g.smtp_url {
        herald::smtp::Transport::from_url(smtp.expose()).map_err(usage)?;
    }
    // The sections' settings as `herald up` (which takes them all) would
    // parse them from the environment and the file.
    let matches = loaded
        .command
        .clone()
        .try_get_matches_from(["herald", "up"])
        .map_err(|e| usage(e.to_string().trim_start_matches("error: ").trim()))?;
    let cli = Cli::from_arg_matches(&matches).map_err(|e| usage(e.to_string()))?;
    if let Command::Up(up) = cli.command {
        up.relay.check()?;
        let unsubscribe = up.worker.unsubscribe()?;
        workflows(g, &up.worker.workflow, unsubscribe)?;
    }
    Ok(())
}

/// The workflows a worker here would run, when the directory exists (a
/// relay's host may have none): every problem, then the settings they need.
fn workflows(
    g: &Global,
    only: &[String],
    unsubscribe: Option<herald::unsubscribe::Unsubscribe>,
) -> Result<()> {
    if !g.workflows.is_dir() {
        return Ok(());
    }
    let catalog = herald::workflow::load(&g.workflows).map_err(usage)?;
    let mut cfg = herald::worker::WorkerConfig::default();
    if let Some(u) = unsubscribe {
        cfg = cfg.unsubscribe(u);
    }
    let selected = catalog
        .workflows
        .iter()
        .filter(|w| only.is_empty() || only.contains(&w.name));
    let missing = cfg.missing_settings(selected);
    if !missing.is_empty() {
        return Err(usage(missing.join("\n")));
    }
    Ok(())
}

/// Sections in the order a reader meets them: the top level, then as in `herald --help`.
fn order(section: &Option<String>) -> (usize, Option<String>) {
    let rank = match section.as_deref() {
        None => 0,
        Some("relay") => 1,
        Some("worker") => 2,
        Some("http") => 3,
        Some("up") => 4,
        Some(_) => 5,
    };
    (rank, section.clone())
}

fn toml_value(e: &Effective, shown: &str) -> String {
    match e.setting.kind {
        Kind::Integer | Kind::Bool if !e.setting.secret => shown.to_string(),
        _ => serde_json::to_string(shown).unwrap_or_default(),
    }
}

fn text(loaded: &Loaded, effective: &[Effective]) -> String {
    let mut out = String::new();
    match &loaded.file {
        Some(f) => out.push_str(&format!(
            "# configuration file: {} ({})\n",
            f.path.display(),
            f.how()
        )),
        None => out.push_str(&format!(
            "# no configuration file (--config, HERALD_CONFIG, or {} in the working directory)\n",
            crate::config::DEFAULT_FILE
        )),
    }
    out.push_str("# precedence: flag > environment > file > default; secrets are shown as ***\n");
    let mut sorted: Vec<&Effective> = effective.iter().collect();
    sorted.sort_by_key(|e| (order(&e.setting.key.section), e.setting.key.name.clone()));
    let lines: Vec<(Option<String>, String, String)> = sorted
        .iter()
        .map(|e| {
            let key = &e.setting.key.name;
            let left = match &e.value {
                Some(v) => format!("{key} = {}", toml_value(e, &e.setting.shown(v))),
                None => format!("# {key} ="),
            };
            let right = match (&e.source, e.source.origin()) {
                (Source::Unset, _) => "not set".to_string(),
                (s, Some(o)) => format!("{} {o}", s.kind()),
                (s, None) => s.kind().to_string(),
            };
            (e.setting.key.section.clone(), left, right)
        })
        .collect();
    let width = lines
        .iter()
        .map(|(_, l, _)| l.chars().count())
        .max()
        .unwrap_or(0);
    let mut section: Option<String> = None;
    for (sec, left, right) in lines {
        if sec != section {
            if let Some(s) = &sec {
                out.push_str(&format!("\n[{s}]\n"));
            }
            section = sec;
        }
        let pad = width.saturating_sub(left.chars().count());
        out.push_str(&format!("{left}{}  # {right}\n", " ".repeat(pad)));
    }
    out
}

fn json(loaded: &Loaded, effective: &[Effective]) -> serde_json::Value {
    let mut settings = serde_json::Map::new();
    for e in effective {
        let value = match &e.value {
            None => serde_json::Value::Null,
            Some(v) => {
                let shown = e.setting.shown(v);
                match e.setting.kind {
                    _ if e.setting.secret => shown.into(),
                    Kind::Integer => shown
                        .parse::<i64>()
                        .map(Into::into)
                        .unwrap_or_else(|_| shown.into()),
                    Kind::Bool => (shown == "true").into(),
                    Kind::Text => shown.into(),
                }
            }
        };
        let entry = serde_json::json!({
            "value": value,
            "source": e.source.kind(),
            "origin": e.source.origin(),
        });
        let key = e.setting.key.name.clone();
        match &e.setting.key.section {
            None => {
                settings.insert(key, entry);
            }
            Some(s) => {
                let table = settings
                    .entry(s.clone())
                    .or_insert_with(|| serde_json::Value::Object(Default::default()));
                if let Some(t) = table.as_object_mut() {
                    t.insert(key, entry);
                }
            }
        }
    }
    serde_json::json!({
        "file": loaded.file.as_ref().map(|f| f.path.display().to_string()),
        "settings": settings,
    })
}
