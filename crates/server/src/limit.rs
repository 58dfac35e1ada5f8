//! Per-client rate limits: a token bucket per token name (or one for all
//! when authentication is off, which only a loopback listener allows).
//! Token names come from the tokens file, so the buckets are bounded.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    /// `per_second` requests a second on average, bursts of twice that.
    pub fn new(per_second: u32) -> RateLimiter {
        let per_second = f64::from(per_second.max(1));
        RateLimiter {
            per_second,
            burst: per_second * 2.0,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// `Ok` when `client` may make a request now; else the whole seconds
    /// to wait before the next one would be let through.
    pub fn admit(&self, client: &str, now: Instant) -> Result<(), u32> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let (tokens, last) = buckets
            .entry(client.to_string())
            .or_insert((self.burst, now));
        let elapsed = now.saturating_duration_since(*last).as_secs_f64();
        *tokens = (*tokens + elapsed * self.per_second).min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            return Ok(());
        }
        let wait = (1.0 - *tokens) / self.per_second;
        Err(wait.ceil().max(1.0) as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_then_the_rate_per_client() {
        let limiter = RateLimiter::new(5);
        let start = Instant::now();
        for _ in 0..10 {
            assert!(
                limiter.admit("node-a", start).is_ok(),
                "a burst of twice the rate"
            );
        }
        assert_eq!(limiter.admit("node-a", start), Err(1));
        assert!(
            limiter.admit("node-b", start).is_ok(),
            "another client has its own bucket"
        );
        let later = start + Duration::from_millis(400);
        assert!(
            limiter.admit("node-a", later).is_ok(),
            "two requests refilled in 0.4 s"
        );
        assert!(limiter.admit("node-a", later).is_ok());
        assert!(limiter.admit("node-a", later).is_err());
    }
}
