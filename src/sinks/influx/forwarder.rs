//! The forwarder: reads batches from the telemetry log in order, writes them to InfluxDB and
//! acknowledges them in the log only when the whole batch is resolved (delivered, or refused
//! lines moved to the dead-letter file). Nothing is acknowledged on a failure, so a batch that
//! is in flight when the process dies is read again after the restart (InfluxDB absorbs the
//! duplicate: same series and timestamp overwrite).
//!
//! Sending happens when `flush_interval` ticks, or at once when a full batch is waiting; after an
//! outage the backlog drains in full batches, oldest first, while new readings keep being
//! appended behind it. Every wait between attempts is a jittered backoff (or Retry-After) and is
//! cut short by shutdown.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, Notify};

use crate::backoff::Backoff;
use crate::buffer::record::Record;
use crate::buffer::{io_thread, SegmentLog};
use crate::health::Health;
use crate::metrics::ForwarderStats;
use crate::sinks::rotating_file::RotatingFile;

use super::verdict::{classify, Verdict};
use super::write::WriteEndpoint;

/// The log, shared by the stage that appends and the forwarder that reads and acknowledges.
pub type SharedLog = Arc<Mutex<SegmentLog>>;

/// Locks the log for a quick operation in place (an append, a count); anything that may wait
/// for the card goes through [`with_log`].
pub fn lock_log(log: &SharedLog) -> std::sync::MutexGuard<'_, SegmentLog> {
    log.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs `f` on the log on the log's I/O thread ([`io_thread`]): reads from the card can take a
/// while.
pub async fn with_log<T: Send + 'static>(
    log: &SharedLog,
    f: impl FnOnce(&mut SegmentLog) -> T + Send + 'static,
) -> T {
    let log = Arc::clone(log);
    io_thread::run(move || f(&mut lock_log(&log))).await
}

/// Acknowledges below `upto`: in memory at once, the cursor's fsyncs on the I/O thread without
/// holding the log (appends go on meanwhile), then the delivered segments deleted.
async fn acknowledge(log: &SharedLog, upto: u64) -> std::io::Result<()> {
    let Some(write) = lock_log(log).acknowledge(upto) else {
        return Ok(());
    };
    let (write, written) = io_thread::run(move || {
        let written = write.run();
        (write, written)
    })
    .await;
    with_log(log, move |log| log.cursor_written(&write, written)).await
}

/// Batching and retry settings.
#[derive(Debug, Clone)]
pub struct ForwarderOptions {
    pub batch_lines: usize,
    pub batch_bytes: usize,
    pub flush_interval: Duration,
    /// First retry delay; doubles to `max_backoff`.
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// Refused lines are appended here with a comment saying why.
    pub dead_letter: PathBuf,
    /// The dead-letter file and its one predecessor together (see [`RotatingFile`]).
    pub dead_letter_max_bytes: u64,
}

impl ForwarderOptions {
    /// The options a configured output asks for, with the production backoff (1 s → 60 s).
    pub fn new(output: &crate::config::InfluxOutput, dead_letter: PathBuf) -> ForwarderOptions {
        ForwarderOptions {
            batch_lines: output.batch_lines,
            batch_bytes: output.batch_bytes,
            flush_interval: output.flush_interval.get(),
            min_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            dead_letter,
            dead_letter_max_bytes: output.dead_letter_max_mb << 20,
        }
    }
}

#[derive(Debug, Default)]
pub struct ForwarderStatus {
    stats: Mutex<ForwarderStats>,
}

impl ForwarderStatus {
    fn update(&self, change: impl FnOnce(&mut ForwarderStats)) {
        let mut stats = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        change(&mut stats);
        crate::metrics::publish_forwarder(&stats);
    }

    pub fn snapshot(&self) -> ForwarderStats {
        self.stats.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Stopped while waiting to retry: the batch stays unacknowledged in the log.
struct Stopped;

pub struct Forwarder {
    endpoint: WriteEndpoint,
    log: SharedLog,
    appended: Arc<Notify>,
    options: ForwarderOptions,
    backoff: Backoff,
    pub status: Arc<ForwarderStatus>,
    health: Arc<Health>,
    /// Opened at the first refused line.
    dead_letters: Option<RotatingFile>,
}

impl Forwarder {
    pub fn new(
        endpoint: WriteEndpoint,
        log: SharedLog,
        appended: Arc<Notify>,
        options: ForwarderOptions,
    ) -> Forwarder {
        let backoff = Backoff::new(options.min_backoff, options.max_backoff);
        Forwarder {
            endpoint,
            log,
            appended,
            options,
            backoff,
            status: Arc::new(ForwarderStatus::default()),
            health: Arc::new(Health::default()),
            dead_letters: None,
        }
    }

    /// Reports InfluxDB failures (and their end) to `health` as `influxdb`.
    pub fn reporting_to(mut self, health: Arc<Health>) -> Forwarder {
        self.health = health;
        self
    }

    /// Forwards until `shutdown` turns true.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        // Whatever an earlier consumer of this log read but did not acknowledge is sent again.
        with_log(&self.log, |log| log.rewind()).await;
        let mut tick = tokio::time::interval(self.options.flush_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = self.appended.notified() => {
                    let lines = self.options.batch_lines as u64;
                    if lock_log(&self.log).pending() < lines {
                        continue;
                    }
                }
                _ = shutdown.changed() => return,
            }
            if *shutdown.borrow() {
                return;
            }
            loop {
                let (lines, bytes) = (self.options.batch_lines, self.options.batch_bytes);
                let batch = match with_log(&self.log, move |log| log.read(lines, bytes)).await {
                    Ok(batch) => batch,
                    Err(e) => {
                        tracing::error!(error = %e, "Cannot read the telemetry log");
                        break;
                    }
                };
                let Some(last) = batch.last().map(|r| r.seq) else {
                    break;
                };
                let size: usize = batch.iter().map(|r| r.payload.len() + 1).sum();
                let full = batch.len() >= lines || size >= bytes;
                if self.deliver(batch, &mut shutdown).await.is_err() {
                    return;
                }
                if let Err(e) = acknowledge(&self.log, last + 1).await {
                    tracing::error!(error = %e, "Cannot persist the telemetry log cursor");
                }
                if !full {
                    break;
                }
            }
        }
    }

    /// Resolves one batch: delivered, or split, or refused lines dead-lettered.
    async fn deliver(
        &mut self,
        batch: Vec<Record>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), Stopped> {
        let mut work: VecDeque<Vec<Record>> = VecDeque::from([batch]);
        while let Some(chunk) = work.pop_front() {
            let lines: Vec<&str> = chunk
                .iter()
                .map(|r| std::str::from_utf8(&r.payload).unwrap_or(""))
                .collect();
            loop {
                let verdict = match self.endpoint.write(&lines).await {
                    Ok(response) => {
                        self.status.update(|s| match response.status {
                            200..=299 => s.requests_2xx += 1,
                            400..=499 => s.requests_4xx += 1,
                            _ => s.requests_5xx += 1,
                        });
                        let verdict = classify(&response, &lines);
                        if matches!(verdict, Verdict::Failed | Verdict::Throttled(_)) {
                            self.health.set(
                                "influxdb",
                                format!(
                                    "InfluxDB answers HTTP {}; readings wait in the telemetry log",
                                    response.status
                                ),
                            );
                        }
                        if verdict != Verdict::Delivered {
                            tracing::warn!(
                                status = response.status,
                                body = %excerpt(&response.body),
                                lines = lines.len(),
                                "InfluxDB did not accept a batch"
                            );
                        }
                        (verdict, response.status, response.body)
                    }
                    Err(e) => {
                        self.status.update(|s| s.request_failures += 1);
                        self.health.set(
                            "influxdb",
                            format!(
                                "InfluxDB unreachable ({e}); readings wait in the telemetry log"
                            ),
                        );
                        tracing::warn!(error = %e, "InfluxDB write failed");
                        (Verdict::Failed, 0, e.to_string())
                    }
                };
                match verdict {
                    (Verdict::Delivered, ..) => {
                        let n = chunk.len() as u64;
                        self.status.update(|s| {
                            s.sent_lines += n;
                            s.unauthorized = false;
                            s.not_acknowledged = false;
                        });
                        self.health.clear("influxdb");
                        self.backoff.reset();
                        break;
                    }
                    (Verdict::Rejected(refused), status, reason) => {
                        let refused_lines: Vec<&str> = refused.iter().map(|i| lines[*i]).collect();
                        self.dead_letter(&refused_lines, status, &reason).await;
                        let rest: Vec<Record> = chunk
                            .iter()
                            .enumerate()
                            .filter(|(i, _)| !refused.contains(i))
                            .map(|(_, r)| r.clone())
                            .collect();
                        if !rest.is_empty() {
                            work.push_front(rest);
                        }
                        break;
                    }
                    (Verdict::RejectedUnknown | Verdict::TooLarge, status, reason) => {
                        if chunk.len() == 1 {
                            self.dead_letter(&lines, status, &reason).await;
                        } else {
                            split_in_half(&chunk, &mut work);
                        }
                        break;
                    }
                    (Verdict::NotAcknowledged, status, body) => {
                        self.refused_request(
                            format!("InfluxDB's address answers HTTP {status} with a page instead of acknowledging the write (a captive portal or proxy?); readings wait in the telemetry log"),
                            &body,
                            shutdown,
                        )
                        .await?;
                    }
                    (Verdict::RequestRefused, status, body) => {
                        if chunk.len() > 1 {
                            // A bad line alone may be refused this way: look at halves first.
                            split_in_half(&chunk, &mut work);
                            break;
                        }
                        self.refused_request(
                            format!("InfluxDB's address refuses even a single line with HTTP {status}, saying nothing about the data (a proxy?); readings wait in the telemetry log"),
                            &body,
                            shutdown,
                        )
                        .await?;
                    }
                    (Verdict::Unauthorized, status, _) => {
                        let was = self.status.snapshot().unauthorized;
                        self.status.update(|s| s.unauthorized = true);
                        self.health.set(
                            "influxdb",
                            format!("InfluxDB refuses the credentials or the bucket/database (HTTP {status})"),
                        );
                        if !was {
                            tracing::error!(
                                status,
                                "InfluxDB refuses the credentials or the bucket/database; keeping every reading and retrying at the longest backoff"
                            );
                        }
                        let wait = self.options.max_backoff;
                        self.wait(wait, shutdown).await?;
                    }
                    (Verdict::Throttled(retry_after), ..) => {
                        let wait = retry_after
                            .unwrap_or_default()
                            .max(self.backoff.next_delay());
                        self.wait(wait, shutdown).await?;
                    }
                    (Verdict::Failed, ..) => {
                        let wait = self.backoff.next_delay();
                        self.wait(wait, shutdown).await?;
                    }
                }
            }
        }
        Ok(())
    }

    /// The uplink answers but does not take the data: keep it, report it, raise the flag the
    /// self-alarm reads, and back off before the next try.
    async fn refused_request(
        &mut self,
        problem: String,
        body: &str,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), Stopped> {
        let was = self.status.snapshot().not_acknowledged;
        self.status.update(|s| s.not_acknowledged = true);
        if !was {
            tracing::error!(answer = %excerpt(body), "{problem}");
        }
        self.health.set("influxdb", problem);
        let wait = self.backoff.next_delay();
        self.wait(wait, shutdown).await
    }

    async fn wait(
        &self,
        delay: Duration,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), Stopped> {
        self.status.update(|s| s.retries += 1);
        crate::metrics::record_retry_delay(delay);
        tokio::select! {
            _ = tokio::time::sleep(delay) => Ok(()),
            _ = shutdown.changed() => Err(Stopped),
        }
    }

    async fn dead_letter(&mut self, lines: &[&str], status: u16, reason: &str) {
        let now_ms = crate::model::unix_nanos(std::time::SystemTime::now()) / 1_000_000;
        let mut text = format!("# {now_ms} HTTP {status}: {}\n", excerpt(reason));
        for line in lines {
            text.push_str(line);
            text.push('\n');
        }
        // Rare, small and fsynced: written in place rather than on another thread.
        let written = match &mut self.dead_letters {
            Some(file) => Ok(file),
            None => RotatingFile::open(
                &self.options.dead_letter,
                self.options.dead_letter_max_bytes,
            )
            .map(|file| self.dead_letters.insert(file)),
        }
        .and_then(|file| {
            file.append(text.as_bytes())?;
            file.sync()?;
            Ok(file.rotated_out_lines())
        });
        let n = lines.len() as u64;
        self.status.update(|s| s.dead_lettered += n);
        self.health.set(
            "dead_letter",
            format!(
                "InfluxDB refused {} line(s) as bad data; see {}",
                self.status.snapshot().dead_lettered,
                self.options.dead_letter.display()
            ),
        );
        match written {
            Ok(rotated_out) => {
                self.status
                    .update(|s| s.dead_letter_rotated_out = rotated_out);
                tracing::error!(
                    lines = n,
                    file = %self.options.dead_letter.display(),
                    "InfluxDB refused lines; moved to the dead-letter file"
                )
            }
            Err(e) => tracing::error!(
                lines = n,
                error = %e,
                "InfluxDB refused lines and the dead-letter file cannot be written; they are lost"
            ),
        }
    }
}

/// Puts both halves of `chunk` at the front of `work`, first half first.
fn split_in_half(chunk: &[Record], work: &mut VecDeque<Vec<Record>>) {
    let (first, second) = chunk.split_at(chunk.len() / 2);
    work.push_front(second.to_vec());
    work.push_front(first.to_vec());
}

/// The first 200 characters of a body, on one line.
fn excerpt(text: &str) -> String {
    text.chars()
        .take(200)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}
