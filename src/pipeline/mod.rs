//! The pipeline: every stage built in one place, data flowing one way.
//!
//! ```text
//! acquisition (buses, MQTT) ─┐
//! self-monitoring ───────────┼─► rules stage ─► outputs: telemetry log ─► forwarder ─► InfluxDB
//! tests ─────────────────────┘   │ (alarms,      line-protocol file, tap (demo, tests)
//!                                │  KPIs)
//!                                └─► alarm outboxes ─► webhooks, MQTT
//! ```
//!
//! [`Pipeline::start`] builds the stages downstream first (outputs, then the rules stage, then
//! the sources), so nothing ever sends into a stage that is not there. [`Pipeline::observed`]
//! is what the status page, `/metrics` and self-monitoring read; nothing reads a stage directly.
//! There is one shutdown token ([`Pipeline::stopping`]) and one [`Pipeline::shutdown`] with one
//! deadline: the sources stop, the rules stage drains into the outputs, the writers drain and
//! the telemetry log is synced; what InfluxDB or a robot has not taken stays on disk for the
//! next start.

pub mod acquisition;
pub mod observed;
pub mod outputs;
pub mod rules_stage;

use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::LoadedConfig;
use crate::model::{AlarmEvent, Sample};

use acquisition::{Acquisition, Reloaded};
use observed::Observed;
use outputs::Outputs;
use rules_stage::RulesStage;

/// Samples in flight between two stages. When a channel is full its senders wait (polls are
/// delayed and counted as skipped if a whole interval late); nothing is dropped there.
pub const SAMPLE_CHANNEL_CAPACITY: usize = 1024;

/// How long a shutdown may take in all: DESIGN.md's 5 s, within systemd's stop timeout.
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(5);

/// What a pipeline is started with besides its config.
#[derive(Default)]
pub struct Options {
    /// Gets a copy of every sample that leaves the rules stage (the demo's printer, tests),
    /// besides the configured outputs.
    pub tap: Option<mpsc::Sender<Sample>>,
    /// Gets every alarm event once it is durable (the demo prints them).
    pub alarm_listener: Option<mpsc::Sender<AlarmEvent>>,
    /// Write the `gateway` measurement this often (a minute in service).
    pub self_monitoring: Option<Duration>,
    /// The installed metrics recorder, for `/metrics`.
    pub metrics: Option<PrometheusHandle>,
}

/// A running pipeline.
pub struct Pipeline {
    acquisition: Acquisition,
    rules: RulesStage,
    outputs: Outputs,
    self_monitoring: Option<JoinHandle<()>>,
    shutdown: watch::Sender<bool>,
    observed: Arc<Observed>,
}

impl Pipeline {
    /// Opens the telemetry log and the alarm outboxes, and starts every stage of `config`.
    /// Fails when a buffer cannot be opened, an output or alarm destination cannot be set up, or
    /// no output is configured and there is no tap. Must run inside a tokio runtime.
    pub fn start(config: &LoadedConfig, options: Options) -> anyhow::Result<Pipeline> {
        let (shutdown, stopping) = watch::channel(false);
        let (outputs, to_outputs) = Outputs::start(config, options.tap, stopping.clone())?;
        let rules =
            RulesStage::start(config, to_outputs, options.alarm_listener, stopping.clone())?;
        let acquisition = Acquisition::start(config, rules.samples.clone())?;
        let mut observed = Observed::of(
            config,
            Arc::clone(&acquisition.status),
            Arc::clone(&rules.view),
        );
        observed.health = vec![Arc::clone(&acquisition.health), Arc::clone(&outputs.health)];
        observed.mqtt = acquisition.mqtt.clone();
        observed.log = outputs
            .log
            .clone()
            .map(|log| (log, config.gateway.buffer.max_size_mb << 20));
        observed.forwarder = outputs.forwarder_status.clone();
        observed.metrics = options.metrics;
        let observed = Arc::new(observed);
        let self_monitoring = options.self_monitoring.map(|every| {
            let shown = Arc::clone(&observed);
            tokio::spawn(crate::selfmon::run(
                Arc::new(move |now| shown.readings(now)),
                every,
                rules.samples.clone(),
                stopping.clone(),
            ))
        });
        Ok(Pipeline {
            acquisition,
            rules,
            outputs,
            self_monitoring,
            shutdown,
            observed,
        })
    }

    /// What the status page, `/metrics` and self-monitoring read.
    pub fn observed(&self) -> Arc<Observed> {
        Arc::clone(&self.observed)
    }

    /// The rules stage's input, where the sources send: for samples from outside the sources
    /// (tests, a replay).
    pub fn input(&self) -> mpsc::Sender<Sample> {
        self.rules.samples.clone()
    }

    /// The shutdown token: turns `true` when [`Pipeline::shutdown`] begins (the HTTP endpoint
    /// and the watchdog stop on it too).
    pub fn stopping(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Applies a new configuration to the sources (see [`Acquisition::reload`]); the rules
    /// stage, the outputs and what they hold are untouched.
    pub async fn reload(
        &mut self,
        config: &LoadedConfig,
    ) -> Result<Reloaded, crate::mqtt::BrokerError> {
        self.acquisition.reload(config, SHUTDOWN_DEADLINE / 2).await
    }

    /// Stops everything within `deadline`: the sources (up to two fifths of it), then the rules
    /// stage drains (to three fifths), then the writers drain and the log is synced (to nine
    /// tenths); the forwarder and the alarm senders, told at once, get the rest before they are
    /// aborted.
    pub async fn shutdown(self, deadline: Duration) {
        let begun = Instant::now();
        let at = |fraction: f64| begun + deadline.mul_f64(fraction);
        let _ = self.shutdown.send(true);
        self.acquisition.stop(deadline.mul_f64(0.4)).await;
        if let Some(task) = self.self_monitoring {
            let abort = task.abort_handle();
            if tokio::time::timeout_at(at(0.4), task).await.is_err() {
                abort.abort();
            }
        }
        let outputs = self.outputs;
        let rules = self.rules;
        tokio::join!(
            rules.finish(at(0.6), at(1.0)),
            outputs.finish(at(0.9), at(1.0))
        );
    }
}
