//! `herald suppressions` and `herald unsubscribes`: the addresses Herald
//! does not mail (bounced for good, or added by an operator) and the
//! one-click unsubscribes per category.
use std::process::ExitCode;

use anyhow::Result;
use chrono::SecondsFormat;
use clap::Subcommand;

use super::{Global, usage};

#[derive(Subcommand, Debug)]
pub enum SuppressionsCmd {
    /// Suppressed addresses, oldest first: hard bounces (5.1.x) and manual entries.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Suppress an address: its later deliveries are recorded `suppressed`, not sent (workflows with ignore_suppression: true still mail it).
    Add {
        address: String,
        /// Why (shown by `list` and in the ledger of skipped deliveries).
        #[arg(long, default_value = "added by an operator")]
        reason: String,
    },
    /// Mail an address again (after the recipient fixed their mailbox).
    Remove { address: String },
}

#[derive(Subcommand, Debug)]
pub enum UnsubscribesCmd {
    /// Recorded one-click unsubscribes, oldest first.
    List {
        /// Only this category.
        #[arg(long)]
        category: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Subscribe an address to a category again (only when the recipient asked for it).
    Remove {
        address: String,
        #[arg(long)]
        category: String,
    },
}

async fn db(g: &Global, role: &str) -> Result<sea_orm::DatabaseConnection> {
    let db = super::open_existing_db(g, role).await?;
    herald::db::migrate(&db).await?;
    Ok(db)
}

/// An address an operator typed, checked before the database is opened.
fn address(raw: &str) -> Result<String> {
    herald::suppression::check_address(raw)
        .map_err(|e| usage(format!("{raw:?} is not an email address: {e}")))
}

pub async fn run(g: &Global, cmd: SuppressionsCmd) -> Result<ExitCode> {
    match cmd {
        SuppressionsCmd::List { json } => {
            let rows = herald::suppression::list(&db(g, "herald suppressions").await?).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else if rows.is_empty() {
                println!("no suppressed addresses");
            } else {
                let rows: Vec<[String; 4]> = rows
                    .into_iter()
                    .map(|s| {
                        [
                            s.address,
                            s.source,
                            s.created_at.to_rfc3339_opts(SecondsFormat::Secs, true),
                            s.smtp_reply.unwrap_or(s.reason),
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    super::text::table(["address", "source", "since", "reason"], &rows)
                );
            }
        }
        SuppressionsCmd::Add {
            address: raw,
            reason,
        } => {
            let a = address(&raw)?;
            let db = db(g, "herald suppressions").await?;
            if herald::suppression::add(&db, &a, &reason, None, "manual").await? {
                println!("suppressed {a}");
            } else {
                println!("{a} was suppressed already");
            }
        }
        SuppressionsCmd::Remove { address: raw } => {
            let a = address(&raw)?;
            let db = db(g, "herald suppressions").await?;
            if herald::suppression::remove(&db, &a).await? {
                println!("{a} is mailed again");
            } else {
                println!("{a} was not suppressed");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn run_unsubscribes(g: &Global, cmd: UnsubscribesCmd) -> Result<ExitCode> {
    match cmd {
        UnsubscribesCmd::List { category, json } => {
            let db = db(g, "herald unsubscribes").await?;
            let rows = herald::unsubscribe::list(&db, category.as_deref()).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else if rows.is_empty() {
                println!("no unsubscribes");
            } else {
                let rows: Vec<[String; 3]> = rows
                    .into_iter()
                    .map(|u| {
                        [
                            u.address,
                            u.category,
                            u.created_at.to_rfc3339_opts(SecondsFormat::Secs, true),
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    super::text::table(["address", "category", "since"], &rows)
                );
            }
        }
        UnsubscribesCmd::Remove {
            address: raw,
            category,
        } => {
            let address = address(&raw)?;
            let db = db(g, "herald unsubscribes").await?;
            if herald::unsubscribe::remove(&db, &address, &category).await? {
                println!("{address} receives {category} mail again");
            } else {
                println!("{address} was not unsubscribed from {category}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
