//! The stage between the sources and the InfluxDB forwarder: every sample becomes one line of
//! line protocol appended to the telemetry log ("accepted"), synced every `sync_interval`, and
//! the forwarder is woken. Appends run on the stage's own thread (they reach the page cache in
//! microseconds); only the once-a-second `fdatasync` goes to the log's I/O thread
//! ([`crate::buffer::io_thread`]), on a duplicate handle of the segment, so appends never wait
//! for the card. The log absorbs uplink outages; a source never waits on the network.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Notify};

use crate::buffer::io_thread;
use crate::health::Health;
use crate::metrics::Appended;
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
    // Reused for every batch and every line: no allocation per sample once warm.
    let mut batch: Vec<Sample> = Vec::with_capacity(BATCH);
    let mut line = String::new();
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
                publish(&log, &counts).await;
                continue;
            }
        };
        let mut next = Some(first);
        while let Some(sample) = next {
            batch.push(sample);
            next = if batch.len() < BATCH {
                samples.try_recv().ok()
            } else {
                None
            };
        }
        // Appends reach the page cache in microseconds: done here, not handed to a thread, each
        // line encoded into the same buffer.
        let result = {
            let mut log = lock_log(&log);
            let mut outcome = (0u64, 0u64, None);
            for sample in &mut batch {
                counts.received += 1;
                line.clear();
                let encoded = line_protocol::encode(sample, &mut line);
                counts.skipped_fields += encoded.skipped as u64;
                let receipt = &mut sample.receipt;
                if encoded.fields == 0 {
                    // Nothing of it can be stored: nothing for a publisher to wait for.
                    receipt.settle(true);
                    continue;
                }
                line.pop(); // the log stores lines without their newline
                let time_ms = (sample.time_ns / 1_000_000).max(0) as u64;
                match log.append(time_ms, line.as_bytes()) {
                    Ok(_) => {
                        outcome.0 += 1;
                        receipt.settle(true);
                    }
                    Err(e) => {
                        outcome.1 += 1;
                        tracing::error!(error = %e, "Telemetry log refused a reading; it is lost unless its publisher sends it again");
                        outcome.2 = Some(e.to_string());
                        receipt.settle(false);
                    }
                }
            }
            outcome
        };
        batch.clear();
        counts.lines += result.0;
        counts.refused += result.1;
        match result.2 {
            Some(error) if result.0 == 0 => health.set(
                "telemetry_log",
                format!("the telemetry log refuses readings: {error}"),
            ),
            _ => health.clear("telemetry_log"),
        }
        appended.notify_one();
    }
    if let Err(e) = with_log(&log, |log| log.sync()).await {
        tracing::error!(error = %e, "Cannot sync the telemetry log at shutdown");
    }
    publish(&log, &counts).await;
    counts
}

/// Publishes the log's and this stage's figures as metrics.
async fn publish(log: &SharedLog, counts: &Appended) {
    let now_ms = crate::model::unix_nanos(std::time::SystemTime::now()) / 1_000_000;
    let (stats, backlog) =
        with_log(log, move |log| (log.stats().clone(), log.backlog(now_ms))).await;
    crate::metrics::publish_log(&stats, &backlog);
    crate::metrics::publish_appended(counts);
}
