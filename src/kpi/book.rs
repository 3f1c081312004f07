//! The ledger as the rules stage drives it: every sample and alarm event is counted; on the
//! stage's tick the days that are over are closed, appended to the store and sent on as `kpi`
//! lines; the ledger is saved every [`SAVE_EVERY_S`] seconds and after every close. On demand
//! ([`KpiBook::partial_lines`]) the open days' figures so far are sent as `kpi` lines with
//! `final = false`.

use crate::config::LoadedConfig;
use crate::model::{AlarmEvent, Sample};
use crate::rules::engine::RuleEngine;

use super::ledger::{KpiParams, Ledger};
use super::lines::samples;
use super::store::KpiStore;
use super::DayRecord;
use crate::rules::engine::ActiveAlarm;

/// How often the ledger is saved (what a power cut can cost of the day's counting), seconds.
pub const SAVE_EVERY_S: i64 = 300;

/// A save of the ledger, and the open days' figures as of it (for the status API).
pub struct KpiSave {
    pub store: KpiStore,
    pub ledger: Ledger,
    pub today: Vec<DayRecord>,
}

pub struct KpiBook {
    ledger: Ledger,
    params: KpiParams,
    site: String,
    store: Option<KpiStore>,
    saved_at_ns: Option<i64>,
    closed_since_save: bool,
}

impl KpiBook {
    /// The book of `config`, continuing the saved ledger when there is a store.
    pub fn open(config: &LoadedConfig, store: Option<KpiStore>) -> KpiBook {
        let ledger = store
            .as_ref()
            .map(KpiStore::load_ledger)
            .unwrap_or_default();
        KpiBook {
            ledger,
            params: KpiParams::of(&config.gateway),
            site: config.gateway.gateway.site.clone(),
            store,
            saved_at_ns: None,
            closed_since_save: false,
        }
    }

    pub fn observe(&mut self, sample: &Sample, now_ns: i64, engine: &RuleEngine) {
        let rules = || engine.device_rules(&sample.device);
        self.ledger.observe(sample, now_ns, rules, &self.params);
    }

    pub fn alarm(&mut self, event: &AlarmEvent) {
        self.ledger.alarm(event, &self.params);
    }

    /// Counts incidents told for the first time.
    pub fn incidents(&mut self, count: u32, now_ns: i64) {
        self.ledger.incidents(count, now_ns, &self.params);
    }

    /// Closes the days that are over (stored, with the alarms `active` gives as still raised);
    /// their `kpi` lines.
    pub fn tick(&mut self, now_ns: i64, active: impl FnOnce() -> Vec<ActiveAlarm>) -> Vec<Sample> {
        let closed = self.ledger.tick(now_ns, &self.params, active);
        if closed.is_empty() {
            return Vec::new();
        }
        self.closed_since_save = true;
        if let Some(store) = &self.store {
            if let Err(e) = store.append(&closed) {
                tracing::error!(error = %e, "Cannot store the closed days' KPIs; their lines still go to the outputs");
            }
        }
        for record in &closed {
            tracing::info!(date = %record.date, figures = record.values.len(), "KPI day closed");
        }
        self.lines(&closed)
    }

    /// What to save, when a save is due.
    pub fn due_save(&mut self, now_ns: i64) -> Option<KpiSave> {
        self.store.as_ref()?;
        let due = self.closed_since_save
            || self
                .saved_at_ns
                .is_none_or(|at| now_ns - at >= SAVE_EVERY_S * 1_000_000_000);
        if !due {
            return None;
        }
        self.saved_at_ns = Some(now_ns);
        self.closed_since_save = false;
        self.save(now_ns)
    }

    /// What to save: the ledger as it stands, where, and the open days' figures so far.
    pub fn save(&self, now_ns: i64) -> Option<KpiSave> {
        Some(KpiSave {
            store: self.store.clone()?,
            ledger: self.ledger.clone(),
            today: self.snapshot(now_ns),
        })
    }

    /// The open days' figures so far.
    pub fn snapshot(&self, now_ns: i64) -> Vec<DayRecord> {
        self.ledger.snapshot(now_ns, &self.params)
    }

    /// The open days' figures so far as `kpi` lines (`final = false`).
    pub fn partial_lines(&self, now_ns: i64) -> Vec<Sample> {
        self.lines(&self.snapshot(now_ns))
    }

    fn lines(&self, records: &[DayRecord]) -> Vec<Sample> {
        records
            .iter()
            .flat_map(|r| {
                samples(
                    r,
                    &self.site,
                    &self.params.gateway,
                    self.params.utc_offset_h,
                )
            })
            .collect()
    }
}
