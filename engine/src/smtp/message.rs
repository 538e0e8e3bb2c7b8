//! The RFC 5322 message of an email, built with mail-builder (which quotes
//! display names or writes encoded words as needed).
use mail_send::mail_builder::MessageBuilder;
use mail_send::mail_builder::headers::address::Address;
use mail_send::mail_builder::headers::raw::Raw;

use super::SendError;
use crate::workflow::address::Mailbox;
use crate::workflow::render::Email;

fn address(m: &Mailbox) -> Address<'static> {
    Address::new_address(m.name.clone(), m.address.clone())
}

/// The RFC 5322 message. Bcc is not written (envelope only).
///
/// ```
/// use herald::workflow::{Mailbox, render::Email};
/// let mb = |a: &str| Mailbox { name: None, address: a.into() };
/// # let email = Email { index: 0, from: mb("noreply@example.org"), to: vec![mb("ada@example.com")],
/// #     cc: vec![], bcc: vec![mb("audit@example.org")], reply_to: vec![],
/// #     subject: "Welcome".into(), text: Some("Hi Ada".into()), html: None, headers: vec![] };
/// let raw = herald::smtp::build(&email, "0196f0c2.welcome.0@example.org")?;
/// let text = String::from_utf8(raw)?;
/// assert!(text.contains("Subject: Welcome") && !text.contains("audit@"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn build(email: &Email, message_id: &str) -> Result<Vec<u8>, SendError> {
    let list = |v: &[Mailbox]| Address::new_list(v.iter().map(address).collect());
    let mut m = MessageBuilder::new()
        .from(address(&email.from))
        .to(list(&email.to))
        .subject(email.subject.clone())
        .message_id(message_id.to_string())
        .date(chrono::Utc::now().timestamp());
    if !email.cc.is_empty() {
        m = m.cc(list(&email.cc));
    }
    if !email.reply_to.is_empty() {
        m = m.reply_to(list(&email.reply_to));
    }
    for (k, v) in &email.headers {
        m = m.header(k.clone(), Raw::new(v.clone()));
    }
    if let Some(t) = &email.text {
        m = m.text_body(t.clone());
    }
    if let Some(h) = &email.html {
        m = m.html_body(h.clone());
    }
    m.write_to_vec()
        .map_err(|e| SendError::Build(e.to_string()))
}
