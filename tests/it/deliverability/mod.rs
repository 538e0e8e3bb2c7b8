//! Deliverability: shared rate limits and servers that ask to slow down,
//! hard bounces and suppression, one-click unsubscribe, digests, delays and
//! send windows, locales. Real SMTP sink, real NATS, both databases.

mod locales;
mod rate_limits;
mod suppression;
mod timing;

const SHOP: &str = r#"
name: receipt
on: { subjects: [events.shop.>] }
email:
  from: shop@example.com
  to: "{{event.email}}"
  subject: "Receipt {{event.n}}"
  text: "Thank you."
"#;

const NEWSLETTER: &str = r#"
name: news
on: { subjects: [events.shop.>] }
category: newsletters
email:
  from: shop@example.com
  to: "{{event.email}}"
  subject: "News {{event.n}}"
  text: "This week."
"#;
