//! The alarm outbox: every alarm event for every destination (MQTT, each webhook), on disk and
//! fsynced before the event counts as raised, until that destination confirmed it.
//!
//! Each destination has a log of its own (`data_dir/alarms/outbox-<name>/`, the telemetry log's
//! format and recovery), so a destination that is down holds back nobody else, and the alarm
//! space is reserved apart from telemetry: a full telemetry log never pushes an alarm out.
//!
//! On a full card an outbox never drops an alarm to make room ([`WhenFull::Refuse`]): it
//! releases the data directory's reserve and writes again, and if that is not enough the push
//! fails, says how many events it wrote, and the caller keeps the rest in memory and tries again.

use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::model::AlarmEvent;

use super::reserve::Reserve;
use super::{LogOptions, SegmentLog, WhenFull};

/// Space for one destination's undelivered alarms.
pub const OUTBOX_BYTES: u64 = 64 << 20;

/// A push that did not complete.
#[derive(Debug, thiserror::Error)]
#[error("cannot write alarms to the outbox ({written} written): {error}")]
pub struct PushError {
    /// Events appended before the failure.
    pub written: usize,
    pub error: io::Error,
}

/// One destination's outbox.
#[derive(Clone)]
pub struct Outbox {
    pub name: String,
    pub log: Arc<Mutex<SegmentLog>>,
}

impl Outbox {
    /// Opens (recovering) the outbox of destination `name` under `alarms_dir`; on a full card
    /// it may release `reserve`.
    pub fn open(
        alarms_dir: &Path,
        name: &str,
        reserve: Option<Arc<Reserve>>,
    ) -> io::Result<Outbox> {
        Self::open_with(
            alarms_dir,
            name,
            LogOptions {
                reserve,
                ..LogOptions::default()
            },
        )
    }

    /// [`Outbox::open`] on the filesystem of `base` (tests put a faulty one under it); sizes and
    /// the full-card policy are the outbox's own.
    pub fn open_with(alarms_dir: &Path, name: &str, base: LogOptions) -> io::Result<Outbox> {
        let options = LogOptions {
            segment_bytes: 1 << 20,
            max_bytes: OUTBOX_BYTES,
            when_full: WhenFull::Refuse,
            ..base
        };
        let (log, report) = SegmentLog::open(&alarms_dir.join(format!("outbox-{name}")), options)?;
        if report.corrupted + report.lost + report.quarantined > 0 {
            tracing::error!(
                destination = name,
                ?report,
                "Alarm outbox recovered with damage"
            );
        }
        Ok(Outbox {
            name: name.to_string(),
            log: Arc::new(Mutex::new(log)),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SegmentLog> {
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends events and fsyncs (blocking: call from a blocking-capable context). On an error,
    /// the first [`PushError::written`] events are in the outbox (not yet synced: push the rest,
    /// or nothing, to sync them).
    pub fn push(&self, events: &[AlarmEvent]) -> Result<(), PushError> {
        let mut log = self.lock();
        for (written, event) in events.iter().enumerate() {
            let appended = serde_json::to_vec(event)
                .map_err(io::Error::other)
                .and_then(|json| {
                    let time_ms = (event.time_ns / 1_000_000).max(0) as u64;
                    log.append(time_ms, &json).map_err(io::Error::other)
                });
            if let Err(error) = appended {
                return Err(PushError { written, error });
            }
        }
        log.sync().map_err(|error| PushError {
            written: events.len(),
            error,
        })
    }

    /// The oldest undelivered event with its sequence number. Records that do not parse (they
    /// passed their CRC, so only a format change could do that) are skipped and logged.
    pub fn next(&self) -> io::Result<Option<(u64, AlarmEvent)>> {
        let mut log = self.lock();
        log.rewind();
        loop {
            let Some(record) = log.read(1, 1 << 20)?.pop() else {
                return Ok(None);
            };
            match serde_json::from_slice(&record.payload) {
                Ok(event) => return Ok(Some((record.seq, event))),
                Err(e) => {
                    tracing::error!(destination = %self.name, error = %e, "Unreadable alarm in the outbox; skipped");
                    log.ack(record.seq + 1)?;
                }
            }
        }
    }

    /// Marks everything up to `seq` delivered.
    pub fn delivered(&self, seq: u64) -> io::Result<()> {
        self.lock().ack(seq + 1)
    }

    /// [`Outbox::next`] on a blocking-capable thread.
    pub async fn take(&self) -> io::Result<Option<(u64, AlarmEvent)>> {
        let outbox = self.clone();
        tokio::task::spawn_blocking(move || outbox.next())
            .await
            .unwrap_or_else(|e| Err(io::Error::other(e)))
    }

    /// [`Outbox::delivered`] on a blocking-capable thread.
    pub async fn mark_delivered(&self, seq: u64) -> io::Result<()> {
        let outbox = self.clone();
        tokio::task::spawn_blocking(move || outbox.delivered(seq))
            .await
            .unwrap_or_else(|e| Err(io::Error::other(e)))
    }

    pub fn pending(&self) -> u64 {
        self.lock().pending()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: i64) -> AlarmEvent {
        AlarmEvent::pump_fault(n, "水泵或变频器故障")
    }

    #[test]
    fn events_come_out_in_order_until_delivered_and_survive_a_reopen() {
        let dir = tempfile::tempdir().expect("temp dir");
        let outbox = Outbox::open(dir.path(), "wecom", None).expect("opens");
        assert!(outbox.next().expect("reads").is_none());
        outbox.push(&[event(1), event(2)]).expect("pushes");
        let (seq, first) = outbox.next().expect("reads").expect("an event");
        assert_eq!(first, event(1));
        assert_eq!(
            outbox.next().expect("reads").map(|(_, e)| e),
            Some(event(1)),
            "not delivered yet"
        );
        outbox.delivered(seq).expect("acks");
        drop(outbox);
        let outbox = Outbox::open(dir.path(), "wecom", None).expect("reopens");
        assert_eq!(
            outbox.next().expect("reads").map(|(_, e)| e),
            Some(event(2))
        );
        assert_eq!(outbox.pending(), 1);
    }
}
