//! Minimum night flow (W16, DOMAIN.md §4.2): the lowest 1-hour rolling mean of 15-minute flow
//! averages in a local night window, compared with the median of the last valid nights. With
//! `mean` instead, the night's mean (W15: a booster set's night power, DOMAIN.md §4.4).
//!
//! A night is valid when at least `MIN_BUCKET_SHARE` of its 15-minute buckets have data. At the
//! end of each night the rule decides. A night is suspect when its net night flow (MNF less the
//! households' legitimate night use) exceeds `net_above_l_per_household_h` (the absolute test,
//! from the first night, when the households are known), or when MNF > `ratio` × baseline and
//! MNF − baseline ≥ `min_increase` (the trend test, once a baseline exists). Active after
//! `nights` consecutive suspect nights, or at once when MNF − baseline ≥ `jump` (a new burst);
//! clear after a night that is neither. Suspect nights are kept out of the baseline, also while
//! it is first being built, so a leak does not become the new normal. The history is part of the
//! persisted alarm state and survives restarts.

use crate::config::rule_pack::RuleConfig;
use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::machine::Condition;

const BUCKET_S: i64 = 900;
/// Share of a night's 15-minute buckets that must have data.
const MIN_BUCKET_SHARE: f64 = 0.75;
/// Valid nights needed before a baseline exists.
const MIN_BASELINE_NIGHTS: usize = 7;

/// Parameters of the rule.
#[derive(Debug, Clone, Copy)]
pub struct NightFlowParams {
    /// Local time of the window, hours (02:00–04:00 by default).
    pub start_h: f64,
    pub end_h: f64,
    pub utc_offset_h: f64,
    pub baseline_nights: usize,
    pub ratio: f64,
    pub min_increase: f64,
    pub jump: f64,
    pub consecutive: u32,
    /// The night's figure: the lowest 1-hour rolling mean (true) or the mean of the window.
    pub lowest_hour: bool,
    /// The absolute test: the MNF above which net night flow exceeds its limit, m³/h
    /// (households × (legitimate use + limit)).
    pub absolute_limit: Option<f64>,
}

impl NightFlowParams {
    /// Whether a night of `mnf` is suspect: above the absolute limit, or above the trend limit
    /// of `baseline` (the median of past unsuspicious nights, once there are enough).
    pub fn suspect(&self, mnf: f64, baseline: Option<f64>) -> bool {
        self.absolute_limit.is_some_and(|limit| mnf > limit)
            || baseline.is_some_and(|b| mnf > self.ratio * b && mnf - b >= self.min_increase)
    }
}

/// The households behind a DMA inflow meter and their legitimate night use, L/h each
/// (`[kpi] households`, `night_use_l_per_household_h`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Households {
    pub count: u32,
    pub night_use_l_h: f64,
}

impl Households {
    /// Their legitimate night use, m³/h.
    pub fn night_use_m3h(&self) -> f64 {
        f64::from(self.count) * self.night_use_l_h / 1000.0
    }
}

impl NightFlowParams {
    /// The night-flow parameters with their DOMAIN.md §4.2 defaults; the absolute test needs
    /// the `households` behind the meter.
    pub fn of(rule: &RuleConfig, households: Option<Households>) -> NightFlowParams {
        NightFlowParams {
            start_h: rule.night_start_h.unwrap_or(2.0),
            end_h: rule.night_end_h.unwrap_or(4.0),
            utc_offset_h: rule.utc_offset_h.unwrap_or(8.0),
            baseline_nights: rule.baseline_nights.unwrap_or(14).max(1),
            ratio: rule.ratio.unwrap_or(1.3),
            min_increase: rule.min_increase.unwrap_or(0.3),
            // W15 (mean) has no single-night jump unless one is set.
            jump: rule
                .jump
                .unwrap_or(if rule.aggregate.as_deref() == Some("mean") {
                    f64::INFINITY
                } else {
                    0.5
                }),
            consecutive: rule.nights.unwrap_or(2).max(1),
            lowest_hour: rule.aggregate.as_deref() != Some("mean"),
            absolute_limit: households.zip(rule.net_above_l_per_household_h).map(
                |(households, net)| {
                    households.night_use_m3h() + f64::from(households.count) * net / 1000.0
                },
            ),
        }
    }
}

/// What is remembered between samples and restarts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NightFlowState {
    /// The local day (days since epoch) of the night being collected.
    night: Option<i64>,
    /// (sum, count) per 15-minute bucket of the window.
    buckets: Vec<(f64, u32)>,
    /// MNF of past valid, unsuspicious nights, oldest first.
    history: VecDeque<f64>,
    suspect_nights: u32,
    /// Nights closed so far (valid or not); a change means the state must be saved.
    pub closed: u64,
}

/// The decision at the end of a night: the condition, the night's MNF and the lowest MNF that
/// makes a night suspect (the absolute or the trend limit).
#[derive(Debug, Clone, PartialEq)]
pub struct NightDecision {
    pub condition: Condition,
    pub mnf: f64,
    pub limit: f64,
}

fn median(values: &VecDeque<f64>) -> f64 {
    let mut sorted: Vec<f64> = values.iter().copied().collect();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

impl NightFlowState {
    /// Feeds one flow value at `time_ns`; returns a decision when a night has just ended.
    pub fn observe(
        &mut self,
        time_ns: i64,
        flow: f64,
        p: &NightFlowParams,
    ) -> Option<NightDecision> {
        let local_s = time_ns.div_euclid(1_000_000_000) + (p.utc_offset_h * 3600.0) as i64;
        let day = local_s.div_euclid(86_400);
        let second = local_s.rem_euclid(86_400);
        let (start, end) = ((p.start_h * 3600.0) as i64, (p.end_h * 3600.0) as i64);
        let buckets = ((end - start) / BUCKET_S).max(1) as usize;
        let mut decision = None;
        // A night ends at the first sample after its window (or on a later day).
        if let Some(night) = self.night {
            if day > night || (day == night && second >= end) {
                decision = self.close(p);
            }
        }
        if (start..end).contains(&second) && flow.is_finite() {
            if self.night != Some(day) {
                self.night = Some(day);
                self.buckets = vec![(0.0, 0); buckets];
            }
            let index = ((second - start) / BUCKET_S) as usize;
            if let Some(bucket) = self.buckets.get_mut(index) {
                bucket.0 += flow;
                bucket.1 += 1;
            }
        }
        decision
    }

    /// Computes the finished night's MNF and decides.
    fn close(&mut self, p: &NightFlowParams) -> Option<NightDecision> {
        self.night = None;
        self.closed += 1;
        let buckets = std::mem::take(&mut self.buckets);
        let filled = buckets.iter().filter(|(_, n)| *n > 0).count();
        if (filled as f64) < MIN_BUCKET_SHARE * buckets.len() as f64 {
            return None;
        }
        let means: Vec<Option<f64>> = buckets
            .iter()
            .map(|(sum, n)| (*n > 0).then(|| sum / f64::from(*n)))
            .collect();
        let filled_means: Vec<f64> = means.iter().flatten().copied().collect();
        // Lowest mean of four consecutive filled buckets (1 hour), or the whole window's mean.
        let mnf = if !p.lowest_hour {
            filled_means.iter().sum::<f64>() / filled_means.len().max(1) as f64
        } else {
            means
                .windows(4.min(means.len()))
                .filter_map(|w| {
                    let values: Option<Vec<f64>> = w.iter().copied().collect();
                    values.map(|v| v.iter().sum::<f64>() / v.len() as f64)
                })
                .fold(f64::INFINITY, f64::min)
        };
        if !mnf.is_finite() {
            return None;
        }
        let baseline = (self.history.len() >= MIN_BASELINE_NIGHTS).then(|| median(&self.history));
        let suspect = p.suspect(mnf, baseline);
        let burst = baseline.is_some_and(|baseline| mnf - baseline >= p.jump);
        if !(suspect || burst) {
            self.remember(mnf, p);
        }
        // Without households or a baseline there is nothing to hold the night against yet.
        let limit = match (p.absolute_limit, baseline) {
            (None, None) => return None,
            (absolute, baseline) => {
                let trend = baseline.map(|b| (p.ratio * b).max(b + p.min_increase));
                absolute
                    .into_iter()
                    .chain(trend)
                    .fold(f64::INFINITY, f64::min)
            }
        };
        self.suspect_nights = if suspect || burst {
            self.suspect_nights + 1
        } else {
            0
        };
        let condition = if burst || self.suspect_nights >= p.consecutive {
            Condition::Active
        } else if suspect {
            Condition::Between
        } else {
            Condition::Clear
        };
        Some(NightDecision {
            condition,
            mnf,
            limit,
        })
    }

    fn remember(&mut self, mnf: f64, p: &NightFlowParams) {
        self.history.push_back(mnf);
        while self.history.len() > p.baseline_nights {
            self.history.pop_front();
        }
    }
}
