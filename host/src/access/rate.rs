//! Per-key request rates: a token bucket per key id (the ingest key ships in every copy of the
//! mini-program, so one leaked or buggy sender must not take the whole ingest capacity).
//!
//! Hand-written rather than `governor`: one bucket per key behind one mutex is all this needs,
//! and the check is a few arithmetic operations per request.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct RateLimiter {
    /// Requests per second a key may keep up; 0 means no limit.
    per_second: f64,
    /// Requests a key may send at once after a quiet spell.
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Buckets at most: a full table is cleared (every key starts with a full burst again) rather
/// than grown without bound.
const MAX_BUCKETS: usize = 100_000;

impl RateLimiter {
    /// `per_second` requests a second per key, with bursts of up to `burst` (0: no limit).
    pub fn new(per_second: f64, burst: f64) -> RateLimiter {
        RateLimiter {
            per_second,
            burst: burst.max(1.0),
            buckets: Mutex::default(),
        }
    }

    /// `Ok` when `key` may send a request now, else how long until it may.
    pub fn check(&self, key: &str, now: Instant) -> Result<(), Duration> {
        if self.per_second <= 0.0 {
            return Ok(());
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(key) {
            buckets.clear();
        }
        let bucket = buckets.entry(key.to_string()).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let refill = now.saturating_duration_since(bucket.at).as_secs_f64() * self.per_second;
        bucket.tokens = (bucket.tokens + refill).min(self.burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - bucket.tokens) / self.per_second,
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate_per_key() {
        let limiter = RateLimiter::new(10.0, 3.0);
        let t = Instant::now();
        for _ in 0..3 {
            assert!(limiter.check("a", t).is_ok());
        }
        let wait = limiter.check("a", t).unwrap_err();
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-9, "{wait:?}");
        // Another key has its own bucket.
        assert!(limiter.check("b", t).is_ok());
        // 0.25 s later: 2.5 tokens back, two requests pass.
        let later = t + Duration::from_millis(250);
        assert!(limiter.check("a", later).is_ok());
        assert!(limiter.check("a", later).is_ok());
        assert!(limiter.check("a", later).is_err());
        let unlimited = RateLimiter::new(0.0, 0.0);
        for _ in 0..1000 {
            assert!(unlimited.check("a", t).is_ok());
        }
    }
}
