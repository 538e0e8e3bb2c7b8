//! One message's SMTP transaction step by step, so that every failure is
//! classified by where it happened: a reply to MAIL, RCPT or DATA →
//! [`SendError::Rejected`] (or `Throttled` for 421/454); the session breaking
//! before the final "." → [`SendError::Interrupted`]; after it →
//! [`SendError::Uncertain`].
use mail_send::SmtpClient;
use smtp_proto::Response;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::SendError;
use super::pool::Envelope;

/// The reply text with its enhanced status code (smtp-proto parses it apart).
fn reply_text(r: &Response<String>) -> String {
    match r.esc {
        [0, 0, 0] => r.message.clone(),
        [a, b, c] => format!("{a}.{b}.{c} {}", r.message),
    }
}

fn reply_line(r: &Response<String>) -> String {
    format!("{} {}", r.code, reply_text(r))
}

/// Where in the transaction a reply came.
///
/// ```no_run
/// # async fn example(transport: herald::smtp::Transport, email: herald::workflow::render::Email) {
/// use herald::smtp::{SendError, Stage};
/// if let Err(SendError::Rejected { stage: Stage::RcptTo(address), code, .. }) = transport.send(&email, "id@example.org").await {
///     eprintln!("{address} refused with {code}");
/// }
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stage {
    MailFrom,
    RcptTo(String),
    Data,
    EndOfData,
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stage::MailFrom => f.write_str("MAIL FROM"),
            Stage::RcptTo(a) => write!(f, "RCPT TO <{a}>"),
            Stage::Data => f.write_str("DATA"),
            Stage::EndOfData => f.write_str("end of DATA"),
        }
    }
}

/// 421 "service not available, closing transmission channel" and 454
/// "temporary failure" during a session: the server asks to slow down,
/// which is about the sender, not the message.
fn slow_down(code: u16) -> bool {
    matches!(code, 421 | 454)
}

/// The greeting: 2xx, or the server is not taking mail (421: unreachable).
pub(super) async fn greet<S: AsyncRead + AsyncWrite + Unpin>(
    c: &mut SmtpClient<S>,
    addr: &str,
) -> Result<(), SendError> {
    let g = c
        .read()
        .await
        .map_err(|e| SendError::Unreachable(format!("{addr}: no greeting: {e}")))?;
    if (200..300).contains(&g.code) {
        Ok(())
    } else {
        Err(SendError::Unreachable(format!(
            "{addr}: greeted with {}",
            reply_line(&g)
        )))
    }
}

/// What a reply to a command means for the message.
fn judge(r: Response<String>, stage: Stage) -> Result<Response<String>, SendError> {
    if (200..400).contains(&r.code) {
        return Ok(r);
    }
    if slow_down(r.code) {
        return Err(SendError::Throttled {
            stage,
            code: r.code,
            message: reply_text(&r),
        });
    }
    Err(SendError::Rejected {
        stage,
        code: r.code,
        message: reply_text(&r),
    })
}

async fn command<S: AsyncRead + AsyncWrite + Unpin>(
    c: &mut SmtpClient<S>,
    cmd: String,
    stage: Stage,
) -> Result<Response<String>, SendError> {
    match c.cmd(cmd.as_bytes()).await {
        Ok(r) => judge(r, stage),
        Err(e) => Err(SendError::Interrupted(format!("{stage}: {e}"))),
    }
}

pub(super) async fn transaction<S: AsyncRead + AsyncWrite + Unpin>(
    c: &mut SmtpClient<S>,
    env: &Envelope<'_>,
) -> Result<String, SendError> {
    command(c, format!("MAIL FROM:<{}>\r\n", env.from), Stage::MailFrom).await?;
    for to in &env.to {
        command(
            c,
            format!("RCPT TO:<{to}>\r\n"),
            Stage::RcptTo(to.to_string()),
        )
        .await?;
    }
    let r = command(c, "DATA\r\n".into(), Stage::Data).await?;
    if r.code != 354 {
        return Err(SendError::Rejected {
            stage: Stage::Data,
            code: r.code,
            message: reply_text(&r),
        });
    }
    // Until the final "." is out, the server cannot have accepted anything.
    let timeout = c.timeout;
    tokio::time::timeout(timeout, write_stuffed(&mut c.stream, env.body))
        .await
        .map_err(|_| SendError::Interrupted("DATA: timed out sending the message".into()))?
        .map_err(|e| SendError::Interrupted(format!("DATA: {e}")))?;
    // From the final "." on, a broken session may hide an accepted message.
    let end = async {
        c.stream.write_all(b"\r\n.\r\n").await?;
        c.stream.flush().await?;
        c.read()
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))
    };
    match tokio::time::timeout(timeout, end).await {
        Err(_) => Err(SendError::Uncertain(format!(
            "no reply to the end of DATA within {}",
            crate::duration::human(timeout)
        ))),
        Ok(Err(e)) => Err(SendError::Uncertain(format!(
            "the session broke after the end of DATA: {e}"
        ))),
        Ok(Ok(r)) => {
            let r = judge(r, Stage::EndOfData)?;
            Ok(reply_line(&r))
        }
    }
}

/// The body with dot-stuffing (RFC 5321 4.5.2), without the final ".".
async fn write_stuffed<W: AsyncWrite + Unpin>(w: &mut W, message: &[u8]) -> std::io::Result<()> {
    let mut at_line_start = true;
    let mut last = 0;
    for (i, b) in message.iter().enumerate() {
        if *b == b'.' && at_line_start {
            w.write_all(&message[last..i]).await?;
            w.write_all(b".").await?;
            last = i;
        }
        at_line_start = *b == b'\n' || *b == b'\r';
    }
    w.write_all(&message[last..]).await
}
