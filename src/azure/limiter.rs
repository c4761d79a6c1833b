//! Client-side token buckets per (tenant, subscription, operation class), mirroring ARM's own
//! buckets and fed by its `x-ms-ratelimit-remaining-*` and `Retry-After` headers, so a burst is
//! paced at the limit instead of turning into a 429 storm.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpClass {
    Read,
    Write,
    Delete,
}

impl OpClass {
    pub fn of(method: &str) -> Self {
        match method {
            "GET" | "HEAD" => OpClass::Read,
            "DELETE" => OpClass::Delete,
            _ => OpClass::Write,
        }
    }

    /// The ARM header that reports what is left of this bucket.
    pub fn remaining_header(self) -> &'static str {
        match self {
            OpClass::Read => "x-ms-ratelimit-remaining-subscription-reads",
            OpClass::Write => "x-ms-ratelimit-remaining-subscription-writes",
            OpClass::Delete => "x-ms-ratelimit-remaining-subscription-deletes",
        }
    }
}

/// Bucket size and refill rate (per second).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BucketSpec {
    pub capacity: f64,
    pub per_second: f64,
}

impl std::str::FromStr for BucketSpec {
    type Err = String;
    /// `CAPACITY:PER_SECOND`, e.g. `200:10`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (c, r) = s
            .split_once(':')
            .ok_or_else(|| format!("{s:?}: expected CAPACITY:PER_SECOND, e.g. 200:10"))?;
        let capacity: f64 = c.parse().map_err(|_| format!("{s:?}: bad capacity"))?;
        let per_second: f64 = r.parse().map_err(|_| format!("{s:?}: bad rate"))?;
        if capacity < 1.0 || per_second <= 0.0 {
            return Err(format!("{s:?}: capacity must be >= 1 and rate > 0"));
        }
        Ok(BucketSpec {
            capacity,
            per_second,
        })
    }
}

#[derive(Debug, Clone, Copy)]
pub struct LimiterConfig {
    pub read: BucketSpec,
    pub write: BucketSpec,
    pub delete: BucketSpec,
}

impl Default for LimiterConfig {
    /// ARM's documented per-principal subscription buckets.
    fn default() -> Self {
        Self {
            read: BucketSpec {
                capacity: 250.0,
                per_second: 25.0,
            },
            write: BucketSpec {
                capacity: 200.0,
                per_second: 10.0,
            },
            delete: BucketSpec {
                capacity: 200.0,
                per_second: 10.0,
            },
        }
    }
}

/// One bucket. Reservations may drive `tokens` negative: a caller that takes the last token's
/// successor simply waits its turn, which keeps callers in order and the pace exact.
#[derive(Debug, Clone)]
pub struct Bucket {
    spec: BucketSpec,
    tokens: f64,
    last: Instant,
    blocked_until: Option<Instant>,
}

impl Bucket {
    pub fn new(spec: BucketSpec, now: Instant) -> Self {
        Self {
            spec,
            tokens: spec.capacity,
            last: now,
            blocked_until: None,
        }
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + dt * self.spec.per_second).min(self.spec.capacity);
        self.last = now;
    }

    /// Reserve one token; returns how long the caller must wait before sending.
    pub fn reserve(&mut self, now: Instant) -> Duration {
        self.refill(now);
        self.tokens -= 1.0;
        let pace = if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.spec.per_second)
        };
        let blocked = self
            .blocked_until
            .map(|t| t.saturating_duration_since(now))
            .unwrap_or_default();
        pace.max(blocked)
    }

    /// Azure told us how much is left: never believe we have more than that.
    pub fn observe_remaining(&mut self, remaining: f64, now: Instant) {
        self.refill(now);
        if remaining < self.tokens {
            self.tokens = remaining;
        }
    }

    /// A 429: nobody sends on this bucket before `retry_after` has passed.
    pub fn block_for(&mut self, retry_after: Duration, now: Instant) {
        // A nonsense Retry-After (years) must not overflow the clock: never block past the cap.
        let until = now + retry_after.min(MAX_RETRY_AFTER);
        if self.blocked_until.is_none_or(|t| t < until) {
            self.blocked_until = Some(until);
        }
        self.refill(now);
        self.tokens = self.tokens.min(0.0);
    }

    pub fn tokens(&self) -> f64 {
        self.tokens
    }
}

/// The longest any answer may make a bucket wait. Azure's longest window is MDE's hour.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// All buckets of the process.
#[derive(Debug)]
pub struct Limiter {
    /// One set of buckets per window (e.g. per minute and per hour); a call needs a token
    /// from each.
    windows: Vec<LimiterConfig>,
    buckets: Mutex<HashMap<(String, OpClass, usize), Bucket>>,
}

impl Limiter {
    pub fn new(cfg: LimiterConfig) -> Self {
        Self {
            windows: vec![cfg],
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// A second limit over a longer window (Defender for Endpoint: 100/min and 1,500/h).
    pub fn and_window(mut self, cfg: LimiterConfig) -> Self {
        self.windows.push(cfg);
        self
    }

    fn with<T>(
        &self,
        scope: &str,
        op: OpClass,
        window: usize,
        f: impl FnOnce(&mut Bucket, Instant) -> T,
    ) -> T {
        let now = Instant::now();
        let cfg = self.windows[window];
        let spec = match op {
            OpClass::Read => cfg.read,
            OpClass::Write => cfg.write,
            OpClass::Delete => cfg.delete,
        };
        let mut map = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let b = map
            .entry((scope.to_string(), op, window))
            .or_insert_with(|| Bucket::new(spec, now));
        f(b, now)
    }

    /// How long a call must wait for a token in every window (the tokens are taken).
    fn reserve(&self, scope: &str, op: OpClass) -> Duration {
        (0..self.windows.len())
            .map(|w| self.with(scope, op, w, |b, now| b.reserve(now)))
            .max()
            .unwrap_or_default()
    }

    /// Wait for a token on this scope's bucket.
    pub async fn acquire(&self, scope: &str, op: OpClass) {
        let wait = self.reserve(scope, op);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    pub fn observe_remaining(&self, scope: &str, op: OpClass, remaining: f64) {
        // The headers describe Azure's short window.
        self.with(scope, op, 0, |b, now| b.observe_remaining(remaining, now));
    }

    pub fn block_for(&self, scope: &str, op: OpClass, retry_after: Duration) {
        for w in 0..self.windows.len() {
            self.with(scope, op, w, |b, now| b.block_for(retry_after, now));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: BucketSpec = BucketSpec {
        capacity: 3.0,
        per_second: 10.0,
    };

    #[test]
    fn every_window_must_have_a_token() {
        let per = |capacity: f64, per_second: f64| {
            let b = BucketSpec {
                capacity,
                per_second,
            };
            LimiterConfig {
                read: b,
                write: b,
                delete: b,
            }
        };
        // A fast window with room to spare, and a slow one of 3 calls at 1/s.
        let l = Limiter::new(per(100.0, 100.0)).and_window(per(3.0, 1.0));
        for _ in 0..3 {
            assert_eq!(l.reserve("t", OpClass::Read), Duration::ZERO);
        }
        let w = l.reserve("t", OpClass::Read);
        assert!(
            w >= Duration::from_millis(900),
            "the slow window paces: {w:?}"
        );
    }

    #[test]
    fn a_huge_retry_after_is_capped_not_a_panic() {
        let t0 = Instant::now();
        let mut b = Bucket::new(W, t0);
        b.block_for(Duration::MAX, t0);
        let wait = b.reserve(t0);
        assert!(
            wait <= MAX_RETRY_AFTER && wait > MAX_RETRY_AFTER / 2,
            "{wait:?}"
        );
    }

    #[test]
    fn burst_then_paced() {
        let t0 = Instant::now();
        let mut b = Bucket::new(W, t0);
        for _ in 0..3 {
            assert_eq!(b.reserve(t0), Duration::ZERO);
        }
        // The 4th and 5th wait 100 ms and 200 ms: the refill pace, in order.
        assert_eq!(b.reserve(t0).as_millis(), 100);
        assert_eq!(b.reserve(t0).as_millis(), 200);
        // After a second the bucket is back to (capacity-bounded) tokens.
        let t1 = t0 + Duration::from_secs(2);
        assert_eq!(b.reserve(t1), Duration::ZERO);
        assert!(b.tokens() <= 2.0);
    }

    #[test]
    fn remaining_header_lowers_tokens_and_retry_after_blocks() {
        let t0 = Instant::now();
        let mut b = Bucket::new(W, t0);
        b.observe_remaining(0.0, t0);
        assert_eq!(b.reserve(t0).as_millis(), 100);
        b.block_for(Duration::from_secs(5), t0);
        assert_eq!(b.reserve(t0).as_secs(), 5);
        // A higher remaining never raises our own count.
        let mut c = Bucket::new(W, t0);
        c.reserve(t0);
        c.observe_remaining(100.0, t0);
        assert_eq!(c.tokens(), 2.0);
    }

    #[test]
    fn parses_bucket_specs() {
        assert_eq!(
            "200:10".parse::<BucketSpec>().unwrap(),
            BucketSpec {
                capacity: 200.0,
                per_second: 10.0
            }
        );
        assert!(
            "200"
                .parse::<BucketSpec>()
                .unwrap_err()
                .contains("CAPACITY")
        );
        assert!("0:1".parse::<BucketSpec>().is_err());
    }
}
