//! `retrofit-gateway demo-month`: the demo community replayed through a month in one-minute
//! steps ([`super::replay`]), every sample through the rule packs and the KPI ledger as the
//! gateway would count them, the closed days stored under a data directory, and the month's
//! report written. Two weeks before the month are replayed first so that the night-flow
//! baselines exist; their days are not stored.
//!
//! The month's events: a DMA main burst (the `leak` fault, +6 m³/h) from the 12th 14:00 to
//! the 15th 10:00, a voltage sag on the 18th 09:00–11:00 (the supply at 84 % of its usual level, 193 V), a cold week in
//! one sample flat (16.8 °C) from the 20th to the 26th, and the gateway itself off on the 8th
//! 02:00–06:00 (the report must show that day's figures as resting on less data). Every device
//! is read once a minute, so that is the interval completeness is judged by.

use std::path::PathBuf;

use anyhow::{bail, Context as _};
use retrofit_sim::faults::{Fault, FaultKind};

use super::replay::Replay;
use super::DEMO_MQTT_PREFIX;
use crate::kpi::ledger::{day_start_ns, KpiParams, Ledger};
use crate::kpi::store::KpiStore;
use crate::kpi::DayRecord;
use crate::report::notes::ReportNotes;
use crate::report::{html, month_days, MonthReport};
use crate::rules::engine::RuleEngine;

/// Seconds between two replayed samples of each device.
const STEP_S: i64 = 60;
/// Days replayed before the month for the night-flow baselines.
const WARM_UP_DAYS: i64 = 14;

/// What `demo-month` does.
#[derive(Debug, Clone)]
pub struct MonthOptions {
    /// The built-in demo config when `None`.
    pub config: Option<PathBuf>,
    /// `YYYY-MM`.
    pub month: String,
    /// Where the KPI files go (`<data_dir>/kpi/`); the month's file is written afresh.
    pub data_dir: PathBuf,
    /// The report.
    pub output: PathBuf,
    /// Play the month's events (a burst, a sag, a cold week, the gateway off for four hours);
    /// without them the month is the renovated community on ordinary days.
    pub faults: bool,
}

/// What the month gave.
#[derive(Debug, Clone)]
pub struct MonthSummary {
    pub days: usize,
    pub samples: u64,
    pub alarms_raised: usize,
    /// Incidents the group robots would have been told of.
    pub incidents: u32,
    /// Raises in the month per rule key, for a person to read.
    pub raised_by_rule: std::collections::BTreeMap<String, usize>,
}

/// The gateway is down (a power cut in the pump room) from the 8th 02:00 to 06:00.
const OUTAGE: ((i64, i64), (i64, i64)) = ((8, 2), (8, 6));

/// A fault on from day `from` (1-based) at `from_h` to day `to` at `to_h`.
struct Episode {
    fault: Fault,
    from: (i64, i64),
    to: (i64, i64),
}

fn episodes() -> Vec<Episode> {
    vec![
        Episode {
            fault: Fault::plant(FaultKind::Leak),
            from: (12, 14),
            to: (15, 10),
        },
        Episode {
            fault: Fault::plant(FaultKind::VoltageSag),
            from: (18, 9),
            to: (18, 11),
        },
        Episode {
            fault: Fault::on(FaultKind::ColdFlat, "room_11-2-0901"),
            from: (20, 0),
            to: (27, 0),
        },
    ]
}

/// Replays the month and writes its report.
pub fn run(options: &MonthOptions) -> anyhow::Result<MonthSummary> {
    let mut config = super::builtin::load(options.config.as_deref()).with_context(|| {
        let name = options.config.as_deref();
        format!(
            "loading {}",
            name.unwrap_or(super::builtin::DEMO_CONFIG.as_ref())
                .display()
        )
    })?;
    config.gateway.gateway.data_dir = options.data_dir.clone();
    // Every device is read once a step: that is the interval its completeness is judged by.
    let step = crate::config::ConfigDuration::from_millis(STEP_S as u64 * 1000);
    for device in &mut config.gateway.device {
        device.interval = step;
    }
    for mapping in config
        .gateway
        .mqtt_source
        .iter_mut()
        .flat_map(|s| s.mappings.iter_mut())
    {
        mapping.interval = step;
    }
    let (first_day, length) = month_days(&options.month)?;
    let mut params = KpiParams::of(&config.gateway);
    params.uptime_step_s = STEP_S as f64 + 1.0;
    let offset = params.utc_offset_h;
    let start_s = day_start_ns(first_day - WARM_UP_DAYS, offset) / 1_000_000_000;
    let month_start_s = day_start_ns(first_day, offset) / 1_000_000_000;
    let end_s = day_start_ns(first_day + length as i64, offset) / 1_000_000_000;

    let store = KpiStore::new(&options.data_dir);
    let month_file = options
        .data_dir
        .join(format!("kpi/{}.jsonl", options.month));
    if month_file.exists() {
        std::fs::remove_file(&month_file)
            .with_context(|| format!("replacing {}", month_file.display()))?;
    }
    let mut engine = RuleEngine::new(&config, None, start_s * 1_000_000_000);
    let mut incidents = crate::rules::incident::IncidentBook::of(&config);
    let mut replay = Replay::new(&config, start_s as f64, 2025, DEMO_MQTT_PREFIX);
    let mut ledger = Ledger::default();
    let mut stored: Vec<DayRecord> = Vec::new();
    let mut summary = MonthSummary {
        days: 0,
        samples: 0,
        alarms_raised: 0,
        incidents: 0,
        raised_by_rule: std::collections::BTreeMap::new(),
    };
    let at = |(day, hour): (i64, i64)| month_start_s + (day - 1) * 86_400 + hour * 3600;
    let episodes = if options.faults {
        episodes()
    } else {
        Vec::new()
    };
    // Past the month's end by the closing grace, so that its last day closes.
    for t in (start_s..=end_s + 600).step_by(STEP_S as usize) {
        // The gateway is off: no samples, no ticks.
        if options.faults && (at(OUTAGE.0)..at(OUTAGE.1)).contains(&t) {
            continue;
        }
        for episode in &episodes {
            if t == at(episode.from) {
                replay.world.inject(episode.fault.clone());
            }
            if t == at(episode.to) {
                replay.world.clear(&episode.fault);
            }
        }
        let now_ns = t * 1_000_000_000;
        let mut events = Vec::new();
        for sample in replay.step(t).map_err(anyhow::Error::msg)? {
            events.extend(engine.evaluate(&sample));
            ledger.observe(
                &sample,
                now_ns,
                || engine.device_rules(&sample.device),
                &params,
            );
            summary.samples += u64::from(t >= month_start_s && t < end_s);
        }
        events.extend(engine.tick(now_ns));
        for event in &events {
            incidents.observe(event);
        }
        incidents.tick(now_ns);
        let told = incidents.take_told();
        ledger.incidents(told, now_ns, &params);
        if t >= month_start_s && t < end_s {
            summary.incidents += told;
        }
        for event in &events {
            ledger.alarm(event, &params);
            if event.firing && t >= month_start_s && t < end_s {
                summary.alarms_raised += 1;
                *summary
                    .raised_by_rule
                    .entry(event.rule.to_string())
                    .or_default() += 1;
            }
        }
        let closed = ledger.tick(now_ns, &params, || engine.active());
        stored.extend(
            closed
                .into_iter()
                .filter(|d| (first_day..first_day + length as i64).contains(&d.day)),
        );
    }
    if stored.len() != length {
        bail!("{} of {length} days closed", stored.len());
    }
    store.append(&stored)?;
    summary.days = stored.len();
    let report = MonthReport::build(
        &store,
        &options.month,
        &[],
        (&config.gateway.gateway.site, &config.gateway.gateway.id),
    )?;
    let generated = format!("simulated month, {} samples", summary.samples);
    std::fs::write(
        &options.output,
        html::render(&report, &ReportNotes::of(&config), &generated),
    )
    .with_context(|| format!("writing {}", options.output.display()))?;
    Ok(summary)
}
