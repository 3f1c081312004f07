//! The open days: each sample is counted into the local day of its own timestamp, each alarm
//! event into the day it happened; a day is closed five minutes after its local midnight
//! ([`CLOSE_AFTER_S`], so late samples still count) into a final [`DayRecord`]. Samples for a
//! day already closed are counted as late and otherwise ignored; samples more than a day ahead
//! of the clock are ignored (a device with a wrong clock must not open days).
//!
//! The ledger is plain data: [`super::store`] saves it every minute and at every close, so a
//! restart continues the day where it stood (at most a minute of counting is lost to a power
//! cut). Time the gateway was not running counts against completeness and uptime, never as
//! compliant or not.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::model::{AlarmEvent, Sample, Severity};
use crate::rules::condition::evaluate;
use crate::rules::engine::{ActiveAlarm, DeviceRules};
use crate::rules::machine::Condition;

use super::accumulate::{local_day, percentile, BandShare, Buckets, HourShare};
use super::plan::DeviceKpis;
use super::{date_of, DayRecord, KpiValue, NotableAlarm};

/// Seconds after local midnight at which a day is closed.
pub const CLOSE_AFTER_S: i64 = 300;
/// Longest gap between two ticks still counted as uptime when the stage ticks every second.
pub const LIVE_UPTIME_STEP_S: f64 = 5.0;
/// Raised warn and crit alarms kept per day for the report.
const MAX_NOTABLE: usize = 200;
/// Nights in the MNF baseline (DOMAIN.md §4.2).
const BASELINE_NIGHTS: usize = 14;
/// Nights needed before a baseline is given.
const MIN_BASELINE_NIGHTS: usize = 3;
/// Devices counted per day at most (publishers inventing ids cannot grow the ledger).
const MAX_DEVICES: usize = 5000;

const NS: i64 = 1_000_000_000;

/// What the KPIs need from the configuration.
#[derive(Debug, Clone)]
pub struct KpiParams {
    /// The gateway's id: the `device` of its uptime.
    pub gateway: String,
    pub utc_offset_h: f64,
    /// Households behind the DMA meter (for the leakage estimate; none: no estimate).
    pub households: Option<u32>,
    /// Legitimate night use per household, L/h (DOMAIN.md §4.2: 1.7).
    pub night_use_l_per_household_h: f64,
    /// Hours of night-rate leakage per day (24 at constant pressure; DOMAIN.md §4.2's site: 21).
    pub night_day_factor_h: f64,
    /// Longest gap between two ticks counted as uptime: a longer one was the gateway down.
    pub uptime_step_s: f64,
    /// The heating season ((month, day) to (month, day), inclusive); none: all year.
    pub heating_season: Option<crate::calendar::Season>,
}

/// The open days and what carries from one day to the next.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Ledger {
    days: BTreeMap<i64, Day>,
    /// MNF of earlier closed nights per device, oldest first.
    mnf_history: BTreeMap<String, VecDeque<f64>>,
    /// The last day closed.
    closed_through: Option<i64>,
    /// Not saved: the time a restart took is not uptime.
    #[serde(skip)]
    last_tick_ns: Option<i64>,
    /// Samples that came after their day was closed.
    pub late_samples: u64,
    #[serde(skip)]
    plans: HashMap<String, Arc<DeviceKpis>>,
    /// The flows of zones another device measures, for their pressure compliance (W5).
    #[serde(skip)]
    zone_flows: crate::rules::zone_flow::ZoneFlows,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Day {
    /// When this day started being observed (its midnight, or later on the first day).
    opened_ns: i64,
    up_s: f64,
    devices: BTreeMap<String, DeviceDay>,
    alarms: Vec<AlarmCount>,
    notable: Vec<NotableAlarm>,
    /// Clears of notable alarms whose raise is in a closed day.
    cleared: Vec<(String, i64)>,
    /// Incidents the group robots were told of (alarms under one root count once).
    #[serde(default)]
    incidents: u32,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct AlarmCount {
    device: String,
    rule: String,
    severity: String,
    raises: u64,
    clears: u64,
    clear_s: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct DeviceDay {
    interval_s: f64,
    samples: u64,
    slot_s: i64,
    /// Bit per slot of the day with at least one sample.
    slots: Vec<u64>,
    shares: BTreeMap<String, BandShare>,
    voltage: BTreeMap<String, (Buckets, BandShare)>,
    phases: Option<PhaseMinute>,
    /// Minutes per unbalance, in 0.01 % steps (a histogram keeps the ledger small).
    unbalance: BTreeMap<u32, u32>,
    room: Option<HourShare>,
    makeup: (f64, u64),
    /// (sum, count) per 15 minutes of the night window.
    night: Vec<(f64, u32)>,
    /// The totaliser's first and last reading of the day: ((ns, m³), (ns, m³)).
    volume: Option<((i64, f64), (i64, f64))>,
}

/// Sums of the three line voltages in one minute.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
struct PhaseMinute {
    minute: i64,
    sums: [f64; 3],
    counts: [u32; 3],
}

impl PhaseMinute {
    /// The negative-sequence unbalance of the minute's mean line voltages, in percent, when all
    /// three were seen.
    fn unbalance(&self) -> Option<f64> {
        if self.counts.contains(&0) {
            return None;
        }
        crate::rules::condition::negative_sequence_pct(std::array::from_fn(|i| {
            self.sums[i] / f64::from(self.counts[i])
        }))
    }
}

fn number(sample: &Sample, field: &str) -> Option<f64> {
    sample
        .field(field)
        .and_then(|v| v.as_f64())
        .filter(|v| v.is_finite())
}

impl KpiParams {
    pub fn of(config: &crate::config::GatewayConfig) -> KpiParams {
        KpiParams {
            gateway: config.gateway.id.clone(),
            utc_offset_h: config.kpi.utc_offset_h,
            households: config.kpi.households,
            night_use_l_per_household_h: config.kpi.night_use_l_per_household_h,
            night_day_factor_h: config.kpi.night_day_factor_h,
            uptime_step_s: LIVE_UPTIME_STEP_S,
            heating_season: config.kpi.heating_season(),
        }
    }

    /// Whether local day `day` is in the heating season.
    pub fn in_heating_season(&self, day: i64) -> bool {
        self.heating_season
            .is_none_or(|season| season.contains(day))
    }
}

impl Ledger {
    /// Counts `sample` (the clock reads `now_ns`); `rules` gives its device's, asked for only
    /// the first time the device is seen.
    pub fn observe<'a>(
        &mut self,
        sample: &Sample,
        now_ns: i64,
        rules: impl FnOnce() -> Option<DeviceRules<'a>>,
        params: &KpiParams,
    ) {
        let offset = params.utc_offset_h;
        let day = local_day(sample.time_ns, offset);
        if self.closed_through.is_some_and(|closed| day <= closed) {
            self.late_samples += 1;
            return;
        }
        if day > local_day(now_ns, offset) + 1 {
            return;
        }
        let plan = match self.plans.get(&*sample.device) {
            Some(plan) => Arc::clone(plan),
            None => {
                let Some(rules) = rules() else { return };
                let plan = Arc::new(DeviceKpis::of(&rules));
                if let Some(source) = plan.site.as_ref().and_then(|s| s.flow_from.as_ref()) {
                    self.zone_flows.watch(source);
                }
                self.plans
                    .insert(sample.device.to_string(), Arc::clone(&plan));
                plan
            }
        };
        self.zone_flows.observe(sample);
        let zone_flow = self.zone_flows.flow_for(plan.site.as_ref(), sample.time_ns);
        let open = self.open(day, sample.time_ns, offset);
        if open.devices.len() >= MAX_DEVICES && !open.devices.contains_key(&*sample.device) {
            return;
        }
        // Looked up first: the key is allocated once a day per device, not per sample.
        if !open.devices.contains_key(&*sample.device) {
            let slot_s = (plan.interval_s.ceil() as i64).max(60);
            let day = DeviceDay {
                interval_s: plan.interval_s,
                slot_s,
                slots: vec![0; (86_400 / slot_s as usize).div_ceil(64) + 1],
                ..DeviceDay::default()
            };
            open.devices.insert(sample.device.to_string(), day);
        }
        let Some(device) = open.devices.get_mut(&*sample.device) else {
            return;
        };
        device.observe(
            sample,
            &plan,
            offset,
            params.in_heating_season(day),
            zone_flow,
        );
    }

    /// Counts an alarm event into the day it happened.
    /// Counts `count` incidents told at `time_ns`.
    pub fn incidents(&mut self, count: u32, time_ns: i64, params: &KpiParams) {
        let day = local_day(time_ns, params.utc_offset_h);
        if count == 0 || self.closed_through.is_some_and(|closed| day <= closed) {
            return;
        }
        self.open(day, time_ns, params.utc_offset_h).incidents += count;
    }

    pub fn alarm(&mut self, event: &AlarmEvent, params: &KpiParams) {
        let day = local_day(event.time_ns, params.utc_offset_h);
        if self.closed_through.is_some_and(|closed| day <= closed) {
            return;
        }
        let raised_ns = event
            .id
            .rsplit('/')
            .next()
            .and_then(|t| t.parse::<i64>().ok());
        let mut closed_raise = false;
        if !event.firing {
            // The notable entry may sit in an earlier day, open or already closed.
            closed_raise = event.severity >= Severity::Warn;
            for open in self.days.values_mut() {
                if let Some(n) = open.notable.iter_mut().find(|n| n.id == event.id) {
                    n.cleared_ns = Some(event.time_ns);
                    closed_raise = false;
                }
            }
        }
        let open = self.open(day, event.time_ns, params.utc_offset_h);
        if closed_raise && open.cleared.len() < MAX_NOTABLE {
            open.cleared.push((event.id.clone(), event.time_ns));
        }
        let severity = event.severity.name().to_string();
        let index = match open
            .alarms
            .iter()
            .position(|a| a.device == *event.device && a.rule == *event.rule)
        {
            Some(i) => i,
            None => {
                open.alarms.push(AlarmCount {
                    device: event.device.to_string(),
                    rule: event.rule.to_string(),
                    severity: severity.clone(),
                    ..AlarmCount::default()
                });
                open.alarms.len() - 1
            }
        };
        let count = &mut open.alarms[index];
        if event.firing {
            count.raises += 1;
            if event.severity >= Severity::Warn && open.notable.len() < MAX_NOTABLE {
                open.notable.push(NotableAlarm {
                    id: event.id.clone(),
                    device: event.device.to_string(),
                    rule: event.rule.to_string(),
                    severity,
                    raised_ns: event.time_ns,
                    cleared_ns: None,
                    message: event.message.clone(),
                });
            }
        } else if let Some(raised) = raised_ns {
            count.clears += 1;
            count.clear_s += ((event.time_ns - raised) as f64 / 1e9).max(0.0);
        }
    }

    /// Counts the time since the last tick as uptime and closes the days that are over; their
    /// final records, with the warn and crit alarms `active` gives as still raised (asked for
    /// only when a day closes).
    pub fn tick(
        &mut self,
        now_ns: i64,
        params: &KpiParams,
        active: impl FnOnce() -> Vec<ActiveAlarm>,
    ) -> Vec<DayRecord> {
        let offset = params.utc_offset_h;
        if let Some(last) = self.last_tick_ns {
            let step = ((now_ns - last) as f64 / 1e9).clamp(0.0, params.uptime_step_s);
            self.open(local_day(now_ns, offset), now_ns, offset).up_s += step;
        }
        self.last_tick_ns = Some(now_ns);
        let local_s = now_ns.div_euclid(NS) + (offset * 3600.0) as i64;
        let over: Vec<i64> = self
            .days
            .keys()
            .copied()
            .filter(|d| (d + 1) * 86_400 + CLOSE_AFTER_S <= local_s)
            .collect();
        let mut closed = Vec::new();
        for day in over {
            let Some(open) = self.days.remove(&day) else {
                continue;
            };
            let end = day_start_ns(day + 1, offset);
            let record = self.finish(day, open, end, true, params);
            for value in record.values.iter().filter(|v| v.kpi == "mnf") {
                let history = self.mnf_history.entry(value.device.clone()).or_default();
                // A leaking night does not join the baseline (W16's tests).
                let past: Vec<f64> = history.iter().copied().collect();
                let baseline = (past.len() >= MIN_BASELINE_NIGHTS)
                    .then(|| percentile(&past, 50.0))
                    .flatten();
                let night = self.plans.get(&value.device);
                let night = night.and_then(|plan| plan.night.as_ref());
                if night.is_some_and(|(_, night)| night.suspect(value.value, baseline)) {
                    continue;
                }
                history.push_back(value.value);
                while history.len() > BASELINE_NIGHTS {
                    history.pop_front();
                }
            }
            self.closed_through = Some(self.closed_through.map_or(day, |c| c.max(day)));
            closed.push(record);
        }
        if !closed.is_empty() {
            let still_raised = NotableAlarm::still_raised(&active());
            for record in &mut closed {
                record.active_at_end = still_raised.clone();
            }
        }
        closed
    }

    /// The figures of the open days so far (not final).
    pub fn snapshot(&self, now_ns: i64, params: &KpiParams) -> Vec<DayRecord> {
        self.days
            .iter()
            .map(|(day, open)| {
                let end = now_ns.min(day_start_ns(day + 1, params.utc_offset_h));
                self.finish(*day, open.clone(), end, false, params)
            })
            .collect()
    }

    fn open(&mut self, day: i64, at_ns: i64, offset: f64) -> &mut Day {
        self.days.entry(day).or_insert_with(|| Day {
            opened_ns: at_ns.max(day_start_ns(day, offset)),
            ..Day::default()
        })
    }

    /// A day's record from its accumulators, observed up to `end_ns`.
    fn finish(
        &self,
        day: i64,
        mut open: Day,
        end_ns: i64,
        complete: bool,
        params: &KpiParams,
    ) -> DayRecord {
        let span_s = ((end_ns - open.opened_ns) as f64 / 1e9).max(0.0);
        let mut values = Vec::new();
        let mut push = |kpi: &str,
                        device: &str,
                        subject: Option<&str>,
                        value: f64,
                        ratio: Option<(f64, f64)>| {
            if value.is_finite() {
                values.push(KpiValue {
                    kpi: kpi.to_string(),
                    device: device.to_string(),
                    subject: subject.map(str::to_string),
                    severity: None,
                    value,
                    numerator: ratio.map(|r| r.0),
                    denominator: ratio.map(|r| r.1),
                });
            }
        };
        let rate = |inside: f64, total: f64| (total > 0.0).then(|| 100.0 * inside / total);
        if span_s > 0.0 {
            let up = open.up_s.min(span_s);
            push(
                "gateway_uptime",
                &params.gateway,
                None,
                100.0 * up / span_s,
                Some((up, span_s)),
            );
        }
        for (id, device) in &mut open.devices {
            let expected = (span_s / device.interval_s.max(1e-3)).floor();
            if expected >= 1.0 {
                let got = (device.samples as f64).min(expected);
                push(
                    "completeness",
                    id,
                    None,
                    100.0 * got / expected,
                    Some((got, expected)),
                );
            }
            let slots = (span_s / device.slot_s as f64).ceil();
            if slots >= 1.0 {
                let seen =
                    f64::from(device.slots.iter().map(|w| w.count_ones()).sum::<u32>()).min(slots);
                push(
                    "availability",
                    id,
                    None,
                    100.0 * seen / slots,
                    Some((seen, slots)),
                );
            }
            for (kpi, share) in &device.shares {
                if let Some(value) = rate(share.inside as f64, share.total as f64) {
                    push(
                        kpi,
                        id,
                        None,
                        value,
                        Some((share.inside as f64, share.total as f64)),
                    );
                }
            }
            for (field, (minutes, share)) in &mut device.voltage {
                let plan = self.plans.get(id);
                let band = plan.and_then(|p| p.voltage.iter().find(|(f, _, _)| f == field));
                if let (Some(mean), Some((_, low, high))) = (minutes.flush(), band) {
                    share.observe(mean, Some(*low), Some(*high));
                }
                if let Some(value) = rate(share.inside as f64, share.total as f64) {
                    let counts = Some((share.inside as f64, share.total as f64));
                    push("voltage_qualification", id, Some(field), value, counts);
                }
            }
            if let Some(u) = device.phases.take().and_then(|m| m.unbalance()) {
                device.count_unbalance(u);
            }
            let minutes: u32 = device.unbalance.values().sum();
            if let Some(p95) = histogram_percentile(&device.unbalance, 95.0) {
                push(
                    "voltage_unbalance_p95",
                    id,
                    None,
                    p95,
                    Some((p95, f64::from(minutes))),
                );
            }
            if let (Some(room), Some(plan)) = (&mut device.room, self.plans.get(id)) {
                if let Some((_, floor)) = &plan.room {
                    room.flush(*floor);
                }
                let share = room.share;
                if let Some(value) = rate(share.inside as f64, share.total as f64) {
                    push(
                        "room_hours_at_18",
                        id,
                        None,
                        value,
                        Some((share.inside as f64, share.total as f64)),
                    );
                }
            }
            let (sum, count) = device.makeup;
            if count > 0 {
                push(
                    "makeup_ratio",
                    id,
                    None,
                    sum / count as f64,
                    Some((sum, count as f64)),
                );
            }
            if let Some(mnf) = night_minimum(&device.night) {
                push("mnf", id, None, mnf, Some((mnf, 1.0)));
                let history: Vec<f64> = self
                    .mnf_history
                    .get(id)
                    .map(|h| h.iter().copied().collect())
                    .unwrap_or_default();
                if history.len() >= MIN_BASELINE_NIGHTS {
                    if let Some(baseline) = percentile(&history, 50.0) {
                        push("mnf_baseline", id, None, baseline, Some((baseline, 1.0)));
                    }
                }
                if let Some(households) = params.households {
                    let legitimate =
                        f64::from(households) * params.night_use_l_per_household_h / 1000.0;
                    let leakage = (mnf - legitimate).max(0.0) * params.night_day_factor_h;
                    push("leakage_estimate", id, None, leakage, None);
                }
            }
        }
        for (id, device) in &open.devices {
            if let Some(loss) = self.water_loss(id, device, &open.devices) {
                push(
                    "water_loss_rate",
                    id,
                    None,
                    100.0 * loss.0 / loss.1,
                    Some(loss),
                );
            }
        }
        let mut gas = 0.0;
        for count in &open.alarms {
            if count.rule.starts_with("G5") {
                gas += count.raises as f64;
            }
            if count.raises > 0 {
                values.push(KpiValue {
                    kpi: "alarm_raises".into(),
                    device: count.device.clone(),
                    subject: Some(count.rule.clone()),
                    severity: Some(count.severity.clone()),
                    value: count.raises as f64,
                    numerator: None,
                    denominator: None,
                });
            }
            if count.clears > 0 {
                values.push(KpiValue {
                    kpi: "alarm_clear_time".into(),
                    device: count.device.clone(),
                    subject: Some(count.rule.clone()),
                    severity: Some(count.severity.clone()),
                    value: count.clear_s / count.clears as f64,
                    numerator: Some(count.clear_s),
                    denominator: Some(count.clears as f64),
                });
            }
        }
        let gas_watched = self.plans.values().any(|p| {
            p.shares
                .iter()
                .any(|(k, _)| *k == "gas_pressure_compliance")
        });
        values.push(KpiValue {
            kpi: "incidents".into(),
            device: "site".into(),
            subject: None,
            severity: None,
            value: f64::from(open.incidents),
            numerator: None,
            denominator: None,
        });
        if gas_watched || gas > 0.0 {
            values.push(KpiValue {
                kpi: "gas_alarms".into(),
                device: "site".into(),
                subject: None,
                severity: None,
                value: gas,
                numerator: None,
                denominator: None,
            });
        }
        DayRecord {
            day,
            date: date_of(day),
            complete,
            values,
            notable: open.notable,
            cleared: open.cleared,
            active_at_end: Vec::new(),
        }
    }
}

/// Least share of the inflow meter's span a sub-meter must cover for the day's balance.
const BALANCE_COVERAGE: f64 = 0.9;

impl Ledger {
    /// (loss m³, inflow m³) of an inflow meter's day, its sub-meters' volumes scaled to its
    /// span; `None` when it is no inflow meter or a meter has too little of the day.
    fn water_loss(
        &self,
        id: &str,
        inflow: &DeviceDay,
        devices: &BTreeMap<String, DeviceDay>,
    ) -> Option<(f64, f64)> {
        let subs = &self.plans.get(id)?.sub_meters;
        let ((t0, v0), (t1, v1)) = inflow.volume?;
        let span = (t1 - t0) as f64;
        if subs.is_empty() || span <= 0.0 || v1 <= v0 {
            return None;
        }
        let mut metered = 0.0;
        for sub in subs {
            let ((s0, w0), (s1, w1)) = devices.get(sub)?.volume?;
            let covered = (s1 - s0) as f64;
            if covered < BALANCE_COVERAGE * span || w1 < w0 {
                return None;
            }
            metered += (w1 - w0) * span / covered;
        }
        Some((v1 - v0 - metered, v1 - v0))
    }
}

/// The local midnight starting `day`, ns.
pub fn day_start_ns(day: i64, utc_offset_h: f64) -> i64 {
    (day * 86_400 - (utc_offset_h * 3600.0) as i64) * NS
}

/// The lowest mean of four consecutive 15-minute means (the lowest 1-hour rolling mean) of the
/// night window, when some hour of it is complete.
fn night_minimum(buckets: &[(f64, u32)]) -> Option<f64> {
    buckets
        .windows(4)
        .filter(|w| w.iter().all(|(_, n)| *n > 0))
        .map(|w| w.iter().map(|(s, n)| s / f64::from(*n)).sum::<f64>() / 4.0)
        .min_by(f64::total_cmp)
}

/// The `p`-th percentile (nearest rank) of a histogram of 0.01 % steps.
fn histogram_percentile(histogram: &BTreeMap<u32, u32>, p: f64) -> Option<f64> {
    let total: u32 = histogram.values().sum();
    let rank = ((p / 100.0) * f64::from(total)).ceil().max(1.0) as u32;
    let mut seen = 0;
    histogram.iter().find_map(|(step, count)| {
        seen += count;
        (seen >= rank).then(|| f64::from(*step) / 100.0)
    })
}

impl DeviceDay {
    fn count_unbalance(&mut self, pct: f64) {
        let step = (pct * 100.0).round().clamp(0.0, f64::from(u32::MAX)) as u32;
        *self.unbalance.entry(step).or_default() += 1;
    }

    fn observe(
        &mut self,
        sample: &Sample,
        plan: &DeviceKpis,
        offset: f64,
        heating: bool,
        zone_flow: Option<f64>,
    ) {
        let t = sample.time_ns;
        let local_s = t.div_euclid(NS) + (offset * 3600.0) as i64;
        let second_of_day = local_s.rem_euclid(86_400);
        self.samples += 1;
        let slot = (second_of_day / self.slot_s) as usize;
        if let Some(word) = self.slots.get_mut(slot / 64) {
            *word |= 1 << (slot % 64);
        }
        // Every sample goes through here: state is looked up by borrowed key, and a key is
        // allocated only the first time (once a day per device).
        for (kpi, rules) in &plan.shares {
            let (mut judged, mut active) = (false, false);
            for judgement in rules
                .iter()
                .filter_map(|r| evaluate(r, sample, plan.site.as_ref(), zone_flow))
            {
                judged = true;
                active |= judgement.condition == Condition::Active;
            }
            if judged {
                if !self.shares.contains_key(*kpi) {
                    self.shares.insert(kpi.to_string(), BandShare::default());
                }
                if let Some(share) = self.shares.get_mut(*kpi) {
                    share.total += 1;
                    share.inside += u64::from(!active);
                }
            }
        }
        for (field, low, high) in &plan.voltage {
            if let Some(v) = number(sample, field) {
                if !self.voltage.contains_key(field) {
                    self.voltage.insert(field.clone(), Default::default());
                }
                let Some((minutes, share)) = self.voltage.get_mut(field) else {
                    continue;
                };
                if let Some(mean) = minutes.observe(t, v, 60) {
                    share.observe(mean, Some(*low), Some(*high));
                }
            }
        }
        if plan.unbalance.len() == 3 {
            let minute = t.div_euclid(60 * NS);
            if self.phases.is_some_and(|p| p.minute != minute) {
                if let Some(u) = self.phases.take().and_then(|p| p.unbalance()) {
                    self.count_unbalance(u);
                }
            }
            let phases = self.phases.get_or_insert(PhaseMinute {
                minute,
                ..PhaseMinute::default()
            });
            for (i, field) in plan.unbalance.iter().enumerate() {
                if let Some(v) = number(sample, field) {
                    phases.sums[i] += v;
                    phases.counts[i] += 1;
                }
            }
        }
        if let Some((field, floor)) = plan.room.as_ref().filter(|_| heating) {
            if let Some(v) = number(sample, field) {
                self.room
                    .get_or_insert_with(HourShare::default)
                    .observe(t, v, *floor);
            }
        }
        if let Some((field, circulation)) = &plan.makeup {
            if let Some(v) = number(sample, field) {
                self.makeup.0 += v / circulation * 100.0;
                self.makeup.1 += 1;
            }
        }
        if !plan.totaliser.is_empty() {
            let total = plan
                .totaliser
                .iter()
                .try_fold(0.0, |sum, f| number(sample, f).map(|v| sum + v));
            if let Some(total) = total {
                let (first, last) = self.volume.get_or_insert(((t, total), (t, total)));
                if t < first.0 {
                    *first = (t, total);
                }
                if t >= last.0 {
                    *last = (t, total);
                }
            }
        }
        if let Some((field, night)) = &plan.night {
            let (start_h, end_h) = (&night.start_h, &night.end_h);
            let hour = second_of_day as f64 / 3600.0;
            if let (Some(v), true) = (number(sample, field), hour >= *start_h && hour < *end_h) {
                let buckets = ((end_h - start_h) * 4.0).ceil() as usize;
                self.night.resize(buckets, (0.0, 0));
                let i = ((hour - start_h) * 4.0) as usize;
                if let Some(bucket) = self.night.get_mut(i) {
                    bucket.0 += v;
                    bucket.1 += 1;
                }
            }
        }
    }
}
