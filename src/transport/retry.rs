//! Retry decisions: which failures are worth another attempt, and when (capped exponential
//! backoff with full jitter, honouring `Retry-After`).

use std::time::Duration;

/// How one push attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptError {
    /// The connection could not be made.
    Connect(String),
    /// No answer in time.
    Timeout,
    /// The recipient answered with an error status.
    Status {
        code: u16,
        retry_after: Option<Duration>,
    },
    /// The request could not be built or sent for a reason no retry will fix.
    Permanent(String),
}

impl AttemptError {
    /// Connect errors, timeouts, 408, 429 and 5xx are worth retrying; any other 4xx is not.
    pub fn is_retryable(&self) -> bool {
        match self {
            AttemptError::Connect(_) | AttemptError::Timeout => true,
            AttemptError::Status { code, .. } => *code == 408 || *code == 429 || *code >= 500,
            AttemptError::Permanent(_) => false,
        }
    }

    pub fn status_code(&self) -> Option<u16> {
        match self {
            AttemptError::Status { code, .. } => Some(*code),
            _ => None,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            AttemptError::Connect(e) => format!("connection failed: {e}"),
            AttemptError::Timeout => "no answer in time".into(),
            AttemptError::Status { code, .. } => format!("recipient answered {code}"),
            AttemptError::Permanent(e) => e.clone(),
        }
    }
}

/// Backoff settings.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
}

impl Backoff {
    /// The wait before attempt `attempt + 1` after `attempt` failures (1-based): a uniformly
    /// random time in `[0, min(cap, base * 2^(attempt-1))]` ("full jitter"), but never less
    /// than a `Retry-After` the recipient asked for (itself capped).
    pub fn delay(&self, attempt: i64, retry_after: Option<Duration>, unit_random: f64) -> Duration {
        let exp = u32::try_from((attempt - 1).clamp(0, 30)).unwrap_or(30);
        let ceiling = self
            .base
            .saturating_mul(2u32.saturating_pow(exp))
            .min(self.cap);
        let jittered = ceiling.mul_f64(unit_random.clamp(0.0, 1.0));
        match retry_after {
            Some(ra) => jittered.max(ra.min(self.cap)),
            None => jittered,
        }
    }
}

/// A uniform random number in [0, 1) from the system's secure generator.
pub fn unit_random() -> f64 {
    use aws_lc_rs::rand::SecureRandom;
    let mut bytes = [0u8; 8];
    if aws_lc_rs::rand::SystemRandom::new()
        .fill(&mut bytes)
        .is_err()
    {
        return 0.5;
    }
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

/// Reads `Retry-After` as seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: time::OffsetDateTime) -> Option<Duration> {
    if let Ok(secs) = value.trim().parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    let at = time::PrimitiveDateTime::parse(value.trim(), &format)
        .ok()?
        .assume_utc();
    let secs = (at - now).whole_seconds();
    Some(Duration::from_secs(u64::try_from(secs).unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_errors_timeouts_408_429_and_5xx_are_retried_other_4xx_are_not() {
        assert!(AttemptError::Connect("refused".into()).is_retryable());
        assert!(AttemptError::Timeout.is_retryable());
        for code in [408, 429, 500, 502, 503, 504] {
            assert!(
                AttemptError::Status {
                    code,
                    retry_after: None
                }
                .is_retryable(),
                "{code}"
            );
        }
        for code in [400, 401, 403, 404, 409, 413, 415, 422] {
            assert!(
                !AttemptError::Status {
                    code,
                    retry_after: None
                }
                .is_retryable(),
                "{code}"
            );
        }
    }

    #[test]
    fn backoff_grows_exponentially_up_to_the_cap_with_full_jitter() {
        let b = Backoff {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(60),
        };
        assert_eq!(b.delay(1, None, 1.0), Duration::from_secs(1));
        assert_eq!(b.delay(3, None, 1.0), Duration::from_secs(4));
        assert_eq!(b.delay(10, None, 1.0), Duration::from_secs(60));
        assert_eq!(b.delay(3, None, 0.0), Duration::ZERO);
        assert_eq!(b.delay(3, None, 0.5), Duration::from_secs(2));
    }

    #[test]
    fn retry_after_is_honoured_but_capped() {
        let b = Backoff {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(60),
        };
        assert_eq!(
            b.delay(1, Some(Duration::from_secs(30)), 0.1),
            Duration::from_secs(30)
        );
        assert_eq!(
            b.delay(1, Some(Duration::from_secs(3600)), 0.1),
            Duration::from_secs(60)
        );
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = time::macros::datetime!(2026-11-22 10:00:00 UTC);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Sun, 22 Nov 2026 10:00:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn unit_random_is_in_range() {
        for _ in 0..100 {
            let r = unit_random();
            assert!((0.0..1.0).contains(&r));
        }
    }
}
