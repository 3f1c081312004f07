//! Frozen value (W23, DOMAIN.md §1.1): a value that has not moved by more than `tolerance` for a
//! whole `window` while the plant runs (`while_field` above `while_above`) is a stuck transmitter
//! or a PLC that stopped updating. Any movement, or the plant stopping, clears it.

use std::collections::VecDeque;

use super::machine::Condition;

#[derive(Debug, Clone, Copy)]
pub struct FrozenParams {
    pub window_ns: i64,
    pub tolerance: f64,
}

#[derive(Debug, Clone, Default)]
pub struct FrozenState {
    /// Values since the plant last stopped, within the window.
    recent: VecDeque<(i64, f64)>,
    /// When the current running stretch began.
    running_since: Option<i64>,
}

impl FrozenState {
    /// Feeds a value; `running` says whether the plant runs now. Returns the condition and the
    /// spread (max − min) over the window.
    pub fn observe(
        &mut self,
        time_ns: i64,
        value: f64,
        running: bool,
        p: &FrozenParams,
    ) -> (Condition, f64) {
        if !running {
            self.recent.clear();
            self.running_since = None;
            return (Condition::Clear, f64::NAN);
        }
        let since = *self.running_since.get_or_insert(time_ns);
        self.recent.push_back((time_ns, value));
        while self
            .recent
            .front()
            .is_some_and(|(t, _)| time_ns - t > p.window_ns)
        {
            self.recent.pop_front();
        }
        let (low, high) = self
            .recent
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), (_, v)| {
                (lo.min(*v), hi.max(*v))
            });
        let spread = high - low;
        let covered = time_ns - since >= p.window_ns;
        let condition = if covered && spread <= p.tolerance {
            Condition::Active
        } else {
            Condition::Clear
        };
        (condition, spread)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    #[test]
    fn a_value_stuck_for_the_whole_window_while_running_is_frozen() {
        let p = FrozenParams {
            window_ns: 3600 * S,
            tolerance: 0.0,
        };
        let mut f = FrozenState::default();
        let mut last = Condition::Clear;
        for t in (0..=3600).step_by(60) {
            last = f.observe(t * S, 0.471, true, &p).0;
            if t < 3600 {
                assert_eq!(last, Condition::Clear, "not a whole window yet at {t} s");
            }
        }
        assert_eq!(last, Condition::Active);
        // It moves: clear at once.
        assert_eq!(f.observe(3660 * S, 0.472, true, &p).0, Condition::Clear);
    }

    #[test]
    fn a_steady_value_while_the_plant_stops_is_not_frozen() {
        let p = FrozenParams {
            window_ns: 600 * S,
            tolerance: 0.0,
        };
        let mut f = FrozenState::default();
        for t in (0..=1200).step_by(60) {
            // The pumps stop every 10 minutes for a minute.
            let running = t % 600 != 0;
            assert_eq!(
                f.observe(t * S, 0.465, running, &p).0,
                Condition::Clear,
                "at {t} s"
            );
        }
    }
}
