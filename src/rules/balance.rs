//! Water balance (W17, DOMAIN.md §4.1; CJJ 92-2016 §5.1.2): over each window (a week by
//! default, aligned to local midnight), the volume that entered the area through its inflow
//! meter against the sum of the volumes its sub-meters (building or customer meters) registered.
//! Loss rate R = (Q_in − ΣQ_sub) / Q_in × 100 %.
//!
//! Meters are read at their own times, so each meter's volume is scaled to the inflow meter's
//! span (its volume per second × the inflow span). A window is decided only when every meter
//! covered at least `MIN_COVERAGE` of it and no totaliser went backwards (a replaced or reset
//! meter); otherwise the window is skipped with the reason logged, and the alarm keeps its state,
//! because a missing meter would look exactly like a leak. Readings are part of the persisted
//! alarm state, so a restart does not lose the week.

use crate::config::rule_pack::RuleConfig;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::machine::Condition;

/// Share of the window each meter's readings must span.
const MIN_COVERAGE: f64 = 0.9;

/// Parameters of the rule.
#[derive(Debug, Clone, Copy)]
pub struct BalanceParams {
    pub window_ns: i64,
    pub utc_offset_h: f64,
    /// Loss rate limit, %.
    pub above: f64,
    pub clear_margin: f64,
}

impl BalanceParams {
    /// The water-balance parameters (W17).
    pub fn of(rule: &RuleConfig) -> BalanceParams {
        BalanceParams {
            window_ns: rule.window.map_or(i64::MAX, |w| {
                i64::try_from(w.get().as_nanos()).unwrap_or(i64::MAX)
            }),
            utc_offset_h: rule.utc_offset_h.unwrap_or(8.0),
            above: rule.above.unwrap_or(f64::INFINITY),
            clear_margin: rule.clear_margin,
        }
    }
}

/// A totaliser reading.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct Reading {
    time_ns: i64,
    total: f64,
}

/// What is remembered between samples and restarts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BalanceState {
    /// Start of the window being collected, ns.
    window_start_ns: Option<i64>,
    /// First and latest reading per meter in the window.
    first: BTreeMap<String, Reading>,
    last: BTreeMap<String, Reading>,
    /// Windows closed so far (decided or skipped); a change means the state must be saved.
    pub closed: u64,
}

/// The outcome of a window.
#[derive(Debug, Clone, PartialEq)]
pub enum BalanceOutcome {
    Decided {
        condition: Condition,
        loss_pct: f64,
        inflow_m3: f64,
    },
    /// Not enough data to decide; the reason names the meters.
    Skipped(String),
}

/// The window boundary (aligned to local midnight) at or before `time_ns`.
fn window_start(time_ns: i64, p: &BalanceParams) -> i64 {
    let offset_ns = (p.utc_offset_h * 3600e9) as i64;
    (time_ns + offset_ns).div_euclid(p.window_ns) * p.window_ns - offset_ns
}

impl BalanceState {
    /// Records a totaliser reading of `meter`. Returns true when it is the meter's first in the
    /// window (the state should then be saved, or a restart would lose the window's start).
    pub fn record(&mut self, meter: &str, time_ns: i64, total: f64) -> bool {
        if !total.is_finite() {
            return false;
        }
        let reading = Reading { time_ns, total };
        self.last.insert(meter.to_owned(), reading);
        if self.first.contains_key(meter) {
            return false;
        }
        self.first.insert(meter.to_owned(), reading);
        true
    }

    /// Whether the window has ended at `now_ns` (the first call starts it at the window
    /// boundary before `now_ns`).
    pub fn due(&mut self, now_ns: i64, p: &BalanceParams) -> bool {
        let start = *self
            .window_start_ns
            .get_or_insert_with(|| window_start(now_ns, p));
        now_ns >= start.saturating_add(p.window_ns)
    }

    /// Closes the window: the outcome for `inflow` against `subs`. The latest readings carry
    /// over as the first of the next window, so no volume falls between windows.
    pub fn close(
        &mut self,
        now_ns: i64,
        inflow: &str,
        subs: &[&str],
        p: &BalanceParams,
    ) -> BalanceOutcome {
        let outcome = self.decide(inflow, subs, p);
        self.window_start_ns = Some(window_start(now_ns, p));
        self.first = self.last.clone();
        self.closed += 1;
        outcome
    }

    fn decide(&self, inflow: &str, subs: &[&str], p: &BalanceParams) -> BalanceOutcome {
        let span = |meter: &str| -> Result<(f64, f64), String> {
            let (Some(first), Some(last)) = (self.first.get(meter), self.last.get(meter)) else {
                return Err(format!("{meter}: no reading"));
            };
            let seconds = (last.time_ns - first.time_ns) as f64 / 1e9;
            if seconds < MIN_COVERAGE * p.window_ns as f64 / 1e9 {
                return Err(format!(
                    "{meter}: readings span {:.0} % of the window",
                    100.0 * seconds * 1e9 / p.window_ns as f64
                ));
            }
            let volume = last.total - first.total;
            if volume < 0.0 {
                return Err(format!(
                    "{meter}: total went back from {} to {} (meter replaced or reset?)",
                    first.total, last.total
                ));
            }
            Ok((volume, seconds))
        };
        let mut problems = Vec::new();
        let (inflow_m3, inflow_s) = span(inflow).unwrap_or_else(|e| {
            problems.push(e);
            (0.0, 0.0)
        });
        let mut supplied = 0.0;
        for sub in subs {
            match span(sub) {
                Ok((volume, seconds)) => supplied += volume / seconds * inflow_s,
                Err(e) => problems.push(e),
            }
        }
        if problems.is_empty() && inflow_m3 <= 0.0 {
            problems.push(format!("{inflow}: no inflow in the window"));
        }
        if !problems.is_empty() {
            return BalanceOutcome::Skipped(problems.join("; "));
        }
        let loss_pct = (inflow_m3 - supplied) / inflow_m3 * 100.0;
        let condition = if loss_pct > p.above {
            Condition::Active
        } else if loss_pct > p.above - p.clear_margin {
            Condition::Between
        } else {
            Condition::Clear
        };
        BalanceOutcome::Decided {
            condition,
            loss_pct,
            inflow_m3,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000_000_000;
    const DAY: i64 = 24 * H;
    /// 2026-11-02 00:00 China time (a Monday), ns.
    const MIDNIGHT: i64 = 1_793_548_800_000_000_000;

    fn params() -> BalanceParams {
        BalanceParams {
            window_ns: DAY,
            utc_offset_h: 8.0,
            above: 12.0,
            clear_margin: 2.0,
        }
    }

    /// Feeds hourly readings for `hours` from hour `from_h`: an inflow meter at `inflow` m³/h and
    /// two sub-meters at `a` and `b` m³/h (b read on the half hour), each totaliser continuing
    /// from its last reading. Returns the outcomes.
    fn run(
        state: &mut BalanceState,
        from_h: i64,
        hours: i64,
        rates: (f64, f64, f64),
    ) -> Vec<BalanceOutcome> {
        let (inflow, a, b) = rates;
        let mut outcomes = Vec::new();
        for h in from_h..from_h + hours {
            let t = MIDNIGHT + h * H;
            for (meter, rate, at) in [("b", b, t + H / 2), ("a", a, t), ("in", inflow, t)] {
                let total = state.last.get(meter).map_or(100.0, |r| {
                    r.total + rate * (at - r.time_ns) as f64 / H as f64
                });
                state.record(meter, at, total);
            }
            if state.due(t, &params()) {
                outcomes.push(state.close(t, "in", &["a", "b"], &params()));
            }
        }
        outcomes
    }

    #[test]
    fn loss_rate_is_inflow_minus_sub_meters_over_inflow() {
        let mut state = BalanceState::default();
        // Worked example of DOMAIN.md §4.1: 182.5 m³ in, 147.0 m³ out a day: 19.4 % → warn.
        let outcomes = run(&mut state, 0, 49, (182.5 / 24.0, 100.0 / 24.0, 47.0 / 24.0));
        assert_eq!(outcomes.len(), 2, "{outcomes:?}");
        for outcome in outcomes {
            let BalanceOutcome::Decided {
                condition,
                loss_pct,
                inflow_m3,
            } = outcome
            else {
                panic!("{outcome:?}");
            };
            assert_eq!(condition, Condition::Active);
            assert!((loss_pct - 35.5 / 182.5 * 100.0).abs() < 1e-9, "{loss_pct}");
            assert!((inflow_m3 - 182.5).abs() < 1e-9, "{inflow_m3}");
        }
    }

    #[test]
    fn hysteresis_and_clear() {
        let mut state = BalanceState::default();
        // 11 % loss: inside the 12 % limit but within the 2 % margin; then 5 %: clear.
        let between = run(&mut state, 0, 25, (10.0, 5.0, 3.9));
        assert!(
            matches!(
                between[0],
                BalanceOutcome::Decided {
                    condition: Condition::Between,
                    ..
                }
            ),
            "{between:?}"
        );
        let clear = run(&mut state, 25, 24, (10.0, 5.0, 4.5));
        assert!(
            matches!(
                clear[0],
                BalanceOutcome::Decided {
                    condition: Condition::Clear,
                    ..
                }
            ),
            "{clear:?}"
        );
    }

    #[test]
    fn a_silent_or_reset_meter_skips_the_window_instead_of_looking_like_a_leak() {
        let mut state = BalanceState::default();
        for h in 0..25 {
            let t = MIDNIGHT + h * H;
            state.record("in", t, 10.0 * h as f64);
            if h < 6 {
                state.record("a", t, 5.0 * h as f64);
            }
            // b is replaced at 12:00: its total starts again near zero.
            state.record("b", t, if h < 12 { 1000.0 + 5.0 * h as f64 } else { 5.0 });
            if state.due(t, &params()) {
                let outcome = state.close(t, "in", &["a", "b"], &params());
                let BalanceOutcome::Skipped(reason) = outcome else {
                    panic!("{outcome:?}");
                };
                assert!(reason.contains("a: readings span 21 %"), "{reason}");
                assert!(reason.contains("b: total went back"), "{reason}");
                return;
            }
        }
        panic!("the window never closed");
    }

    #[test]
    fn windows_align_to_local_midnight_and_survive_a_restart() {
        let mut state = BalanceState::default();
        run(&mut state, 3, 10, (10.0, 5.0, 5.0));
        let saved = serde_json::to_string(&state).expect("serialise");
        let mut restored: BalanceState = serde_json::from_str(&saved).expect("parse");
        assert_eq!(restored, state);
        // The first window is the local day the readings began in: it closes at the next
        // local midnight, not 24 h after the first reading.
        let outcomes = run(&mut restored, 13, 12, (10.0, 5.0, 5.0));
        assert_eq!(outcomes.len(), 1);
        assert!(
            matches!(outcomes[0], BalanceOutcome::Skipped(_)),
            "{outcomes:?}"
        );
    }
}
