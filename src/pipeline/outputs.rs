//! The output stages behind the rules stage: the durable InfluxDB path (the telemetry log, then
//! the forwarder) and/or a line-protocol file, and an optional tap (the demo's printer, the
//! tests), fed by one sample channel, tee'd when there is more than one. The telemetry log gets
//! the sample itself, with its receipt; the others get copies.

use std::sync::Arc;

use anyhow::Context as _;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::buffer::reserve::Reserve;
use crate::buffer::{LogOptions, SegmentLog};
use crate::config::LoadedConfig;
use crate::health::Health;
use crate::model::Sample;
use crate::sinks::influx::forwarder::{Forwarder, ForwarderOptions, ForwarderStatus, SharedLog};
use crate::sinks::influx::write::WriteEndpoint;

use super::acquisition::join_all;
use super::SAMPLE_CHANNEL_CAPACITY;

/// The running output stages.
pub struct Outputs {
    stages: Vec<JoinHandle<()>>,
    forwarder: Option<JoinHandle<()>>,
    pub log: Option<SharedLog>,
    /// The telemetry log's and InfluxDB's problems.
    pub health: Arc<Health>,
    /// The forwarder's counters, when forwarding.
    pub forwarder_status: Option<Arc<ForwarderStatus>>,
}

impl Outputs {
    /// Opens the telemetry log (recovering it), starts the forwarder (which stops on
    /// `stopping`) and the writers, and hands copies to `tap` when there is one. Returns the
    /// stages and their input: they drain once every clone of it is dropped.
    pub fn start(
        config: &LoadedConfig,
        tap: Option<mpsc::Sender<Sample>>,
        stopping: watch::Receiver<bool>,
    ) -> anyhow::Result<(Outputs, mpsc::Sender<Sample>)> {
        let outputs = &config.gateway.outputs;
        let mut senders = Vec::new();
        let mut stages = Vec::new();
        let mut forwarder = None;
        let mut shared_log = None;
        let mut forwarder_status = None;
        let health = Arc::new(Health::default());
        if let Some(influx) = &outputs.influxdb {
            let data_dir = &config.gateway.gateway.data_dir;
            let buffer = &config.gateway.buffer;
            let options = LogOptions {
                segment_bytes: buffer.segment_size_mb << 20,
                max_bytes: buffer.max_size_mb << 20,
                sync_interval: buffer.sync_interval.get(),
                reserve: Some(Reserve::shared(data_dir)),
                ..LogOptions::default()
            };
            let dir = data_dir.join("telemetry");
            let (log, report) = SegmentLog::open(&dir, options)
                .with_context(|| format!("cannot open the telemetry log in {}", dir.display()))?;
            let damaged = report.corrupted + report.quarantined + report.lost > 0
                || report.torn_bytes > 0
                || report.cursor_reset;
            if damaged {
                tracing::warn!(?report, dir = %dir.display(), "Telemetry log recovered with damage");
            } else {
                tracing::info!(
                    pending = report.pending,
                    segments = report.segments,
                    "Telemetry log opened"
                );
            }
            let log = Arc::new(std::sync::Mutex::new(log));
            let endpoint = WriteEndpoint::new(influx).context("InfluxDB output")?;
            let appended = Arc::new(tokio::sync::Notify::new());
            let forwarder_task = Forwarder::new(
                endpoint,
                Arc::clone(&log),
                Arc::clone(&appended),
                ForwarderOptions::new(influx, data_dir.join("dead-letter.lp")),
            )
            .reporting_to(Arc::clone(&health));
            forwarder_status = Some(Arc::clone(&forwarder_task.status));
            forwarder = Some(tokio::spawn(forwarder_task.run(stopping.clone())));
            let (tx, rx) = mpsc::channel(SAMPLE_CHANNEL_CAPACITY);
            senders.push(tx);
            let sync_interval = buffer.sync_interval.get();
            let stage_log = Arc::clone(&log);
            let stage_health = Arc::clone(&health);
            stages.push(tokio::spawn(async move {
                let counts = crate::sinks::telemetry_log::append_samples(
                    rx,
                    stage_log,
                    appended,
                    sync_interval,
                    stage_health,
                )
                .await;
                tracing::info!(
                    lines = counts.lines,
                    refused = counts.refused,
                    "Telemetry log closed"
                );
            }));
            shared_log = Some(log);
        }
        if let Some(file) = &outputs.line_protocol {
            let path = file.path.clone();
            let max_bytes = file.max_size_mb << 20;
            let (tx, rx) = mpsc::channel(SAMPLE_CHANNEL_CAPACITY);
            senders.push(tx);
            stages.push(tokio::spawn(async move {
                let written = match crate::sinks::line_file::open(&path, max_bytes) {
                    Ok(out) => crate::sinks::line_file::write_lines(rx, out).await,
                    Err(e) => Err(e),
                };
                match written {
                    Ok(w) => tracing::info!(
                        lines = w.lines,
                        rotated_out = w.rotated_out,
                        "Line-protocol output closed"
                    ),
                    Err(e) => {
                        tracing::error!(error = %e, path = %path, "Line-protocol output failed")
                    }
                }
            }));
        }
        senders.extend(tap);
        let input = match senders.len() {
            0 => anyhow::bail!(
                "no output configured (expected [outputs.influxdb] or [outputs.line_protocol])"
            ),
            1 => senders.remove(0),
            _ => {
                let (tx, mut rx) = mpsc::channel::<Sample>(SAMPLE_CHANNEL_CAPACITY);
                stages.push(tokio::spawn(async move {
                    while let Some(sample) = rx.recv().await {
                        for sender in &senders[1..] {
                            let _ = sender.send(sample.clone()).await;
                        }
                        let _ = senders[0].send(sample).await;
                    }
                }));
                tx
            }
        };
        let outputs = Outputs {
            stages,
            forwarder,
            log: shared_log,
            health,
            forwarder_status,
        };
        Ok((outputs, input))
    }

    /// After the rules stage has ended (and dropped its sender): waits for the writers to
    /// drain until `drained` (the telemetry log is synced when its stage ends), then for the
    /// forwarder, told to stop by the pipeline's token, until `until`, aborting an in-flight
    /// request after that. Unsent readings stay in the log for the next start.
    pub async fn finish(mut self, drained: Instant, until: Instant) {
        let stages = join_all(std::mem::take(&mut self.stages));
        if tokio::time::timeout_at(drained, stages).await.is_err() {
            tracing::warn!("Output stages did not drain in time");
        }
        if let Some(task) = self.forwarder.take() {
            let abort = task.abort_handle();
            if tokio::time::timeout_at(until, task).await.is_err() {
                abort.abort();
            }
        }
    }
}
