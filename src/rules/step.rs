//! Step detection (W18 burst, DOMAIN.md §4.3): the mean of the last `window` against the mean of
//! the window before it. A rise of the mean by at least the larger of `rise` (absolute) and
//! `rise_pct` of the level before is a step; the rule's hold (`for`, 60 s) then asks it to last.
//! Means, not single readings, so that a break-tank refill or two showers at night do not look
//! like a burst. From the first window that rose, the reference stays the level before the step,
//! and a raised alarm holds until the mean falls back to within half the rise of it, so a burst
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

/// One decision: the condition, the latest window's mean and the level it rose from.
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
        let (mut before, mut latest) = ((0.0, 0u32), (0.0, 0u32));
        for &(t, v) in &self.recent {
            let slot = if time_ns - t >= p.window_ns {
                &mut before
            } else {
                &mut latest
            };
            slot.0 += v;
            slot.1 += 1;
        }
        let reference = match self.reference {
            Some(reference) => reference,
            None if before.1 == 0 => return None,
            None => before.0 / f64::from(before.1),
        };
        let value = latest.0 / f64::from(latest.1);
        let threshold = match p.rise_pct {
            Some(pct) => p.rise.max(pct / 100.0 * reference.abs()),
            None => p.rise,
        };
        // Raising asks for the whole rise, holding a raised alarm for half of it.
        let needed = if raised { threshold / 2.0 } else { threshold };
        let condition = if value - reference >= needed {
            Condition::Active
        } else {
            Condition::Clear
        };
        // The level before the step stays the reference while the rise lasts (through the
        // rule's hold, too), not the mean of a window the step has already entered.
        self.reference = (condition == Condition::Active).then_some(reference);
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

    /// The conditions for flows `flow(t)` every 10 s over `seconds`, the alarm raised while the
    /// condition is active (no hold).
    fn run(seconds: i64, flow: impl Fn(i64) -> f64) -> Vec<(i64, Condition)> {
        let mut s = StepState::default();
        let mut raised = false;
        let mut conditions = Vec::new();
        for t in (0..seconds).step_by(10) {
            if let Some(d) = s.observe(t * S, flow(t), raised, &params()) {
                raised = d.condition == Condition::Active;
                conditions.push((t, d.condition));
            }
        }
        conditions
    }

    fn active(conditions: &[(i64, Condition)]) -> Vec<i64> {
        conditions
            .iter()
            .filter(|(_, c)| *c == Condition::Active)
            .map(|(t, _)| *t)
            .collect()
    }

    #[test]
    fn a_step_is_held_while_it_lasts_and_clears_when_the_flow_falls_back() {
        // 7.6 m³/h, a +3 m³/h burst from 200 s to 500 s (the threshold is max(2, 30 % of 7.6)
        // = 2.28 m³/h).
        let conditions = run(800, |t| if (200..500).contains(&t) { 10.6 } else { 7.6 });
        let active = active(&conditions);
        // The last minute's mean (six samples) has risen by 2.5 at 240 s; held down to half
        // the threshold: at 520 s three of six samples are the burst's (+1.5), at 530 s two.
        assert_eq!(active.first(), Some(&240));
        assert_eq!(active.last(), Some(&520));
        assert_eq!(active.len(), 29);
    }

    #[test]
    fn one_high_reading_is_not_a_step() {
        // A break-tank refill seen in one 10 s reading: +5 m³/h, a sixth of the minute.
        let conditions = run(600, |t| if t == 300 { 12.6 } else { 7.6 });
        assert!(active(&conditions).is_empty(), "{conditions:?}");
    }

    #[test]
    fn the_larger_of_the_absolute_and_relative_rise_decides() {
        // From 10 m³/h: +2.5 is above 2 m³/h but below 30 % (3 m³/h), +3.5 above both.
        let small = run(600, |t| if t >= 300 { 12.5 } else { 10.0 });
        assert!(active(&small).is_empty());
        let large = run(600, |t| if t >= 300 { 13.5 } else { 10.0 });
        // At 340 s five of the minute's six readings are higher (+2.92), at 350 s all six.
        assert_eq!(active(&large).first(), Some(&350));
    }

    #[test]
    fn a_slow_ramp_is_not_a_step() {
        // The morning rise: +12 m³/h over 90 minutes.
        let conditions = run(5400, |t| 2.4 + 12.0 * t as f64 / 5400.0);
        assert!(active(&conditions).is_empty());
        assert!(conditions.len() > 500);
    }
}
