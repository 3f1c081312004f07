//! The monthly community report: a month's closed days (and, for the running month, the open
//! days so far) aggregated per KPI against its target, with the daily trend, the worst days,
//! the alarms that mattered and the data completeness behind every figure. [`html`] renders it
//! as one self-contained page (no external assets; prints to PDF from a browser), naming rules
//! and devices as [`notes`] says.
//!
//! Monthly figures are made from the days' counts, not by averaging daily rates: a rate is
//! Σ inside / Σ total over the month, a mean Σ sum / Σ count, a 95th percentile the worst day's.

pub mod html;
pub mod notes;

use std::collections::BTreeMap;

use crate::kpi::store::KpiStore;
use crate::kpi::{day_of, definition, Aggregate, DayRecord, Definition, NotableAlarm};

/// The report's clock: China Standard Time.
pub const UTC_OFFSET_H: f64 = 8.0;

/// Below this completeness a device's figures are marked as resting on too little data.
pub const TRUSTED_COMPLETENESS_PCT: f64 = 95.0;

/// One KPI of one device (and phase or rule) over the month.
#[derive(Debug, Clone)]
pub struct Figure {
    pub definition: &'static Definition,
    pub device: String,
    pub subject: Option<String>,
    pub severity: Option<String>,
    pub value: f64,
    /// What the month's value was made from: Σ denominators (samples, minutes, clears …).
    pub basis: f64,
    /// (date, value) of each day that had the figure.
    pub daily: Vec<(String, f64)>,
    /// The device's completeness over the month, when it was measured.
    pub completeness: Option<f64>,
}

impl Figure {
    /// Whether the month meets the target (`None`: no target).
    pub fn met(&self) -> Option<bool> {
        self.definition.target.map(|t| t.met(self.value))
    }

    /// The days that met the target least, worst first (at most `n`).
    pub fn worst_days(&self, n: usize) -> Vec<(String, f64)> {
        let Some(target) = self.definition.target else {
            return Vec::new();
        };
        let mut days: Vec<(String, f64)> = self
            .daily
            .iter()
            .filter(|(_, v)| !target.met(*v))
            .cloned()
            .collect();
        days.sort_by(|a, b| match target {
            crate::kpi::Target::AtLeast(_) => a.1.total_cmp(&b.1),
            crate::kpi::Target::AtMost(_) => b.1.total_cmp(&a.1),
        });
        days.truncate(n);
        days
    }

    pub fn trusted(&self) -> bool {
        self.completeness
            .is_none_or(|c| c >= TRUSTED_COMPLETENESS_PCT)
    }
}

/// A month of one community.
#[derive(Debug, Clone)]
pub struct MonthReport {
    pub site: String,
    pub gateway: String,
    /// `YYYY-MM`.
    pub month: String,
    /// Days of the month with figures, and days in the month.
    pub days_with_data: usize,
    pub days_in_month: usize,
    /// Whether the month's last figures are of a day still running.
    pub includes_open_day: bool,
    pub figures: Vec<Figure>,
    pub notable: Vec<NotableAlarm>,
    /// Lines of the month's file that could not be read.
    pub unreadable_lines: usize,
}

/// Why a report cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{0:?} is not a month (expected YYYY-MM)")]
    Month(String),
    #[error("cannot read the KPI files: {0}")]
    Io(#[from] std::io::Error),
}

/// The first day number and the number of days of `month` (`YYYY-MM`).
pub fn month_days(month: &str) -> Result<(i64, usize), ReportError> {
    let bad = || ReportError::Month(month.to_string());
    let first = day_of(&format!("{month}-01")).ok_or_else(bad)?;
    if month.len() != 7 {
        return Err(bad());
    }
    let next = (28..=31)
        .rev()
        .find(|d| day_of(&format!("{month}-{d:02}")).is_some())
        .ok_or_else(bad)?;
    Ok((first, next))
}

impl MonthReport {
    /// The report of `month` from the stored days and `open` (the running days' figures, if
    /// the month is the current one).
    pub fn build(
        store: &KpiStore,
        month: &str,
        open: &[DayRecord],
        (site, gateway): (&str, &str),
    ) -> Result<MonthReport, ReportError> {
        let (first, length) = month_days(month)?;
        let stored = store.month(month)?;
        let mut days: BTreeMap<i64, DayRecord> =
            stored.days.into_iter().map(|d| (d.day, d)).collect();
        let mut includes_open_day = false;
        for record in open {
            if (first..first + length as i64).contains(&record.day)
                && !days.contains_key(&record.day)
            {
                includes_open_day = true;
                days.insert(record.day, record.clone());
            }
        }
        Ok(MonthReport {
            site: site.to_string(),
            gateway: gateway.to_string(),
            month: month.to_string(),
            days_with_data: days.len(),
            days_in_month: length,
            includes_open_day,
            figures: aggregate(days.values()),
            notable: notable(days.values()),
            unreadable_lines: stored.unreadable_lines,
        })
    }

    /// The figures of one KPI.
    pub fn of(&self, kpi: &str) -> impl Iterator<Item = &Figure> {
        let kpi = kpi.to_string();
        self.figures
            .iter()
            .filter(move |f| f.definition.name == kpi)
    }
}

/// The month's notable alarms, with the clears that came on later days, and the alarms raised
/// before the month that were still raised in it.
fn notable<'a>(days: impl Iterator<Item = &'a DayRecord> + Clone) -> Vec<NotableAlarm> {
    let clears: BTreeMap<&str, i64> = days
        .clone()
        .flat_map(|d| d.cleared.iter().map(|(id, at)| (id.as_str(), *at)))
        .collect();
    let mut notable: Vec<NotableAlarm> = days
        .clone()
        .flat_map(|d| d.notable.iter().cloned())
        .collect();
    let month_start = days.clone().map(|d| d.day).min().unwrap_or(0);
    for day in days {
        for alarm in &day.active_at_end {
            let before = crate::kpi::local_day(alarm.raised_ns, UTC_OFFSET_H) < month_start;
            if before && !notable.iter().any(|n| n.id == alarm.id) {
                notable.push(NotableAlarm {
                    message: "本月之前触发 raised before this month".into(),
                    ..alarm.clone()
                });
            }
        }
    }
    for n in &mut notable {
        if n.cleared_ns.is_none() {
            n.cleared_ns = clears.get(n.id.as_str()).copied();
        }
    }
    notable
}

type Key = (String, String, Option<String>, Option<String>);

/// The month's figure per (KPI, device, subject, severity).
fn aggregate<'a>(days: impl Iterator<Item = &'a DayRecord>) -> Vec<Figure> {
    struct Sums {
        numerator: f64,
        denominator: f64,
        max: f64,
        sum: f64,
        daily: Vec<(String, f64)>,
    }
    let mut groups: BTreeMap<Key, Sums> = BTreeMap::new();
    for day in days {
        for v in &day.values {
            let key = (
                v.kpi.clone(),
                v.device.clone(),
                v.subject.clone(),
                v.severity.clone(),
            );
            let sums = groups.entry(key).or_insert(Sums {
                numerator: 0.0,
                denominator: 0.0,
                max: f64::NEG_INFINITY,
                sum: 0.0,
                daily: Vec::new(),
            });
            sums.numerator += v.numerator.unwrap_or(v.value);
            sums.denominator += v.denominator.unwrap_or(1.0);
            sums.max = sums.max.max(v.value);
            sums.sum += v.value;
            sums.daily.push((day.date.clone(), v.value));
        }
    }
    let completeness: BTreeMap<String, f64> = groups
        .iter()
        .filter(|((kpi, ..), s)| kpi == "completeness" && s.denominator > 0.0)
        .map(|((_, device, ..), s)| (device.clone(), 100.0 * s.numerator / s.denominator))
        .collect();
    groups
        .into_iter()
        .filter_map(|((kpi, device, subject, severity), s)| {
            let definition = definition(&kpi)?;
            let value = match definition.aggregate {
                Aggregate::Ratio => 100.0 * s.numerator / s.denominator,
                Aggregate::Mean => s.numerator / s.denominator,
                Aggregate::Max => s.max,
                Aggregate::Sum => s.sum,
            };
            value.is_finite().then(|| Figure {
                definition,
                completeness: completeness.get(&device).copied(),
                device,
                subject,
                severity,
                value,
                basis: s.denominator,
                daily: s.daily,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests;
