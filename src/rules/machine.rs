//! The alarm state machine of one rule on one device:
//!
//! ```text
//! Normal ──active──▶ Pending ──active for `hold`──▶ Firing (raise)
//!   ▲                  │ not active                   │ clear
//!   └──────────────────┘                              ▼
//! Normal ◀── clear for `clear_hold` (clear event) ── Resolving ──not clear──▶ Firing
//! ```
//!
//! "Active" means the condition holds; "clear" means the value is back inside the limit by the
//! hysteresis margin. A value in between (inside the limit, not yet by the margin) keeps a firing
//! alarm firing. When an alarm is raised more than `flap_limit` times within `flap_window` it is
//! flapping: it is then held firing until it has been clear for a whole `flap_window`.
//!
//! Time is the samples' own time (ns), so the machine is a pure function of its inputs.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// What the condition says about one sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    Active,
    /// Inside the limit but not by the hysteresis margin.
    Between,
    Clear,
}

/// Hold times and flapping policy, in ns.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub hold_ns: i64,
    pub clear_hold_ns: i64,
    pub flap_limit: usize,
    pub flap_window_ns: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    Normal,
    Pending { since: i64 },
    Firing { raised: i64 },
    Resolving { raised: i64, since: i64 },
}

/// A transition the caller turns into an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Raised { raised: i64 },
    Cleared { raised: i64 },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Machine {
    pub phase: Phase,
    /// Times of recent raises, for flapping.
    raises: VecDeque<i64>,
    pub flapping: bool,
}

impl Default for Machine {
    fn default() -> Self {
        Machine {
            phase: Phase::Normal,
            raises: VecDeque::new(),
            flapping: false,
        }
    }
}

impl Machine {
    /// Feeds one evaluation at time `now`.
    pub fn step(&mut self, now: i64, condition: Condition, timing: &Timing) -> Option<Transition> {
        match (self.phase, condition) {
            (Phase::Normal, Condition::Active) => {
                self.phase = Phase::Pending { since: now };
                self.fire_if_held(now, now, timing)
            }
            (Phase::Normal, _) => None,
            (Phase::Pending { since }, Condition::Active) => self.fire_if_held(now, since, timing),
            (Phase::Pending { .. }, _) => {
                self.phase = Phase::Normal;
                None
            }
            (Phase::Firing { raised }, Condition::Clear) => {
                self.phase = Phase::Resolving { raised, since: now };
                self.clear_if_held(now, raised, now, timing)
            }
            (Phase::Firing { .. }, _) => None,
            (Phase::Resolving { raised, since }, Condition::Clear) => {
                self.clear_if_held(now, raised, since, timing)
            }
            (Phase::Resolving { raised, .. }, _) => {
                self.phase = Phase::Firing { raised };
                None
            }
        }
    }

    /// Whether the alarm is raised (firing or resolving).
    pub fn is_raised(&self) -> bool {
        self.raised_at().is_some()
    }

    /// When the alarm was raised, while it is (firing or resolving).
    pub fn raised_at(&self) -> Option<i64> {
        match self.phase {
            Phase::Firing { raised } | Phase::Resolving { raised, .. } => Some(raised),
            _ => None,
        }
    }

    fn fire_if_held(&mut self, now: i64, since: i64, timing: &Timing) -> Option<Transition> {
        if now - since < timing.hold_ns {
            return None;
        }
        self.phase = Phase::Firing { raised: now };
        self.raises.push_back(now);
        while self
            .raises
            .front()
            .is_some_and(|t| now - *t > timing.flap_window_ns)
        {
            self.raises.pop_front();
        }
        if self.raises.len() > timing.flap_limit {
            self.flapping = true;
        }
        Some(Transition::Raised { raised: now })
    }

    fn clear_if_held(
        &mut self,
        now: i64,
        raised: i64,
        since: i64,
        timing: &Timing,
    ) -> Option<Transition> {
        let needed = if self.flapping {
            timing.clear_hold_ns.max(timing.flap_window_ns)
        } else {
            timing.clear_hold_ns
        };
        if now - since < needed {
            return None;
        }
        self.phase = Phase::Normal;
        self.flapping = false;
        Some(Transition::Cleared { raised })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    fn timing() -> Timing {
        Timing {
            hold_ns: 60 * S,
            clear_hold_ns: 30 * S,
            flap_limit: 3,
            flap_window_ns: 3600 * S,
        }
    }

    /// Feeds (seconds, condition) pairs; returns the transitions with their times in seconds.
    fn run(machine: &mut Machine, series: &[(i64, Condition)]) -> Vec<(i64, Transition)> {
        series
            .iter()
            .filter_map(|(t, c)| machine.step(t * S, *c, &timing()).map(|tr| (*t, tr)))
            .collect()
    }

    use Condition::{Active as A, Between as B, Clear as C};

    #[test]
    fn raises_only_after_the_condition_held_for_the_hold_time() {
        let mut m = Machine::default();
        let events = run(&mut m, &[(0, A), (30, A), (59, A), (60, A), (90, A)]);
        assert_eq!(events, vec![(60, Transition::Raised { raised: 60 * S })]);
    }

    #[test]
    fn a_blip_shorter_than_the_hold_time_raises_nothing() {
        let mut m = Machine::default();
        let events = run(&mut m, &[(0, A), (30, A), (40, C), (50, A), (100, A)]);
        assert!(events.is_empty(), "{events:?}");
        assert!(matches!(m.phase, Phase::Pending { since } if since == 50 * S));
    }

    #[test]
    fn clears_after_the_clear_hold_and_hysteresis_keeps_it_firing_in_between() {
        let mut m = Machine::default();
        let events = run(
            &mut m,
            &[
                (0, A),
                (60, A),
                (70, B),
                (200, B),
                (210, C),
                (230, B),
                (240, C),
                (269, C),
                (270, C),
            ],
        );
        assert_eq!(
            events,
            vec![
                (60, Transition::Raised { raised: 60 * S }),
                (270, Transition::Cleared { raised: 60 * S }),
            ]
        );
        assert_eq!(m.phase, Phase::Normal);
    }

    #[test]
    fn flapping_holds_the_alarm_until_it_settles_for_the_whole_window() {
        let mut m = Machine::default();
        let timing = Timing {
            hold_ns: 0,
            clear_hold_ns: 0,
            ..timing()
        };
        let mut events = Vec::new();
        // Four raise/clear cycles within ten minutes: the fourth raise marks it flapping.
        for cycle in 0..4 {
            let t = cycle * 120 * S;
            events.extend(m.step(t, A, &timing));
            events.extend(m.step(t + 60 * S, C, &timing));
        }
        assert!(m.flapping);
        assert_eq!(
            events.len(),
            7,
            "three cycles raise and clear, the fourth only raises"
        );
        assert!(m.is_raised());
        // Clear for less than the window: still held.
        assert_eq!(m.step(3000 * S, C, &timing), None);
        // Clear for the whole window since clearing started: cleared, no longer flapping.
        let started = 7 * 60 * S;
        assert!(matches!(
            m.step(started + 3600 * S, C, &timing),
            Some(Transition::Cleared { .. })
        ));
        assert!(!m.flapping);
    }
}
