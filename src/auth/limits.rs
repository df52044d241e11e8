//! Abuse resistance: token-bucket rate limits (per source IP address before authentication, per
//! client after it) and the sampling of failed authentications for the audit log, so that a
//! flood of bad requests costs the log one entry per client or address per interval.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::RateLimitSettings;

/// How long a refused caller should wait before trying again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub Duration);

impl RetryAfter {
    /// Whole seconds for a `Retry-After` header: rounded up, at least one.
    pub fn seconds(&self) -> u64 {
        let d = self.0;
        (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
    }
}

fn quota(per_second: u32, burst: u32) -> Quota {
    let rate = NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
    Quota::per_second(rate).allow_burst(burst)
}

/// The gateway's rate limiters.
pub struct RateLimits {
    per_client: DefaultKeyedRateLimiter<String>,
    per_ip: DefaultKeyedRateLimiter<IpAddr>,
    clock: DefaultClock,
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits")
            .field("clients", &self.per_client.len())
            .field("addresses", &self.per_ip.len())
            .finish()
    }
}

impl RateLimits {
    pub fn new(settings: &RateLimitSettings) -> RateLimits {
        RateLimits {
            per_client: RateLimiter::keyed(quota(
                settings.per_client_per_second,
                settings.per_client_burst,
            )),
            per_ip: RateLimiter::keyed(quota(settings.per_ip_per_second, settings.per_ip_burst)),
            clock: DefaultClock::default(),
        }
    }

    /// Takes one request from an authenticated client's bucket.
    pub fn check_client(&self, client_id: &str) -> Result<(), RetryAfter> {
        self.per_client
            .check_key(&client_id.to_string())
            .map_err(|not_until| RetryAfter(not_until.wait_time_from(self.clock.now())))
    }

    /// Takes one request (a token request, or a failed authentication) from a source address's
    /// bucket.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), RetryAfter> {
        self.per_ip
            .check_key(&ip)
            .map_err(|not_until| RetryAfter(not_until.wait_time_from(self.clock.now())))
    }

    /// Forgets the buckets that are full again, so that the maps do not grow without bound.
    pub fn forget_idle(&self) {
        self.per_client.retain_recent();
        self.per_client.shrink_to_fit();
        self.per_ip.retain_recent();
        self.per_ip.shrink_to_fit();
    }
}

/// Longest unverified text (a client id or a reason quoting the request) kept in an audit entry.
pub const MAX_UNVERIFIED_CHARS: usize = 64;

/// `text` cut to at most `max` characters (an ellipsis marks a cut).
pub fn bounded(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// What one failed authentication would put in the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureNote {
    pub client_id: Option<String>,
    pub endpoint: String,
    pub reason: String,
    /// The source address, when known.
    pub source: Option<String>,
}

/// An audit entry to write: the failure it describes and how many failures it stands for
/// (itself and those folded into it since the previous entry for the same key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampledFailure {
    pub note: FailureNote,
    pub failures: u64,
}

#[derive(Debug)]
struct Window {
    /// When the last entry for this key was written (unix seconds).
    opened: i64,
    /// Failures since then, not yet written.
    folded: u64,
    /// The latest of them.
    last: Option<FailureNote>,
}

/// Most keys tracked at once; past this, new keys share one window.
const MAX_KEYS: usize = 10_000;
const OVERFLOW_KEY: &str = "*";

/// Samples failed authentications: per key (a registered client, or a source address), the first
/// failure of an interval is written at once; the rest are folded into a count written with the
/// next entry for that key ([`FailureSampler::due`] writes those still waiting when their interval
/// ends).
#[derive(Debug)]
pub struct FailureSampler {
    interval_secs: i64,
    windows: Mutex<HashMap<String, Window>>,
}

impl FailureSampler {
    pub fn new(interval_secs: u64) -> FailureSampler {
        FailureSampler {
            interval_secs: i64::try_from(interval_secs.max(1)).unwrap_or(i64::MAX),
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Notes one failure for `key` at `now` (unix seconds); returns the entry to write now, if
    /// any.
    pub fn note(&self, key: &str, note: FailureNote, now: i64) -> Option<SampledFailure> {
        let mut windows = self
            .windows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = if windows.len() >= MAX_KEYS && !windows.contains_key(key) {
            OVERFLOW_KEY
        } else {
            key
        };
        match windows.get_mut(key) {
            Some(w) if now < w.opened.saturating_add(self.interval_secs) => {
                w.folded += 1;
                w.last = Some(note);
                None
            }
            Some(w) => {
                let failures = w.folded + 1;
                *w = Window {
                    opened: now,
                    folded: 0,
                    last: None,
                };
                Some(SampledFailure { note, failures })
            }
            None => {
                windows.insert(
                    key.to_string(),
                    Window {
                        opened: now,
                        folded: 0,
                        last: None,
                    },
                );
                Some(SampledFailure { note, failures: 1 })
            }
        }
    }

    /// The entries to write for failures still folded whose interval has ended at `now` (every
    /// folded failure when `all`, at shutdown). Forgets the keys with nothing waiting.
    pub fn due(&self, now: i64, all: bool) -> Vec<SampledFailure> {
        let mut windows = self
            .windows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut out = Vec::new();
        windows.retain(|_, w| {
            let ended = now >= w.opened.saturating_add(self.interval_secs);
            if w.folded > 0
                && (all || ended)
                && let Some(note) = w.last.take()
            {
                out.push(SampledFailure {
                    note,
                    failures: w.folded,
                });
                w.opened = now;
                w.folded = 0;
                return true;
            }
            !ended
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(reason: &str) -> FailureNote {
        FailureNote {
            client_id: None,
            endpoint: "POST /oauth2/token".into(),
            reason: reason.into(),
            source: Some("127.0.0.1".into()),
        }
    }

    #[test]
    fn the_first_failure_is_written_at_once_and_the_rest_are_folded_into_the_next_entry() {
        let sampler = FailureSampler::new(60);
        let first = sampler.note("ip:127.0.0.1", note("a"), 1000);
        assert_eq!(first.map(|s| s.failures), Some(1));
        for i in 0..199 {
            assert_eq!(sampler.note("ip:127.0.0.1", note("b"), 1001 + i % 50), None);
        }
        // Another key has its own window.
        assert!(sampler.note("client:gp", note("c"), 1001).is_some());
        assert!(
            sampler.due(1030, false).is_empty(),
            "the interval is running"
        );
        // The next failure after the interval carries the count folded into it.
        let next = sampler.note("ip:127.0.0.1", note("d"), 1060).unwrap();
        assert_eq!(next.failures, 200);
        assert_eq!(next.note.reason, "d");
    }

    #[test]
    fn folded_failures_are_written_when_their_interval_ends_or_at_shutdown() {
        let sampler = FailureSampler::new(60);
        sampler.note("k", note("a"), 0);
        sampler.note("k", note("b"), 1);
        sampler.note("k", note("c"), 2);
        assert!(sampler.due(30, false).is_empty());
        let due = sampler.due(60, false);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].failures, 2);
        assert_eq!(due[0].note.reason, "c");
        assert!(
            sampler.due(200, false).is_empty(),
            "nothing is written twice"
        );
        sampler.note("k", note("e"), 201);
        sampler.note("k", note("f"), 202);
        let at_stop = sampler.due(203, true);
        assert_eq!(at_stop.iter().map(|s| s.failures).sum::<u64>(), 1);
    }

    #[test]
    fn unverified_text_is_bounded() {
        let long = "x".repeat(10_000);
        let cut = bounded(&long, MAX_UNVERIFIED_CHARS);
        assert_eq!(cut.chars().count(), MAX_UNVERIFIED_CHARS);
        assert_eq!(bounded("prison", MAX_UNVERIFIED_CHARS), "prison");
    }

    #[test]
    fn a_bucket_refuses_past_its_burst_and_says_how_long_to_wait() {
        let limits = RateLimits::new(&RateLimitSettings {
            per_client_per_second: 1,
            per_client_burst: 3,
            per_ip_per_second: 1,
            per_ip_burst: 2,
            failure_audit_interval_secs: 60,
        });
        for _ in 0..3 {
            assert!(limits.check_client("gp").is_ok());
        }
        let wait = limits.check_client("gp").unwrap_err();
        assert!(wait.seconds() >= 1);
        assert!(
            limits.check_client("prison").is_ok(),
            "each client its own bucket"
        );
        let ip = IpAddr::from([127, 0, 0, 1]);
        assert!(limits.check_ip(ip).is_ok());
        assert!(limits.check_ip(ip).is_ok());
        assert!(limits.check_ip(ip).is_err());
    }
}
