//! The rules stage between the sources and the outputs. Every sample is evaluated and passed on
//! unchanged; every alarm transition is logged, persisted (the engine's state file), passed on as
//! a sample of the `alarm` measurement (so InfluxDB gets the full alarm history through the
//! telemetry log), written to the outboxes of the alarm destinations and offered to an optional
//! listener (the demo's printer). Stale rules are evaluated on a tick. The stage also keeps the
//! [`StageView`] the status page reads: each device's latest sample and the alarms raised now.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::buffer::outbox::Outbox;
use crate::buffer::reserve::Reserve;
use crate::config::LoadedConfig;
use crate::kpi::book::{KpiBook, KpiSave};
use crate::kpi::DayRecord;
use crate::model::{unix_nanos, AlarmEvent, Field, Sample, Value};
use crate::rules::engine::{ActiveAlarm, RuleEngine};
use crate::rules::incident::IncidentBook;

use super::acquisition::join_all;
use super::SAMPLE_CHANNEL_CAPACITY;

/// Each device's latest sample and the alarms raised now, for the status page and API.
#[derive(Debug, Default)]
pub struct StageView {
    /// Hashed: every sample replaces one; the status page sorts its copy.
    latest: Mutex<HashMap<Arc<str>, Sample>>,
    active: Mutex<Vec<ActiveAlarm>>,
    /// When the stage last went round its loop (at least every [`TICK`]).
    beat: Mutex<Option<std::time::Instant>>,
    /// The open days' KPIs as of the last save.
    kpi_today: Mutex<Vec<DayRecord>>,
    /// Asks the stage to write the open days' KPIs so far.
    kpi_publish: tokio::sync::Notify,
    /// When that was last asked for.
    kpi_published: Mutex<Option<std::time::Instant>>,
}

impl StageView {
    pub fn latest(&self) -> BTreeMap<String, Sample> {
        lock(&self.latest)
            .iter()
            .map(|(id, sample)| (id.to_string(), sample.clone()))
            .collect()
    }

    pub fn active(&self) -> Vec<ActiveAlarm> {
        lock(&self.active).clone()
    }

    /// The open days' KPIs as of the stage's last save (every few minutes).
    pub fn kpi_today(&self) -> Vec<DayRecord> {
        lock(&self.kpi_today).clone()
    }

    /// Asks the stage to write the open days' KPIs so far as `kpi` lines; false (nothing
    /// asked) when it was asked less than [`PUBLISH_EVERY`] ago, so that a flood of requests
    /// cannot keep the stage writing figures instead of evaluating samples.
    pub fn publish_kpi(&self) -> bool {
        let mut last = lock(&self.kpi_published);
        if last.is_some_and(|at| at.elapsed() < PUBLISH_EVERY) {
            return false;
        }
        *last = Some(std::time::Instant::now());
        self.kpi_publish.notify_one();
        true
    }

    /// Whether the stage went round its loop within `within` (what the watchdog checks).
    pub fn alive(&self, within: Duration) -> bool {
        lock(&self.beat).is_some_and(|beat| beat.elapsed() <= within)
    }
}

/// Devices whose latest sample the status page keeps (bounded against publishers that invent
/// device ids).
const MAX_SHOWN_DEVICES: usize = 5_000;

/// Samples the stage takes from its input at once.
const TAKEN_AT_ONCE: usize = 64;

/// Keeps each device's latest sample for the status page (up to [`MAX_SHOWN_DEVICES`]).
fn show_latest(view: &StageView, samples: &[Sample]) {
    let mut latest = lock(&view.latest);
    for sample in samples {
        let shown = latest.len();
        if let Some(slot) = latest.get_mut(&*sample.device) {
            slot.clone_from(sample);
        } else if shown < MAX_SHOWN_DEVICES {
            latest.insert(Arc::clone(&sample.device), sample.clone());
        }
    }
}

/// How often stale (communication-lost) rules are checked.
pub const TICK: Duration = Duration::from_secs(1);
/// How often the open days' KPIs may be asked for (`POST /api/kpi/publish`).
pub const PUBLISH_EVERY: Duration = Duration::from_secs(10);

/// The `alarm` measurement's line for an event: tags `site`, `gateway`, `device`, `rule`,
/// `severity`; fields `state` (1 raised, 0 cleared), `value`, `limit`, `message`, `id`,
/// `flapping`; the event's own time.
pub fn alarm_sample(event: &AlarmEvent, site: &str, gateway: &str) -> Sample {
    let mut tags = vec![
        ("device".to_string(), event.device.to_string()),
        ("gateway".to_string(), gateway.to_string()),
        ("rule".to_string(), event.rule.to_string()),
        ("severity".to_string(), event.severity.name().to_string()),
        ("site".to_string(), site.to_string()),
    ];
    tags.sort();
    let field = |name: &str, value: Value| Field {
        name: Arc::from(name),
        value,
    };
    Sample {
        measurement: Arc::from("alarm"),
        device: Arc::clone(&event.device),
        tags: tags.into(),
        fields: vec![
            field("state", Value::Int(i64::from(event.firing))),
            field("value", Value::Float(event.value)),
            field("limit", Value::Float(event.limit)),
            field("message", Value::Text(event.message.clone())),
            field("id", Value::Text(event.id.clone())),
            field("flapping", Value::Bool(event.flapping)),
        ],
        time_ns: event.time_ns,
        receipt: crate::model::Receipt::none(),
    }
}

/// Where alarm events go besides the `alarm` measurement.
pub struct Delivery {
    /// One outbox per destination, with the notifier of its sender and whether it is told per
    /// incident (the group robots) rather than per alarm (MQTT).
    pub outboxes: Vec<(Outbox, Arc<Notify>, bool)>,
    /// Gets every event after it is durable (the demo prints them).
    pub listener: Option<mpsc::Sender<AlarmEvent>>,
}

/// Runs until the input closes.
pub async fn run(
    mut input: mpsc::Receiver<Sample>,
    output: mpsc::Sender<Sample>,
    (engine, mut kpi, mut incidents): (RuleEngine, KpiBook, Incidents),
    delivery: Delivery,
    view: Arc<StageView>,
    (site, gateway): (String, String),
) {
    *lock(&view.active) = engine.active();
    let engine = Arc::new(Mutex::new(engine));
    let mut undelivered: Vec<Undelivered> = delivery
        .outboxes
        .iter()
        .map(|(outbox, _, per_incident)| Undelivered::new(outbox.clone(), *per_incident))
        .collect();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut taken: Vec<Sample> = Vec::with_capacity(TAKEN_AT_ONCE);
    loop {
        *lock(&view.beat) = Some(std::time::Instant::now());
        let now = unix_nanos(SystemTime::now());
        // In this order when several are ready: a requested publication is never lost to a
        // shutdown that follows it, and the once-a-second tick is never starved by a full input.
        let (events, figures, ticked) = tokio::select! {
            biased;
            _ = view.kpi_publish.notified() => {
                (Vec::new(), kpi.partial_lines(now), false)
            }
            _ = tick.tick() => {
                if undelivered.iter().any(Undelivered::waiting) {
                    persist_alarms(&engine, &mut incidents, &mut undelivered, &delivery).await;
                }
                let events = lock(&engine).tick(now);
                let closed = kpi.tick(now, || lock(&engine).active());
                save_kpi(kpi.due_save(now), &view).await;
                (events, closed, true)
            }
            // A bus hands on several polls at once: they are evaluated under one lock each.
            taken_now = input.recv_many(&mut taken, TAKEN_AT_ONCE) => {
                if taken_now == 0 {
                    break;
                }
                let mut events = Vec::new();
                {
                    let mut engine = lock(&engine);
                    for sample in &taken {
                        events.extend(engine.evaluate(sample));
                        kpi.observe(sample, now, &engine);
                    }
                }
                show_latest(&view, &taken);
                (events, Vec::new(), false)
            }
        };
        for sample in taken.drain(..).chain(figures) {
            if output.send(sample).await.is_err() {
                return;
            }
        }
        for event in &events {
            kpi.alarm(event);
        }
        // The robots are told per incident: what the alarms of this round close, and (on the
        // once-a-second tick, not per bus group) what has settled or grown by now.
        let mut notifications: Vec<AlarmEvent> = events
            .iter()
            .flat_map(|e| incidents.book.observe(e))
            .collect();
        if ticked {
            notifications.extend(incidents.book.tick(now));
        }
        kpi.incidents(incidents.book.take_told(), now);
        if events.is_empty() && notifications.is_empty() {
            if lock(&engine).take_dirty() {
                let saving = Arc::clone(&engine);
                if !matches!(
                    tokio::task::spawn_blocking(move || lock(&saving).save()).await,
                    Ok(Ok(()))
                ) {
                    tracing::error!("Cannot persist the night-flow history");
                }
            }
            continue;
        }
        // Durable before anything else: every destination's outbox (fsynced), then the state
        // (no double raise after a restart); only then does the alarm count as raised. What an
        // outbox could not take waits in memory and is tried again every tick.
        for pending in &mut undelivered {
            pending.queue(if pending.per_incident {
                &notifications
            } else {
                &events
            });
        }
        persist_alarms(&engine, &mut incidents, &mut undelivered, &delivery).await;
        *lock(&view.active) = lock(&engine).active();
        for event in events {
            if event.firing {
                tracing::warn!(device = %event.device, rule = %event.rule, severity = event.severity.name(), value = event.value, limit = event.limit, id = %event.id, "Alarm raised");
            } else {
                tracing::info!(device = %event.device, rule = %event.rule, id = %event.id, "Alarm cleared");
            }
            if output
                .send(alarm_sample(&event, &site, &gateway))
                .await
                .is_err()
            {
                return;
            }
            if let Some(listener) = &delivery.listener {
                let _ = listener.send(event).await;
            }
        }
    }
    // The input closed (shutdown): keep the day's counting for the next start.
    save_kpi(kpi.save(unix_nanos(SystemTime::now())), &view).await;
}

/// The running rules stage and its alarm senders.
pub struct RulesStage {
    /// Where the sources send samples.
    pub samples: mpsc::Sender<Sample>,
    /// Latest samples and active alarms, kept by the stage.
    pub view: Arc<StageView>,
    stage: JoinHandle<()>,
    senders: Vec<JoinHandle<()>>,
}

impl RulesStage {
    /// Starts the rules stage in front of `output` (with no rules it only keeps the latest
    /// samples for the status page), with an outbox and a delivery task per alarm destination.
    /// `listener` also gets every event (the demo prints them). The senders stop on `stopped`
    /// (what they have not delivered stays in their outboxes).
    pub fn start(
        config: &LoadedConfig,
        output: mpsc::Sender<Sample>,
        listener: Option<mpsc::Sender<AlarmEvent>>,
        stopped: watch::Receiver<bool>,
    ) -> anyhow::Result<RulesStage> {
        let gateway = &config.gateway.gateway;
        let alarms_dir = gateway.data_dir.join("alarms");
        let mut outboxes = Vec::new();
        let mut senders = Vec::new();
        for hook in &config.gateway.alarms.webhook {
            let outbox = Outbox::open(
                &alarms_dir,
                &format!("webhook-{}", hook.name),
                Some(Reserve::shared(&gateway.data_dir)),
            )
            .with_context(|| format!("cannot open the outbox of webhook {}", hook.name))?;
            let webhook = crate::sinks::webhook::Webhook::new(hook, &gateway.site, &gateway.id)
                .with_context(|| format!("webhook {}", hook.name))?;
            let appended = Arc::new(tokio::sync::Notify::new());
            senders.push(tokio::spawn(webhook.run(
                outbox.clone(),
                Arc::clone(&appended),
                stopped.clone(),
                Duration::from_secs(1),
            )));
            outboxes.push((outbox, appended, true));
        }
        if let Some(mqtt) = &config.gateway.alarms.mqtt {
            let outbox = Outbox::open(
                &alarms_dir,
                "mqtt",
                Some(Reserve::shared(&gateway.data_dir)),
            )
            .context("cannot open the MQTT alarm outbox")?;
            let publisher = crate::sinks::mqtt::MqttAlarms::new(mqtt, &gateway.site, &gateway.id)
                .context("MQTT alarms")?;
            let appended = Arc::new(tokio::sync::Notify::new());
            senders.push(tokio::spawn(publisher.run(
                outbox.clone(),
                Arc::clone(&appended),
                stopped.clone(),
                Duration::from_secs(1),
            )));
            outboxes.push((outbox, appended, false));
        }
        let now = crate::model::unix_nanos(std::time::SystemTime::now());
        let engine =
            crate::rules::engine::RuleEngine::new(config, Some(alarms_dir.join("state.json")), now);
        let (tx, rx) = mpsc::channel(SAMPLE_CHANNEL_CAPACITY);
        let view = Arc::new(StageView::default());
        let kpi = crate::kpi::book::KpiBook::open(
            config,
            Some(crate::kpi::store::KpiStore::new(&gateway.data_dir)),
        );
        let incidents = Incidents::open(config, alarms_dir.join("incidents.json"));
        let stage = tokio::spawn(run(
            rx,
            output,
            (engine, kpi, incidents),
            Delivery { outboxes, listener },
            Arc::clone(&view),
            (gateway.site.clone(), gateway.id.clone()),
        ));
        Ok(RulesStage {
            samples: tx,
            view,
            stage,
            senders,
        })
    }

    /// After the sources stopped (and every other sender is gone): lets the stage drain until
    /// `drained`, then waits for the senders (already told to stop) until `until`.
    pub async fn finish(self, drained: Instant, until: Instant) {
        drop(self.samples);
        let abort = self.stage.abort_handle();
        if tokio::time::timeout_at(drained, self.stage).await.is_err() {
            tracing::warn!("The rules stage did not drain in time");
            abort.abort();
        }
        let aborts: Vec<_> = self.senders.iter().map(JoinHandle::abort_handle).collect();
        if tokio::time::timeout_at(until, join_all(self.senders))
            .await
            .is_err()
        {
            for abort in aborts {
                abort.abort();
            }
        }
    }
}

/// Alarm events one destination's outbox has not taken yet.
struct Undelivered {
    outbox: Outbox,
    /// Told per incident (robots), not per alarm.
    per_incident: bool,
    events: Vec<AlarmEvent>,
    /// Events were appended but the sync failed: push (even nothing) again.
    unsynced: bool,
    /// Events given up because the outbox refused them for too long (each logged).
    dropped: u64,
}

/// Events kept in memory per destination while its outbox cannot be written; beyond this the
/// oldest are given up (and logged), so a dead card cannot exhaust memory.
const MAX_UNDELIVERED: usize = 10_000;

impl Undelivered {
    fn new(outbox: Outbox, per_incident: bool) -> Undelivered {
        Undelivered {
            outbox,
            per_incident,
            events: Vec::new(),
            unsynced: false,
            dropped: 0,
        }
    }

    fn queue(&mut self, events: &[AlarmEvent]) {
        self.events.extend_from_slice(events);
        let excess = self.events.len().saturating_sub(MAX_UNDELIVERED);
        if excess > 0 {
            self.events.drain(..excess);
            self.dropped += excess as u64;
            tracing::error!(
                destination = %self.outbox.name,
                events = excess,
                "Alarm outbox unwritable for too long; oldest alarms given up"
            );
        }
    }

    fn waiting(&self) -> bool {
        !self.events.is_empty() || self.unsynced
    }

    /// Pushes what waits (blocking); returns whether everything is in the outbox.
    fn push(&mut self) -> bool {
        if !self.waiting() {
            return true;
        }
        match self.outbox.push(&self.events) {
            Ok(()) => {
                self.events.clear();
                self.unsynced = false;
                true
            }
            Err(e) => {
                self.events.drain(..e.written);
                self.unsynced = true;
                tracing::error!(destination = %self.outbox.name, waiting = self.events.len(), error = %e.error, "Cannot write alarms to the outbox; kept in memory and tried again every second");
                false
            }
        }
    }
}

/// Pushes every waiting alarm to its outbox, then (only when all are in) saves the engine's
/// state and the incidents, and wakes the senders. Runs off the stage's thread.
async fn persist_alarms(
    engine: &Arc<Mutex<RuleEngine>>,
    incidents: &mut Incidents,
    undelivered: &mut Vec<Undelivered>,
    delivery: &Delivery,
) {
    let saving = Arc::clone(engine);
    let mut work = std::mem::take(undelivered);
    let book = incidents
        .book
        .take_dirty()
        .then(|| (incidents.file.clone(), incidents.book.to_json()));
    let done = tokio::task::spawn_blocking(move || {
        let mut all_in = true;
        for pending in &mut work {
            all_in &= pending.push();
        }
        let mut book_saved = book.is_none();
        if all_in {
            if let Err(e) = lock(&saving).save() {
                tracing::error!(error = %e, "Cannot persist the alarm state; a restart may raise these alarms again");
            }
            if let Some((file, json)) = book {
                match crate::rules::engine::write_atomically(&file, &json, None) {
                    Ok(()) => book_saved = true,
                    Err(e) => {
                        tracing::error!(error = %e, "Cannot persist the open incidents; a restart may tell them again")
                    }
                }
            }
        }
        (work, book_saved)
    })
    .await;
    match done {
        Ok((work, book_saved)) => {
            *undelivered = work;
            // Not written (an outbox refused, or the card): tried again with the next save.
            if !book_saved {
                incidents.book.mark_dirty();
            }
        }
        Err(_) => tracing::error!("Alarm persistence task failed"),
    }
    for (_, appended, _) in &delivery.outboxes {
        appended.notify_one();
    }
}

/// The open incidents and the file they are kept in.
pub struct Incidents {
    pub book: IncidentBook,
    pub file: std::path::PathBuf,
}

impl Incidents {
    /// The book for `config`'s supply tree, with the incidents of `file` when it can be read.
    pub fn open(config: &LoadedConfig, file: std::path::PathBuf) -> Incidents {
        let mut book = IncidentBook::of(config);
        match std::fs::read(&file) {
            Ok(json) => {
                if let Err(reason) = book.restore(&json) {
                    tracing::error!(path = %file.display(), %reason, "Cannot read the open incidents; starting without them");
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::error!(path = %file.display(), error = %e, "Cannot read the open incidents; starting without them")
            }
        }
        Incidents { book, file }
    }
}

/// Saves the KPI ledger (off the stage's thread) when a save is due, and shows the open days.
async fn save_kpi(due: Option<KpiSave>, view: &StageView) {
    let Some(KpiSave {
        store,
        ledger,
        today,
    }) = due
    else {
        return;
    };
    *lock(&view.kpi_today) = today;
    match tokio::task::spawn_blocking(move || store.save_ledger(&ledger)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::error!(error = %e, "Cannot save the KPI ledger; a restart would lose today's counting")
        }
        Err(_) => tracing::error!("KPI ledger save task failed"),
    }
}

fn lock<T>(shared: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::line_protocol;

    fn demo() -> LoadedConfig {
        crate::config::load_config(std::path::Path::new("config/demo.toml"))
            .expect("the demo config loads")
    }

    #[tokio::test]
    async fn open_incidents_the_card_refused_are_saved_by_the_next_persistence() {
        let config = demo();
        let dir = tempfile::tempdir().expect("temp dir");
        // A file where the alarms directory should be: every write under it fails.
        let blocked = dir.path().join("alarms");
        std::fs::write(&blocked, b"not a directory").expect("blocker");
        let file = blocked.join("incidents.json");
        let engine = Arc::new(Mutex::new(RuleEngine::new(&config, None, 0)));
        let mut incidents = Incidents::open(&config, file.clone());
        let raised = AlarmEvent::pump_fault(1_764_150_000_000_000_000, "水泵故障");
        incidents.book.observe(&raised);
        let told = incidents.book.tick(raised.time_ns + 60_000_000_000);
        assert_eq!(told.len(), 1, "the robots are told of the pump: {told:?}");
        let delivery = Delivery {
            outboxes: Vec::new(),
            listener: None,
        };
        let mut undelivered = Vec::new();
        persist_alarms(&engine, &mut incidents, &mut undelivered, &delivery).await;
        assert!(!file.exists());

        std::fs::remove_file(&blocked).expect("the card is writable again");
        // Nothing new happened: the refused save alone must bring the file back.
        persist_alarms(&engine, &mut incidents, &mut undelivered, &delivery).await;
        let saved = std::fs::read(&file).expect("saved on the next persistence");
        assert_eq!(saved, incidents.book.to_json());
        assert!(!incidents.book.take_dirty(), "nothing left to save");

        // A restart knows the open incident and tells the incident's clear; a book without it
        // could only pass the bare alarm on.
        let mut cleared = raised.clone();
        cleared.firing = false;
        cleared.time_ns += 120_000_000_000;
        let mut restarted = Incidents::open(&config, file);
        let told = restarted.book.observe(&cleared);
        assert_eq!(told.len(), 1, "{told:?}");
        assert!(!told[0].firing);
        assert_ne!(told[0], cleared, "the incident's clear, not the alarm's");
        assert_eq!(IncidentBook::of(&config).observe(&cleared), vec![cleared]);
    }

    #[test]
    fn unreadable_incidents_start_an_empty_book_and_are_overwritten() {
        let config = demo();
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("incidents.json");
        std::fs::write(&file, b"{\"open\": [tru").expect("a torn file");
        let incidents = Incidents::open(&config, file.clone());
        assert_eq!(
            incidents.book.to_json(),
            IncidentBook::of(&config).to_json()
        );
        std::fs::write(&file, [0xff, 0xfe, 0x00]).expect("a flipped file");
        let incidents = Incidents::open(&config, file);
        assert_eq!(
            incidents.book.to_json(),
            IncidentBook::of(&config).to_json()
        );
    }

    #[test]
    fn an_alarm_becomes_one_alarm_line_with_the_schema_of_design_md() {
        let event = AlarmEvent::pump_fault(1_764_150_000_000_000_000, "W13报警：水泵或变频器故障");
        let mut line = String::new();
        line_protocol::encode(
            &alarm_sample(&event, "幸福小区", "shuocheng-xingfu-01"),
            &mut line,
        );
        assert_eq!(
            line,
            "alarm,device=booster-1,gateway=shuocheng-xingfu-01,rule=W13,severity=crit,site=幸福小区 \
             state=1i,value=1,limit=7,message=\"W13报警：水泵或变频器故障\",id=\"booster-1/W13/1764150000000000000\",flapping=false \
             1764150000000000000\n"
        );
    }
}
