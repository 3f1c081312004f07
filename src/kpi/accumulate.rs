//! The accumulators each daily figure is built from. They are plain data (serde), so a day's
//! progress can be saved and restored across a restart, and they work on the samples' own
//! timestamps, so gaps and clock steps are handled the same way whether the data arrived live
//! or late.
//!
//! - [`BandShare`]: share of samples inside an allowed band (pressure compliance, CJ/T 316's
//!   ≥ 97 %; gas outlet pressure; frequency).
//! - [`MinuteMeans`] feeding a [`BandShare`]: the voltage qualification rate, the share of
//!   1-minute averages inside the GB/T 12325 band; and [`percentile`] of 1-minute values for the
//!   95th-percentile three-phase unbalance (GB/T 15543).
//! - [`HourShare`]: share of hours whose mean reaches a floor (sample flats at ≥ 18 °C).
//! - [`completeness`]: samples received against those expected from the poll interval.
//!
//! Days are local days (China Standard Time, UTC+8, no daylight saving): a sample belongs to the
//! day of its own timestamp ([`local_day`]). Missing data is never counted as compliant or not:
//! it lowers completeness instead.

use serde::{Deserialize, Serialize};

const NS_PER_S: i64 = 1_000_000_000;

/// The local day (days since 1970-01-01 local) of `time_ns` at UTC+`utc_offset_h`.
pub fn local_day(time_ns: i64, utc_offset_h: f64) -> i64 {
    let local_s = time_ns.div_euclid(NS_PER_S) + (utc_offset_h * 3600.0) as i64;
    local_s.div_euclid(86_400)
}

/// Counts of samples inside and outside a band.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BandShare {
    pub inside: u64,
    pub total: u64,
}

impl BandShare {
    /// Counts `value` against `low..=high` (either bound may be open).
    pub fn observe(&mut self, value: f64, low: Option<f64>, high: Option<f64>) {
        if !value.is_finite() {
            return;
        }
        self.total += 1;
        let ok = low.is_none_or(|l| value >= l) && high.is_none_or(|h| value <= h);
        self.inside += u64::from(ok);
    }

    /// Share inside in percent, when there was anything to count.
    pub fn rate_pct(&self) -> Option<f64> {
        (self.total > 0).then(|| 100.0 * self.inside as f64 / self.total as f64)
    }
}

/// Means per wall-clock bucket (a minute, an hour) of samples as they come: a bucket is closed
/// when a sample of another bucket arrives (or at [`flush`](Buckets::flush)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Buckets {
    /// (bucket index, sum, count) of the open bucket.
    open: Option<(i64, f64, u32)>,
}

impl Buckets {
    /// Adds a sample to the bucket of `time_ns` (`bucket_s` long); returns the mean of the
    /// bucket it closed, if any.
    pub fn observe(&mut self, time_ns: i64, value: f64, bucket_s: i64) -> Option<f64> {
        if !value.is_finite() {
            return None;
        }
        let bucket = time_ns.div_euclid(bucket_s * NS_PER_S);
        match &mut self.open {
            Some((open, sum, count)) if *open == bucket => {
                *sum += value;
                *count += 1;
                None
            }
            _ => {
                let closed = self.flush();
                self.open = Some((bucket, value, 1));
                closed
            }
        }
    }

    /// Closes the open bucket; its mean.
    pub fn flush(&mut self) -> Option<f64> {
        self.open
            .take()
            .map(|(_, sum, count)| sum / f64::from(count))
    }
}

/// One-minute means (voltage qualification, unbalance).
pub type MinuteMeans = Buckets;

/// Share of hours whose mean reaches `floor`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct HourShare {
    hours: Buckets,
    pub share: BandShare,
}

impl HourShare {
    pub fn observe(&mut self, time_ns: i64, value: f64, floor: f64) {
        if let Some(mean) = self.hours.observe(time_ns, value, 3600) {
            self.share.observe(mean, Some(floor), None);
        }
    }

    /// Closes the last hour (end of the day) with the same floor.
    pub fn flush(&mut self, floor: f64) {
        if let Some(mean) = self.hours.flush() {
            self.share.observe(mean, Some(floor), None);
        }
    }
}

/// The `p`-th percentile (0–100) of `values` by the nearest-rank method; `None` when empty.
pub fn percentile(values: &[f64], p: f64) -> Option<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted.get(rank.min(sorted.len()) - 1).copied()
}

/// Samples received as a percentage of those a device polled every `interval_s` should have
/// produced over `span_s` seconds (a whole day, or the part of today gone by).
pub fn completeness(received: u64, interval_s: f64, span_s: f64) -> Option<f64> {
    let expected = (span_s / interval_s).floor();
    (interval_s > 0.0 && expected >= 1.0).then(|| 100.0 * received as f64 / expected)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-02 00:00 China Standard Time, ns.
    const MIDNIGHT: i64 = 1_793_548_800 * NS_PER_S;

    fn at(minute: i64, second: i64) -> i64 {
        MIDNIGHT + (minute * 60 + second) * NS_PER_S
    }

    #[test]
    fn pressure_compliance_counts_samples_not_time_and_ignores_gaps() {
        // A point with an allowed band of 0.14–0.60 MPa: eight samples, a gap of an hour in the
        // middle (nothing counted for it), two below 0.14. By hand: 6 of 8 = 75 %.
        let series = [
            0.25, 0.26, 0.13, 0.24, /* gap */ 0.12, 0.27, 0.28, 0.59,
        ];
        let mut share = BandShare::default();
        for value in series {
            share.observe(value, Some(0.14), Some(0.60));
        }
        share.observe(f64::NAN, Some(0.14), Some(0.60));
        assert_eq!(
            share,
            BandShare {
                inside: 6,
                total: 8
            }
        );
        assert_eq!(share.rate_pct(), Some(75.0));
        assert_eq!(BandShare::default().rate_pct(), None);
    }

    /// The voltage qualification of one meter's phase over five minutes, by hand:
    /// minute 0: 230, 230 → 230.0 inside; minute 1: 190, 240 → 215.0 inside (both samples are
    /// outside, their minute is not); minute 2: 197, 198 → 197.5 outside; minute 3: no data;
    /// minute 4: 236 → outside. 2 of 4 minutes = 50 %.
    fn voltage_series() -> Vec<(i64, f64)> {
        vec![
            (at(0, 10), 230.0),
            (at(0, 40), 230.0),
            (at(1, 5), 190.0),
            (at(1, 35), 240.0),
            (at(2, 0), 197.0),
            (at(2, 59), 198.0),
            (at(4, 30), 236.0),
        ]
    }

    fn qualification(series: &[(i64, f64)], state: &mut (MinuteMeans, BandShare)) {
        for (t, v) in series {
            if let Some(mean) = state.0.observe(*t, *v, 60) {
                state.1.observe(mean, Some(198.0), Some(235.4));
            }
        }
    }

    #[test]
    fn voltage_qualification_is_the_share_of_one_minute_averages_in_the_band() {
        let mut state = (MinuteMeans::default(), BandShare::default());
        qualification(&voltage_series(), &mut state);
        if let Some(mean) = state.0.flush() {
            state.1.observe(mean, Some(198.0), Some(235.4));
        }
        assert_eq!(
            state.1,
            BandShare {
                inside: 2,
                total: 4
            }
        );
        assert_eq!(state.1.rate_pct(), Some(50.0));
    }

    #[test]
    fn a_restart_in_the_middle_of_the_day_loses_nothing() {
        let series = voltage_series();
        let mut state = (MinuteMeans::default(), BandShare::default());
        // Saved after the first three samples (in the middle of minute 1), restored, continued.
        qualification(&series[..3], &mut state);
        let saved = serde_json::to_string(&state).expect("serialise");
        let mut restored: (MinuteMeans, BandShare) = serde_json::from_str(&saved).expect("parse");
        qualification(&series[3..], &mut restored);
        if let Some(mean) = restored.0.flush() {
            restored.1.observe(mean, Some(198.0), Some(235.4));
        }
        assert_eq!(
            restored.1,
            BandShare {
                inside: 2,
                total: 4
            }
        );
    }

    #[test]
    fn days_are_local_and_a_clock_step_puts_samples_in_the_day_of_their_timestamp() {
        // 16:00 UTC is local midnight.
        assert_eq!(
            local_day(MIDNIGHT - NS_PER_S, 8.0) + 1,
            local_day(MIDNIGHT, 8.0)
        );
        // The clock is stepped back 6 minutes at 00:02 local: the next samples are stamped
        // 23:56–23:59 of the previous day and count there; the day after is unaffected.
        let before = local_day(at(2, 0), 8.0);
        let stepped = local_day(at(-4, 0), 8.0);
        assert_eq!(stepped, before - 1);
        // In a minute series, the step closes the open minute and starts the earlier one again.
        let mut minutes = MinuteMeans::default();
        assert_eq!(minutes.observe(at(2, 0), 230.0, 60), None);
        assert_eq!(minutes.observe(at(-4, 0), 220.0, 60), Some(230.0));
        assert_eq!(minutes.flush(), Some(220.0));
    }

    #[test]
    fn unbalance_p95_is_the_nearest_rank_of_the_minute_values() {
        // 20 one-minute unbalance values 0.1 … 2.0 %: rank ceil(0.95 × 20) = 19 → 1.9 %.
        let values: Vec<f64> = (1..=20).map(|i| f64::from(i) / 10.0).collect();
        assert_eq!(percentile(&values, 95.0), Some(1.9));
        assert_eq!(percentile(&[3.0], 95.0), Some(3.0));
        assert_eq!(percentile(&[], 95.0), None);
    }

    #[test]
    fn heating_hours_at_18_degrees_with_a_missing_hour() {
        // Hour means 18.5, 17.9, 18.0, (no data), 16.0 → 2 of 4 hours = 50 %.
        let mut share = HourShare::default();
        for (hour, values) in [
            (0, vec![18.4, 18.6]),
            (1, vec![17.9]),
            (2, vec![17.5, 18.5]),
            (4, vec![16.0]),
        ] {
            for (i, v) in values.into_iter().enumerate() {
                share.observe(at(hour * 60, i as i64 * 900), v, 18.0);
            }
        }
        share.flush(18.0);
        assert_eq!(
            share.share,
            BandShare {
                inside: 2,
                total: 4
            }
        );
    }

    #[test]
    fn completeness_is_received_over_expected_from_the_interval() {
        // A 10 s device over a whole day: 8640 expected; 8000 received → 92.59 %.
        let c = completeness(8000, 10.0, 86_400.0).expect("a figure");
        assert!((c - 8000.0 / 8640.0 * 100.0).abs() < 1e-9);
        assert_eq!(completeness(1, 60.0, 30.0), None, "less than one poll due");
    }
}
