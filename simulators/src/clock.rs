//! Simulated time: the wall clock, optionally accelerated, read as local time in China (UTC+8)
//! because demand curves follow local hours.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// China Standard Time offset.
const LOCAL_OFFSET_S: f64 = 8.0 * 3600.0;

#[derive(Debug, Clone, Copy)]
pub struct SimClock {
    started: Instant,
    /// Simulated Unix time at `started`, seconds.
    start_unix_s: f64,
    /// Simulated seconds per real second.
    speed: f64,
}

impl SimClock {
    /// A clock starting at `start_unix_s` (simulated) and running `speed` times real time.
    pub fn new(start_unix_s: f64, speed: f64) -> Self {
        SimClock {
            started: Instant::now(),
            start_unix_s,
            speed: speed.max(0.0),
        }
    }

    /// Real time, real speed.
    pub fn real_time() -> Self {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        SimClock::new(now, 1.0)
    }

    /// Simulated Unix time now, seconds.
    pub fn now_unix_s(&self) -> f64 {
        self.start_unix_s + self.started.elapsed().as_secs_f64() * self.speed
    }

    /// Local hour of day (0.0..24.0) at a simulated Unix time.
    pub fn local_hour(unix_s: f64) -> f64 {
        ((unix_s + LOCAL_OFFSET_S) / 3600.0).rem_euclid(24.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_hour_is_utc_plus_eight() {
        // 2025-11-26T19:00:00Z is 03:00 the next morning in Shuozhou.
        assert!((SimClock::local_hour(1_764_183_600.0) - 3.0).abs() < 1e-9);
    }
}
