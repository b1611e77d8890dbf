//! Pacing reads and copies to a byte rate (block scanner, re-replication
//! copies).

use std::time::Duration;

use tokio::time::Instant;

/// A token bucket over tokio time: `acquire(n)` returns once `n` bytes fit
/// the rate. Tokens accrue at `rate` per second up to `burst`; a request
/// larger than what is there runs the bucket into debt and sleeps it off,
/// so the long-run rate never exceeds `rate`. It starts empty.
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(bytes_per_sec: u64, burst: u64) -> TokenBucket {
        TokenBucket {
            rate: bytes_per_sec.max(1) as f64,
            burst: burst.max(1) as f64,
            tokens: 0.0,
            last: Instant::now(),
        }
    }

    pub async fn acquire(&mut self, n: u64) {
        let now = Instant::now();
        let earned = now.duration_since(self.last).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + earned).min(self.burst);
        self.last = now;
        self.tokens -= n as f64;
        if self.tokens < 0.0 {
            tokio::time::sleep(Duration::from_secs_f64(-self.tokens / self.rate)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bucket_paces_to_the_rate() {
        // 40 KiB at 200 KiB/s from an empty bucket: at least 0.2 s.
        let mut b = TokenBucket::new(200 * 1024, 4096);
        let t = std::time::Instant::now();
        for _ in 0..10 {
            b.acquire(4096).await;
        }
        assert!(
            t.elapsed() >= Duration::from_millis(190),
            "{:?}",
            t.elapsed()
        );
    }
}
