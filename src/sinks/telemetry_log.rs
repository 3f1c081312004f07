//! The stage between the sources and the InfluxDB forwarder: every sample becomes one line of
//! line protocol appended to the telemetry log ("accepted"), synced every `sync_interval`, and
//! the forwarder is woken. Appends run on the stage's own thread (they reach the page cache in
//! microseconds), the samples that arrived together in one write (a bus hands on several polls
//! at once: [`crate::sources::scheduler`]); only the once-a-second
//! `fdatasync` goes to the log's I/O thread
//! ([`crate::buffer::io_thread`]), on a duplicate handle of the segment, so appends never wait
//! for the card. The log absorbs uplink outages; a source never waits on the network.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Notify};

use crate::buffer::io_thread;
use crate::health::Health;
use crate::metrics::{Appended, LogMetrics};
use crate::model::Sample;

use super::influx::forwarder::{lock_log, with_log, SharedLog};
use crate::line_protocol;

/// Samples taken from the channel at once, appended under one lock.
const BATCH: usize = 512;

/// Appends samples until the channel closes, then syncs once more. A batch the log refuses
/// entirely is reported to `health` as `telemetry_log` until one is accepted again.
pub async fn append_samples(
    mut samples: mpsc::Receiver<Sample>,
    log: SharedLog,
    appended: Arc<Notify>,
    sync_interval: Duration,
    health: Arc<Health>,
) -> Appended {
    let mut counts = Appended::default();
    let metrics = LogMetrics::register();
    let mut gathering = Gathering::default();
    let mut sync = tokio::time::interval(sync_interval);
    sync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let first = tokio::select! {
            sample = samples.recv() => match sample {
                Some(sample) => sample,
                None => break,
            },
            _ = sync.tick() => {
                let (due, room) = {
                    let mut log = lock_log(&log);
                    (log.sync_due(), log.room())
                };
                // The fdatasync runs on a blocking thread while appends go on.
                let synced = match due {
                    Ok(Some(pending)) => io_thread::run(move || pending.run())
                        .await
                        .map(|bytes| lock_log(&log).synced(bytes)),
                    Ok(None) => Ok(()),
                    Err(e) => Err(e),
                };
                if let Err(e) = synced {
                    tracing::error!(error = %e, "Cannot sync the telemetry log");
                }
                match room {
                    Ok((space, true)) => health.set(
                        "disk",
                        format!(
                            "the card is nearly full ({} MiB free of {} MiB); when full, the oldest unsent readings are dropped",
                            space.available >> 20,
                            space.total >> 20
                        ),
                    ),
                    Ok((_, false)) => health.clear("disk"),
                    Err(e) => tracing::warn!(error = %e, "Cannot tell the room left on the card"),
                }
                publish(&log, &counts, &metrics).await;
                continue;
            }
        };
        // What arrived together goes into one write: a bus hands on its polls in groups, and
        // one write per poll cost more than the poll. Nothing waits here for more.
        gathering.take(first, &mut samples);
        gathering.append(&log, &appended, &mut counts, &health);
    }
    if let Err(e) = with_log(&log, |log| log.sync()).await {
        tracing::error!(error = %e, "Cannot sync the telemetry log at shutdown");
    }
    publish(&log, &counts, &metrics).await;
    counts
}

/// The samples of the next write, and the buffers reused for every write (no allocation per
/// sample once warm).
struct Gathering {
    batch: Vec<Sample>,
    /// Each sample's line, one after the other, and per line its sample's index in `batch`, its
    /// time (ms) and where it ends.
    lines: String,
    ends: Vec<(usize, u64, usize)>,
}

impl Default for Gathering {
    fn default() -> Self {
        Gathering {
            batch: Vec::with_capacity(BATCH),
            lines: String::new(),
            ends: Vec::with_capacity(BATCH),
        }
    }
}

impl Gathering {
    /// Takes `first` and whatever else the channel holds now, up to [`BATCH`].
    fn take(&mut self, first: Sample, samples: &mut mpsc::Receiver<Sample>) {
        self.batch.push(first);
        while self.batch.len() < BATCH {
            match samples.try_recv() {
                Ok(sample) => self.batch.push(sample),
                Err(_) => break,
            }
        }
    }

    /// Appends the batch to the log under one lock (the log writes it in as few writes as the
    /// segments allow), settles each sample's receipt, empties the batch and wakes the
    /// forwarder. An empty batch does nothing.
    fn append(
        &mut self,
        log: &SharedLog,
        appended: &Notify,
        counts: &mut Appended,
        health: &Health,
    ) {
        if self.batch.is_empty() {
            return;
        }
        let Gathering {
            batch, lines, ends, ..
        } = self;
        // Every line encoded into one reused buffer, then appended under one lock.
        lines.clear();
        ends.clear();
        for (index, sample) in batch.iter_mut().enumerate() {
            counts.received += 1;
            let start = lines.len();
            let encoded = line_protocol::encode(sample, lines);
            counts.skipped_fields += encoded.skipped as u64;
            if encoded.fields == 0 {
                // Nothing of it can be stored: nothing for a publisher to wait for.
                lines.truncate(start);
                sample.receipt.settle(true);
                continue;
            }
            lines.pop(); // the log stores lines without their newline
            let time_ms = (sample.time_ns / 1_000_000).max(0) as u64;
            ends.push((index, time_ms, lines.len()));
        }
        let (mut stored, mut refused, mut error) = (0u64, 0u64, None);
        let records = ends.iter().scan(0, |start, &(_, time_ms, end)| {
            let line = &lines.as_bytes()[*start..end];
            *start = end;
            Some((time_ms, line))
        });
        lock_log(log).append_all(records, |k, outcome| {
        let receipt = &mut batch[ends[k].0].receipt;
        match outcome {
            Ok(_) => {
                stored += 1;
                receipt.settle(true);
            }
            Err(e) => {
                refused += 1;
                tracing::error!(error = %e, "Telemetry log refused a reading; it is lost unless its publisher sends it again");
                error = Some(e.to_string());
                receipt.settle(false);
            }
        }
    });
        batch.clear();
        counts.lines += stored;
        counts.refused += refused;
        match error {
            Some(error) if stored == 0 => health.set(
                "telemetry_log",
                format!("the telemetry log refuses readings: {error}"),
            ),
            _ => health.clear("telemetry_log"),
        }
        appended.notify_one();
    }
}

/// Publishes the log's and this stage's figures as metrics.
async fn publish(log: &SharedLog, counts: &Appended, metrics: &LogMetrics) {
    let now_ms = crate::model::unix_nanos(std::time::SystemTime::now()) / 1_000_000;
    let (stats, backlog) =
        with_log(log, move |log| (log.stats().clone(), log.backlog(now_ms))).await;
    metrics.publish(&stats, &backlog, counts);
}
