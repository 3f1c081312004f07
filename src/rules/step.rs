//! Step detection (W18 burst, DOMAIN.md §4.3): the latest value against the mean of the values
//! one to two `window`s back. A rise of at least `rise` (absolute) or `rise_pct` of that mean
//! within the window is a step. Once raised, the reference is frozen at the level before the
//! step and the alarm holds until the value falls back to within half the rise of it, so a burst
//! that keeps flowing keeps its alarm.

use std::collections::VecDeque;

use super::machine::Condition;

#[derive(Debug, Clone, Copy)]
pub struct StepParams {
    pub window_ns: i64,
    pub rise: f64,
    pub rise_pct: Option<f64>,
}

/// Recent values, and the reference of a raised step.
#[derive(Debug, Clone, Default)]
pub struct StepState {
    recent: VecDeque<(i64, f64)>,
    reference: Option<f64>,
}

/// One decision: the condition, the value and the level it rose from.
#[derive(Debug, Clone, PartialEq)]
pub struct StepDecision {
    pub condition: Condition,
    pub value: f64,
    pub reference: f64,
}

impl StepState {
    /// Feeds a value; `raised` says whether the alarm is raised now.
    pub fn observe(
        &mut self,
        time_ns: i64,
        value: f64,
        raised: bool,
        p: &StepParams,
    ) -> Option<StepDecision> {
        self.recent.push_back((time_ns, value));
        while self
            .recent
            .front()
            .is_some_and(|(t, _)| time_ns - t > 2 * p.window_ns)
        {
            self.recent.pop_front();
        }
        if !raised {
            self.reference = None;
        }
        let before: Vec<f64> = self
            .recent
            .iter()
            .filter(|(t, _)| time_ns - t >= p.window_ns)
            .map(|(_, v)| *v)
            .collect();
        let reference = match self.reference {
            Some(reference) => reference,
            None if before.is_empty() => return None,
            None => before.iter().sum::<f64>() / before.len() as f64,
        };
        let threshold = match p.rise_pct {
            Some(pct) => p.rise.min(pct / 100.0 * reference.abs()),
            None => p.rise,
        };
        let rise = value - reference;
        let condition = if raised {
            if rise >= threshold / 2.0 {
                Condition::Active
            } else {
                Condition::Clear
            }
        } else if rise >= threshold {
            self.reference = Some(reference);
            Condition::Active
        } else {
            Condition::Clear
        };
        Some(StepDecision {
            condition,
            value,
            reference,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    fn params() -> StepParams {
        StepParams {
            window_ns: 60 * S,
            rise: 2.0,
            rise_pct: Some(30.0),
        }
    }

    #[test]
    fn a_step_is_held_while_it_lasts_and_clears_when_the_flow_falls_back() {
        let mut s = StepState::default();
        let mut raised = false;
        let mut conditions = Vec::new();
        for t in (0..400).step_by(10) {
            // 7.6 m³/h, a +3 m³/h burst from 200 s to 300 s.
            let flow = if (200..300).contains(&t) { 10.6 } else { 7.6 };
            if let Some(d) = s.observe(t * S, flow, raised, &params()) {
                raised = match d.condition {
                    Condition::Active => true,
                    Condition::Clear => false,
                    Condition::Between => raised,
                };
                conditions.push((t, d.condition));
            }
        }
        let active: Vec<i64> = conditions
            .iter()
            .filter(|(_, c)| *c == Condition::Active)
            .map(|(t, _)| *t)
            .collect();
        // Raised at the step and held for the whole burst, well past one window.
        assert_eq!(active.first(), Some(&200));
        assert_eq!(active.last(), Some(&290));
        assert_eq!(active.len(), 10);
    }

    #[test]
    fn a_slow_ramp_is_not_a_step() {
        let mut s = StepState::default();
        // The morning rise: +12 m³/h over 90 minutes.
        for t in (0..5400).step_by(10) {
            let flow = 2.4 + 12.0 * t as f64 / 5400.0;
            if let Some(d) = s.observe(t * S, flow, false, &params()) {
                assert_eq!(d.condition, Condition::Clear, "at {t} s");
            }
        }
    }
}
