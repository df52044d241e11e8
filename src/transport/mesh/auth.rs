//! The `NHSMESH` authorisation header:
//!
//! ```text
//! Authorization: NHSMESH {mailbox}:{nonce}:{nonce_count}:{yyyyMMddHHmm}:{hmac}
//!   hmac = lowercase hex HMAC-SHA256(key = the environment's shared secret,
//!          msg = "{mailbox}:{nonce}:{nonce_count}:{password}:{yyyyMMddHHmm}")
//! ```
//!
//! The timestamp is UTC; the nonce is a UUID fixed for one [`MeshAuth`] and the count increases
//! with every header it makes, so no two requests of a client carry the same token (live MESH
//! refuses a duplicated one).

use std::sync::atomic::{AtomicU64, Ordering};

use aws_lc_rs::hmac;
use time::OffsetDateTime;

/// The `NHSMESH` header for one request: pure, so it can be checked against a fixed vector.
pub fn authorization(
    mailbox: &str,
    password: &str,
    shared_key: &str,
    nonce: &str,
    nonce_count: u64,
    timestamp: &str,
) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, shared_key.as_bytes());
    let message = format!("{mailbox}:{nonce}:{nonce_count}:{password}:{timestamp}");
    let tag = hmac::sign(&key, message.as_bytes());
    format!(
        "NHSMESH {mailbox}:{nonce}:{nonce_count}:{timestamp}:{}",
        hex::encode(tag.as_ref())
    )
}

/// `yyyyMMddHHmm` in UTC.
pub fn timestamp(now: OffsetDateTime) -> String {
    let now = now.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}{:02}{:02}{:02}{:02}",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute()
    )
}

/// A mailbox's credentials and its nonce counter. `Debug` shows the mailbox only.
pub struct MeshAuth {
    mailbox: String,
    password: String,
    shared_key: String,
    nonce: String,
    count: AtomicU64,
}

impl std::fmt::Debug for MeshAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeshAuth")
            .field("mailbox", &self.mailbox)
            .finish_non_exhaustive()
    }
}

impl MeshAuth {
    pub fn new(mailbox: &str, password: &str, shared_key: &str) -> MeshAuth {
        MeshAuth {
            mailbox: mailbox.to_ascii_uppercase(),
            password: password.to_string(),
            shared_key: shared_key.to_string(),
            nonce: uuid::Uuid::new_v4().to_string(),
            count: AtomicU64::new(0),
        }
    }

    pub fn mailbox(&self) -> &str {
        &self.mailbox
    }

    /// A fresh header: the next nonce count, the current minute.
    pub fn header(&self, now: OffsetDateTime) -> String {
        let count = self.count.fetch_add(1, Ordering::Relaxed) + 1;
        authorization(
            &self.mailbox,
            &self.password,
            &self.shared_key,
            &self.nonce,
            count,
            &timestamp(now),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vector, computed outside Rust:
    /// ```sh
    /// printf '%s' 'X26ABC1:3f2504e0-4f89-41d3-9a0c-0305e82c3301:1:password:202611301200' \
    ///   | openssl dgst -sha256 -hmac TestKey
    /// # SHA2-256(stdin)= e582f383b496137b2f23a17f30e74736328ec0d11616e2472f9bf307704623c3
    /// ```
    /// (and the same with Python's `hmac.new(b"TestKey", msg, hashlib.sha256).hexdigest()`).
    #[test]
    fn the_header_matches_a_vector_computed_with_openssl() {
        let header = authorization(
            "X26ABC1",
            "password",
            "TestKey",
            "3f2504e0-4f89-41d3-9a0c-0305e82c3301",
            1,
            "202611301200",
        );
        assert_eq!(
            header,
            "NHSMESH X26ABC1:3f2504e0-4f89-41d3-9a0c-0305e82c3301:1:202611301200:\
             e582f383b496137b2f23a17f30e74736328ec0d11616e2472f9bf307704623c3"
        );
    }

    #[test]
    fn the_timestamp_is_utc_to_the_minute() {
        let at = time::macros::datetime!(2026-11-30 23:05:59 -01:00);
        assert_eq!(timestamp(at), "202612010005");
    }

    #[test]
    fn the_count_increases_and_the_nonce_stays() {
        let auth = MeshAuth::new("x26abc1", "password", "TestKey");
        let now = time::macros::datetime!(2026-11-30 12:00 UTC);
        let first = auth.header(now);
        let second = auth.header(now);
        let parts = |h: &str| {
            h.trim_start_matches("NHSMESH ")
                .split(':')
                .map(str::to_string)
                .collect::<Vec<_>>()
        };
        let (a, b) = (parts(&first), parts(&second));
        assert_eq!(a[0], "X26ABC1");
        assert_eq!(a[1], b[1], "one nonce per client");
        assert!(uuid::Uuid::parse_str(&a[1]).is_ok());
        assert_eq!((a[2].as_str(), b[2].as_str()), ("1", "2"));
        assert_ne!(a[4], b[4]);
        assert_eq!(
            first,
            authorization("X26ABC1", "password", "TestKey", &a[1], 1, "202611301200")
        );
    }
}
