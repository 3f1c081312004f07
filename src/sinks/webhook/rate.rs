//! A token bucket: at most `per_minute` messages a minute, bursts up to the same number (both
//! group robots refuse more than 20 a minute).

use std::time::Duration;

use tokio::time::Instant;

pub struct RateLimit {
    per_second: f64,
    capacity: f64,
    tokens: f64,
    last: Instant,
}

impl RateLimit {
    pub fn new(per_minute: u32) -> RateLimit {
        let capacity = f64::from(per_minute.max(1));
        RateLimit {
            per_second: capacity / 60.0,
            capacity,
            tokens: capacity,
            last: Instant::now(),
        }
    }

    /// Waits until a message may be sent, and takes its token.
    pub async fn acquire(&mut self) {
        self.refill();
        if self.tokens < 1.0 {
            let wait = Duration::from_secs_f64((1.0 - self.tokens) / self.per_second);
            tokio::time::sleep(wait).await;
            self.refill();
        }
        self.tokens = (self.tokens - 1.0).max(0.0);
    }

    fn refill(&mut self) {
        let now = Instant::now();
        let earned = now.duration_since(self.last).as_secs_f64() * self.per_second;
        self.tokens = (self.tokens + earned).min(self.capacity);
        self.last = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn twenty_a_minute_then_one_every_three_seconds() {
        let mut limit = RateLimit::new(20);
        let start = Instant::now();
        for _ in 0..20 {
            limit.acquire().await;
        }
        assert_eq!(
            start.elapsed(),
            Duration::ZERO,
            "the first twenty go at once"
        );
        limit.acquire().await;
        let after = start.elapsed();
        assert!(
            after >= Duration::from_secs(3) && after < Duration::from_millis(3010),
            "{after:?}"
        );
        limit.acquire().await;
        let after = start.elapsed();
        assert!(
            after >= Duration::from_secs(6) && after < Duration::from_millis(6010),
            "{after:?}"
        );
    }
}
