//! One-click unsubscribe (RFC 8058, RFC 2369). An email of a workflow with a
//! `category` carries `List-Unsubscribe: <{public_url}/u/{token}>` (and a
//! mailto when one is configured) and `List-Unsubscribe-Post:
//! List-Unsubscribe=One-Click`. The token is the recipient and the category,
//! signed with HMAC-SHA256 under `--unsubscribe-secret`: only Herald can make
//! one, so a forged or altered token is refused and nothing is recorded.
//! Only a POST unsubscribes (link scanners follow GETs); it is idempotent.
//!
//! ```no_run
//! use herald::unsubscribe::Unsubscribe;
//! let u = Unsubscribe::new("0123456789abcdef-signing-key", "https://mail.example.org", None)?;
//! let token = u.token("ada@example.com", "newsletter");
//! assert!(u.verify(&token).is_ok());
//! assert!(u.verify("forged").is_err());
//! # Ok::<(), herald::error::InvalidValue>(())
//! ```
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use hmac::{Hmac, KeyInit, Mac};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, Statement, Value};
use sha2::Sha256;

/// The signing key and where links point.
///
/// ```
/// use herald::unsubscribe::Unsubscribe;
/// let u = Unsubscribe::new("0123456789abcdef-signing-key", "https://mail.example.org", None)?;
/// let who = u.verify(&u.token("ada@example.com", "newsletter")).unwrap();
/// assert_eq!(who.category, "newsletter");
/// # Ok::<(), herald::error::InvalidValue>(())
/// ```
#[derive(Clone)]
pub struct Unsubscribe {
    /// The keyed MAC, ready: cloned for each token.
    key: HmacSha256,
    /// The public base URL of the `--http` listener (`https://mail.example.org`).
    public_url: String,
    /// An address for RFC 2369's mailto form, if the operator reads one.
    mailto: Option<String>,
}

impl std::fmt::Debug for Unsubscribe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret.
        write!(f, "Unsubscribe({})", self.public_url)
    }
}

/// Why a token was refused (HTTP 400; nothing is recorded).
///
/// ```
/// use herald::unsubscribe::Unsubscribe;
/// let u = Unsubscribe::new("0123456789abcdef-signing-key", "https://mail.example.org", None)?;
/// let err = u.verify("not-a-token").unwrap_err();
/// assert_eq!(err.to_string(), "invalid unsubscribe link: malformed");
/// # Ok::<(), herald::error::InvalidValue>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid unsubscribe link: {0}")]
pub struct BadToken(&'static str);

/// What a valid token says.
///
/// ```
/// use herald::unsubscribe::{Subscriber, Unsubscribe};
/// let u = Unsubscribe::new("0123456789abcdef-signing-key", "https://mail.example.org", None)?;
/// let s = u.verify(&u.token("ada@example.com", "digest")).unwrap();
/// assert_eq!(s, Subscriber { address: "ada@example.com".into(), category: "digest".into() });
/// # Ok::<(), herald::error::InvalidValue>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscriber {
    pub address: String,
    pub category: String,
}

type HmacSha256 = Hmac<Sha256>;

impl Unsubscribe {
    /// `secret` must be at least 16 bytes; `public_url` an http(s) URL.
    ///
    /// ```
    /// use herald::unsubscribe::Unsubscribe;
    /// let u = Unsubscribe::new("0123456789abcdef-signing-key", "https://mail.example.org/", Some("unsubscribe@example.org".into()));
    /// assert!(u.is_ok());
    /// assert!(Unsubscribe::new("short", "https://mail.example.org", None).is_err());
    /// ```
    pub fn new(
        secret: &str,
        public_url: &str,
        mailto: Option<String>,
    ) -> Result<Unsubscribe, crate::error::InvalidValue> {
        Self::build(secret, public_url, mailto).map_err(crate::error::InvalidValue)
    }

    fn build(
        secret: &str,
        public_url: &str,
        mailto: Option<String>,
    ) -> Result<Unsubscribe, String> {
        if secret.len() < 16 {
            return Err("--unsubscribe-secret must be at least 16 characters".into());
        }
        let u =
            url::Url::parse(public_url).map_err(|e| format!("--public-url {public_url:?}: {e}"))?;
        if !matches!(u.scheme(), "http" | "https") {
            return Err(format!("--public-url {public_url:?} must be http(s)://"));
        }
        let key = <HmacSha256 as KeyInit>::new_from_slice(secret.as_bytes())
            .map_err(|e| format!("--unsubscribe-secret: {e}"))?;
        Ok(Unsubscribe {
            key,
            public_url: public_url.trim_end_matches('/').to_string(),
            mailto,
        })
    }

    fn mac(&self, body: &[u8]) -> HmacSha256 {
        let mut m = self.key.clone();
        m.update(body);
        m
    }

    /// The token for `address` and `category`: `base64url(body).base64url(mac)`.
    ///
    /// ```
    /// use herald::unsubscribe::Unsubscribe;
    /// let u = Unsubscribe::new("0123456789abcdef-signing-key", "https://mail.example.org", None)?;
    /// let link = format!("https://mail.example.org/u/{}", u.token("ada@example.com", "newsletter"));
    /// # Ok::<(), herald::error::InvalidValue>(())
    /// ```
    pub fn token(&self, address: &str, category: &str) -> String {
        let body = format!("v1\n{}\n{category}", address.trim().to_ascii_lowercase());
        let tag = self.mac(body.as_bytes()).finalize().into_bytes();
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(body.as_bytes()),
            URL_SAFE_NO_PAD.encode(&tag[..])
        )
    }

    /// Check a token's signature and read it.
    ///
    /// ```
    /// use herald::unsubscribe::Unsubscribe;
    /// let u = Unsubscribe::new("0123456789abcdef-signing-key", "https://mail.example.org", None)?;
    /// let s = u.verify(&u.token("Ada@Example.com", "newsletter")).unwrap();
    /// assert_eq!(s.address, "ada@example.com");
    /// assert!(u.verify("forged.token").is_err());
    /// # Ok::<(), herald::error::InvalidValue>(())
    /// ```
    pub fn verify(&self, token: &str) -> Result<Subscriber, BadToken> {
        if token.len() > 2048 {
            return Err(BadToken("too long"));
        }
        let (body, tag) = token.split_once('.').ok_or(BadToken("malformed"))?;
        let body = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| BadToken("malformed"))?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| BadToken("malformed"))?;
        self.mac(&body)
            .verify_slice(&tag)
            .map_err(|_| BadToken("signature does not match"))?;
        let text = String::from_utf8(body).map_err(|_| BadToken("malformed"))?;
        let mut parts = text.split('\n');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some("v1"), Some(address), Some(category), None) => Ok(Subscriber {
                address: address.to_string(),
                category: category.to_string(),
            }),
            _ => Err(BadToken("unknown version")),
        }
    }

    /// The headers of an email of `category` to `address`.
    ///
    /// ```
    /// use herald::unsubscribe::Unsubscribe;
    /// let u = Unsubscribe::new("0123456789abcdef-signing-key", "https://mail.example.org", None)?;
    /// let h = u.headers("ada@example.com", "newsletter");
    /// assert_eq!(h[1], ("List-Unsubscribe-Post".to_string(), "List-Unsubscribe=One-Click".to_string()));
    /// # Ok::<(), herald::error::InvalidValue>(())
    /// ```
    pub fn headers(&self, address: &str, category: &str) -> Vec<(String, String)> {
        let token = self.token(address, category);
        let mut list = format!("<{}/u/{token}>", self.public_url);
        if let Some(m) = &self.mailto {
            list.push_str(&format!(", <mailto:{m}?subject=unsubscribe%20{token}>"));
        }
        vec![
            ("List-Unsubscribe".into(), list),
            (
                "List-Unsubscribe-Post".into(),
                "List-Unsubscribe=One-Click".into(),
            ),
        ]
    }
}

use crate::db::ph;

/// Record that `s.address` wants no more mail of `s.category`
/// (idempotent); true when it is new.
///
/// ```no_run
/// # async fn example(u: herald::unsubscribe::Unsubscribe, token: &str) -> Result<(), Box<dyn std::error::Error>> {
/// # let db = herald::db::connect("sqlite://herald.db").await?;
/// let who = u.verify(token)?;
/// herald::unsubscribe::record(&db, &who).await?;
/// # Ok(()) }
/// ```
pub async fn record(db: &DatabaseConnection, s: &Subscriber) -> Result<bool, DbErr> {
    let b = db.get_database_backend();
    let sql = format!(
        "INSERT INTO herald_unsubscribes (address, category, created_at) VALUES ({}, {}, {}) \
         ON CONFLICT (address, category) DO NOTHING",
        ph(b, 1),
        ph(b, 2),
        ph(b, 3)
    );
    let values: Vec<Value> = vec![
        s.address.to_ascii_lowercase().into(),
        s.category.as_str().into(),
        Utc::now().into(),
    ];
    Ok(db
        .execute_raw(Statement::from_sql_and_values(b, sql, values))
        .await?
        .rows_affected()
        > 0)
}

/// One recorded unsubscribe.
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// # let db = herald::db::connect("sqlite://herald.db").await?;
/// for u in herald::unsubscribe::list(&db, Some("newsletter")).await? {
///     println!("{} left {} on {}", u.address, u.category, u.created_at);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Unsubscribed {
    pub address: String,
    pub category: String,
    pub created_at: chrono::DateTime<Utc>,
}

/// Every unsubscribe (of one category, if given), oldest first.
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// # let db = herald::db::connect("sqlite://herald.db").await?;
/// let all = herald::unsubscribe::list(&db, None).await?;
/// println!("{} unsubscribes", all.len());
/// # Ok(()) }
/// ```
pub async fn list(
    db: &DatabaseConnection,
    category: Option<&str>,
) -> Result<Vec<Unsubscribed>, DbErr> {
    let b = db.get_database_backend();
    let (filter, values): (String, Vec<Value>) = match category {
        Some(c) => (format!(" WHERE category = {}", ph(b, 1)), vec![c.into()]),
        None => (String::new(), vec![]),
    };
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            b,
            format!("SELECT address, category, created_at FROM herald_unsubscribes{filter} ORDER BY created_at, address"),
            values,
        ))
        .await?;
    rows.iter()
        .map(|r| {
            Ok(Unsubscribed {
                address: r.try_get("", "address")?,
                category: r.try_get("", "category")?,
                created_at: r.try_get("", "created_at")?,
            })
        })
        .collect()
}

/// Subscribe `address` to `category` again (the recipient asked the
/// operator); true when it was unsubscribed.
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// # let db = herald::db::connect("sqlite://herald.db").await?;
/// herald::unsubscribe::remove(&db, "ada@example.com", "newsletter").await?;
/// # Ok(()) }
/// ```
pub async fn remove(db: &DatabaseConnection, address: &str, category: &str) -> Result<bool, DbErr> {
    let b = db.get_database_backend();
    let sql = format!(
        "DELETE FROM herald_unsubscribes WHERE address = {} AND category = {}",
        ph(b, 1),
        ph(b, 2)
    );
    let values: Vec<Value> = vec![address.trim().to_ascii_lowercase().into(), category.into()];
    Ok(db
        .execute_raw(Statement::from_sql_and_values(b, sql, values))
        .await?
        .rows_affected()
        > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u() -> Unsubscribe {
        Unsubscribe::new("0123456789abcdef-secret", "https://mail.example.org/", None).unwrap()
    }

    #[test]
    fn tokens_round_trip_and_forgeries_are_refused() {
        let t = u().token("Ada@Example.com", "campaigns");
        assert_eq!(
            u().verify(&t).unwrap(),
            Subscriber {
                address: "ada@example.com".into(),
                category: "campaigns".into()
            }
        );
        // Another secret, an altered body, garbage.
        let other = Unsubscribe::new("another-secret-of-16", "https://x.example", None).unwrap();
        assert!(other.verify(&t).is_err());
        let (body, tag) = t.split_once('.').unwrap();
        let forged_body = URL_SAFE_NO_PAD.encode(b"v1\nmallory@example.com\ncampaigns");
        assert!(u().verify(&format!("{forged_body}.{tag}")).is_err());
        assert!(u().verify(body).is_err());
        assert!(u().verify("").is_err());
        assert!(u().verify("a.b.c").is_err());
        assert!(u().verify(&"x".repeat(5000)).is_err());
    }

    #[test]
    fn headers_point_at_the_public_url() {
        let h = u().headers("ada@example.com", "campaigns");
        assert!(h[0].1.starts_with("<https://mail.example.org/u/"), "{h:?}");
        assert_eq!(
            h[1],
            (
                "List-Unsubscribe-Post".into(),
                "List-Unsubscribe=One-Click".into()
            )
        );
        assert!(Unsubscribe::new("short", "https://x", None).is_err());
        assert!(Unsubscribe::new("0123456789abcdef", "ftp://x", None).is_err());
    }
}
