//! What the sink records and how it answers: `Reply` (scripted answers to
//! DATA), `Received` (an accepted message), `Outage` (how it is down).

/// How the sink answers the end of one DATA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `250 OK`: the message is recorded.
    Accept,
    /// Any code and text, e.g. `(451, "try later")` or `(550, "no such user")`; not recorded.
    Code(u16, String),
    /// Read the message, then close the socket without a reply; not recorded
    /// (the client cannot know: its outcome is uncertain).
    DropConnection,
    /// Record the message, then close without a reply: the server has it,
    /// the client cannot know.
    AcceptThenDrop,
    /// Never reply (the client's timeout decides); not recorded.
    Stall,
    /// Wait this long, then accept (a slow server); recorded when it answers.
    Delay(std::time::Duration),
}

/// One accepted message.
#[derive(Debug, Clone)]
pub struct Received {
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    pub data: String,
    /// Whether the session was encrypted when the message was accepted.
    pub tls: bool,
    /// When the sink admitted its MAIL FROM (the moment an enforced rate
    /// counted it).
    pub at: std::time::Instant,
    /// Whether the sink's 250 for it was written to the client. A copy
    /// without one (dropped after the message) leaves the client uncertain:
    /// its resend is the one duplicate the sink itself causes.
    pub replied: bool,
}

impl Received {
    /// The first header named `name` (case-insensitive), unfolded.
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next().unwrap_or("");
        let mut out: Option<String> = None;
        for line in head.split("\r\n") {
            if line.starts_with([' ', '\t']) {
                if let Some(v) = out.as_mut() {
                    v.push(' ');
                    v.push_str(line.trim());
                }
                continue;
            }
            if out.is_some() {
                break;
            }
            if let Some((k, v)) = line.split_once(':')
                && k.eq_ignore_ascii_case(name)
            {
                out = Some(v.trim().to_string());
            }
        }
        out
    }

    pub fn message_id(&self) -> String {
        self.header("Message-ID").unwrap_or_default()
    }

    /// The whole message with quoted-printable undone (soft line breaks
    /// joined, `=XX` decoded), for asserting on body text that long lines
    /// would otherwise split.
    pub fn decoded(&self) -> String {
        let joined = self.data.replace("=\r\n", "");
        let bytes = joined.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match (bytes[i], hex) {
                (b'=', Some(b)) => {
                    out.push(b);
                    i += 3;
                }
                (c, _) => {
                    out.push(c);
                    i += 1;
                }
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// How the sink is down, when it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outage {
    /// Accept connections and close them at once.
    Drop,
    /// Greet with `421 4.3.2 Service not available` and close.
    Greet421,
    /// Stop listening: connections are refused.
    Refuse,
    /// Accept connections and never greet (a blackholed or hung server, a
    /// TLS port spoken to in plain text): the client's connect timeout.
    Silent,
}
