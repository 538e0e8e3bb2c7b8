//! `herald send-test`: one real email to the author, through the configured
//! transport, to see it in a real mail client. It renders as the worker
//! does, but the event exists nowhere: no database, no NATS, no ledger row.
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use herald::workflow::Mailbox;
use herald::workflow::render::Outcome;

use super::{Global, usage, workflows};

/// The header that marks a test email (for mail filters and for whoever
/// finds it in a mailbox).
pub const TEST_HEADER: (&str, &str) = ("X-Herald-Test", "1");

#[derive(Args, Debug)]
pub struct SendTestArgs {
    /// The workflow (its `name`).
    pub workflow: String,
    /// The event payload: a JSON object inline, or @FILE.
    #[arg(long)]
    pub payload: String,
    /// The only recipient: the email goes to this address alone, whatever the workflow's to, cc and bcc say.
    #[arg(long, value_name = "ADDR")]
    pub to: Mailbox,
    /// Subject to pretend the event came on [default: the workflow's first filter with wildcards filled].
    #[arg(long)]
    pub subject: Option<String>,
    /// With for_each, send every email the payload makes (each to ADDR), not only the first.
    #[arg(long)]
    pub all: bool,
}

pub async fn run(g: &Global, args: SendTestArgs) -> Result<ExitCode> {
    // Checked as the worker checks them, before anything is rendered or sent.
    let smtp = g.smtp_for("send-test")?;
    let transport = herald::smtp::Transport::from_url(smtp.expose()).map_err(usage)?;
    let sample = workflows::sample(g, &args.workflow, &args.payload, args.subject)?;
    let mut emails = match sample.outcome {
        Outcome::Skipped { guard } => {
            return Err(usage(format!(
                "nothing sent: the workflow's guard does not hold for this payload ({guard})"
            )));
        }
        Outcome::Emails(emails) => emails,
    };
    let made = emails.len();
    if !args.all {
        emails.truncate(1);
    }
    for mut email in emails {
        email.to = vec![args.to.clone()];
        email.cc.clear();
        email.bcc.clear();
        // The mark is Herald's, once, whatever the workflow's own headers say.
        email
            .headers
            .retain(|(k, _)| !k.eq_ignore_ascii_case(TEST_HEADER.0));
        email
            .headers
            .push((TEST_HEADER.0.to_string(), TEST_HEADER.1.to_string()));
        let mid = herald::worker::message_id(sample.id, &args.workflow, email.index, &email.from);
        match transport.send_once(&email, &mid).await {
            Ok(reply) => println!(
                "sent {:?} to {} via {} (Message-ID <{mid}>): {}",
                email.subject,
                args.to,
                transport.name(),
                reply.trim()
            ),
            Err(e) => {
                return Err(anyhow::Error::new(e).context(format!(
                    "sending the test email to {} via {} failed",
                    args.to,
                    transport.name()
                )));
            }
        }
    }
    if made > 1 && !args.all {
        eprintln!(
            "note: this payload makes {made} emails (for_each); sent the first (--all sends each)"
        );
    }
    Ok(ExitCode::SUCCESS)
}
