//! The segmented telemetry log: append, read in order, acknowledge, recover. See the module
//! documentation of [`crate::buffer`] for the on-disk format, the recovery rules and what each
//! I/O failure leaves behind.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use thiserror::Error;

use super::disk::{is_full, replace_file, Disk, OsDisk};
use super::record::{self, Found, Record, HEADER_LEN, MAX_PAYLOAD};
use super::reserve::{space, with_reserve, Reserve, Space};

const SEGMENT_SUFFIX: &str = ".seg";
const QUARANTINE_SUFFIX: &str = ".corrupt";
const CURSOR_FILE: &str = "ack";
/// Quarantined segments kept for inspection; older ones are removed.
const KEEP_QUARANTINED: usize = 2;
/// The most bytes of records [`SegmentLog::append_all`] puts into one write.
pub const WRITE_CHUNK: usize = 256 << 10;
/// What a read takes beyond its byte budget, so that the record crossing the budget is read
/// in the same window (a line is far shorter); a longer one is fetched by itself.
const READ_SLACK: usize = 4 << 10;

/// What the log does when the card is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenFull {
    /// Drop the oldest segment (acknowledged first, then unsent, counted as `disk_full`) and
    /// write again: telemetry, where the newest readings matter most.
    DropOldest,
    /// Refuse the append and keep everything: alarm outboxes, where nothing may be dropped.
    Refuse,
}

/// Sizes, sync policy and the filesystem underneath.
#[derive(Debug, Clone)]
pub struct LogOptions {
    /// A new segment is started when the current one would grow beyond this.
    pub segment_bytes: u64,
    /// All segments together; beyond it the oldest segment is dropped.
    pub max_bytes: u64,
    /// Longest time an accepted record waits for `fdatasync`.
    pub sync_interval: Duration,
    /// Unsynced bytes that trigger an `fdatasync` before `sync_interval` is up.
    pub sync_bytes: u64,
    pub when_full: WhenFull,
    /// Released on a full card so that the cursor (and, for [`WhenFull::Refuse`], appends) can
    /// still be written.
    pub reserve: Option<Arc<Reserve>>,
    pub disk: Arc<dyn Disk>,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            segment_bytes: 8 << 20,
            max_bytes: 1 << 30,
            sync_interval: Duration::from_secs(1),
            sync_bytes: 1 << 20,
            when_full: WhenFull::DropOldest,
            reserve: None,
            disk: OsDisk::shared(),
        }
    }
}

/// Counters of the log since it was opened (recovery findings included).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogStats {
    pub appended: u64,
    /// Damaged regions skipped (recovery and reads); each may have held several records.
    pub corrupted: u64,
    /// Bytes of torn tails truncated at recovery.
    pub torn_bytes: u64,
    /// Segments renamed `*.corrupt` because they could not be read.
    pub quarantined: u64,
    /// Records missing between segments at recovery.
    pub lost: u64,
    /// Unacknowledged records dropped because the log exceeded `max_bytes`.
    pub dropped_max_size: u64,
    /// Unacknowledged records dropped to make room on a full card.
    pub dropped_disk_full: u64,
    /// Cursors found unusable at recovery (records then re-sent from the oldest).
    pub cursor_resets: u64,
    /// Leftover files removed at recovery (temporary files, old quarantined segments).
    pub leftovers_removed: u64,
    /// Writes, syncs and removals that failed (each logged by the caller).
    pub io_errors: u64,
}

/// The log's size and what waits in it for InfluxDB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backlog {
    pub bytes: u64,
    /// Records appended but not acknowledged.
    pub pending: u64,
    /// Age of the oldest of them.
    pub oldest_unsent: Option<Duration>,
}

/// Why an append was refused. Nothing of the record is left where a read would find it.
#[derive(Debug, Error)]
pub enum AppendError {
    #[error("record of {0} bytes is empty or larger than {MAX_PAYLOAD}")]
    Size(usize),
    #[error("cannot write the telemetry log: {0}")]
    Io(#[from] io::Error),
}

/// What recovery found, for the start-up log line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    pub segments: usize,
    /// Records not yet acknowledged.
    pub pending: u64,
    pub corrupted: u64,
    pub torn_bytes: u64,
    pub quarantined: u64,
    pub lost: u64,
    pub cursor_reset: bool,
    pub leftovers_removed: u64,
}

#[derive(Debug)]
struct Segment {
    base: u64,
    path: PathBuf,
    /// End of the last whole record: where the next one is written, and where reads stop.
    bytes: u64,
    /// Sequence number of the last record, if the segment has any.
    last: Option<u64>,
}

/// Where the next read continues: a segment (by base) and a byte offset in it.
#[derive(Debug, Clone, Copy)]
struct ReadPosition {
    base: u64,
    offset: u64,
}

pub struct SegmentLog {
    dir: PathBuf,
    options: LogOptions,
    segments: Vec<Segment>,
    /// The last segment, open for positional writes.
    active: File,
    /// A failed write may have left bytes past the active segment's end that could not be cut
    /// off yet (they are overwritten by the next record in any case).
    tail_dirty: bool,
    next_seq: u64,
    /// Every sequence number below this is acknowledged.
    acked: u64,
    /// The acknowledgement is not on disk yet (the cursor write failed); tried again at the
    /// next acknowledgement or sync.
    cursor_dirty: bool,
    /// The next sequence number to read.
    read_seq: u64,
    read_at: Option<ReadPosition>,
    unsynced: u64,
    last_sync: Instant,
    stats: LogStats,
    /// Records encoded for the next write, and their indices in the batch being appended.
    scratch: Vec<u8>,
    carried: Vec<usize>,
    /// Append time of the oldest unacknowledged record, once looked up: (sequence, time ms).
    oldest: Option<(u64, u64)>,
}

fn segment_name(base: u64) -> String {
    format!("{base:020}{SEGMENT_SUFFIX}")
}

/// A segment file that is already gone counts as removed.
fn removed(result: io::Result<()>) -> io::Result<()> {
    match result {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

impl SegmentLog {
    /// Opens (creating if needed) the log in `dir` and recovers it. Only an unusable directory
    /// is an error; nothing in the directory's contents is.
    pub fn open(dir: &Path, options: LogOptions) -> io::Result<(SegmentLog, RecoveryReport)> {
        fs::create_dir_all(dir)?;
        let disk = Arc::clone(&options.disk);
        let mut stats = LogStats::default();
        let mut segments = Vec::new();
        let mut found: Vec<(u64, PathBuf)> = Vec::new();
        let mut quarantined: Vec<PathBuf> = Vec::new();
        for entry in fs::read_dir(dir)? {
            let path = entry?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if name.ends_with(".tmp") {
                if disk.remove(&path).is_ok() {
                    stats.leftovers_removed += 1;
                }
                continue;
            }
            if name.ends_with(QUARANTINE_SUFFIX) {
                quarantined.push(path);
                continue;
            }
            let Some(stem) = name.strip_suffix(SEGMENT_SUFFIX) else {
                continue;
            };
            match stem.parse::<u64>() {
                Ok(base) if stem.len() == 20 => found.push((base, path)),
                _ => {
                    if let Some(target) = quarantine(disk.as_ref(), &path, &mut stats) {
                        quarantined.push(target);
                    }
                }
            }
        }
        found.sort();
        let count = found.len();
        for (i, (base, path)) in found.into_iter().enumerate() {
            let is_last = i + 1 == count;
            match recover_segment(disk.as_ref(), base, &path, is_last, &mut stats) {
                Ok(segment) => segments.extend(segment),
                Err(()) => quarantined.extend(quarantine(disk.as_ref(), &path, &mut stats)),
            }
        }
        // Quarantined segments are kept for a look, but not without bound.
        quarantined.sort();
        let excess = quarantined.len().saturating_sub(KEEP_QUARANTINED);
        for path in &quarantined[..excess] {
            if disk.remove(path).is_ok() {
                stats.leftovers_removed += 1;
            }
        }
        // Gaps between segments: records lost with a missing segment.
        for pair in segments.windows(2) {
            let after = pair[0].last.map_or(pair[0].base, |last| last + 1);
            stats.lost += pair[1].base.saturating_sub(after);
        }
        let first_available = segments
            .iter()
            .find_map(|s| s.last.map(|_| s.base))
            .unwrap_or(0);
        let highest = segments.iter().filter_map(|s| s.last).max();
        let (mut acked, cursor_ok) = match read_cursor(dir) {
            Some(cursor) => (cursor, true),
            None => (first_available, false),
        };
        let has_records = highest.is_some();
        if !cursor_ok && (has_records || dir.join(CURSOR_FILE).exists()) {
            stats.cursor_resets += 1;
        }
        if let Some(first) = segments.iter().find(|s| s.last.is_some()) {
            if acked < first.base && cursor_ok {
                stats.lost += first.base - acked;
                acked = first.base;
            }
        }
        let next_seq = highest
            .map(|h| h + 1)
            .unwrap_or(0)
            .max(acked)
            .max(segments.last().map_or(0, |s| s.base));
        let acked = acked.min(next_seq);
        // Write to the last segment, or start one.
        let active = match segments.last() {
            Some(last) => disk.open(&last.path)?,
            None => {
                let path = dir.join(segment_name(next_seq));
                let file = disk.create(&path)?;
                if let Err(e) = disk.sync_dir(dir) {
                    tracing::warn!(error = %e, "Cannot sync the telemetry log directory");
                }
                segments.push(Segment {
                    base: next_seq,
                    path,
                    bytes: 0,
                    last: None,
                });
                file
            }
        };
        let pending = segments
            .iter()
            .filter_map(|s| s.last.map(|last| (s.base.max(acked), last)))
            .filter(|(from, last)| last >= from)
            .map(|(from, last)| last - from + 1)
            .sum();
        let report = RecoveryReport {
            segments: segments.len(),
            pending,
            corrupted: stats.corrupted,
            torn_bytes: stats.torn_bytes,
            quarantined: stats.quarantined,
            lost: stats.lost,
            cursor_reset: stats.cursor_resets > 0,
            leftovers_removed: stats.leftovers_removed,
        };
        let mut log = SegmentLog {
            dir: dir.to_path_buf(),
            options,
            segments,
            active,
            tail_dirty: false,
            next_seq,
            acked,
            cursor_dirty: !cursor_ok,
            read_seq: acked,
            read_at: None,
            unsynced: 0,
            last_sync: Instant::now(),
            stats,
            scratch: Vec::new(),
            carried: Vec::new(),
            oldest: None,
        };
        // Neither is needed to read or append; both are tried again later.
        if let Err(e) = log.persist_cursor() {
            tracing::warn!(dir = %dir.display(), error = %e, "Cannot write the log cursor yet");
        }
        if let Err(e) = log.delete_acknowledged() {
            tracing::warn!(dir = %dir.display(), error = %e, "Cannot delete acknowledged segments yet");
        }
        Ok((log, report))
    }

    /// Appends one record; returns its sequence number. The record is written to the file (it
    /// survives a killed process) but not yet synced (see [`SegmentLog::sync_if_due`]). On a
    /// full card the log first makes room as [`LogOptions::when_full`] says. A refused append
    /// leaves nothing a read or a recovery would take for a record.
    pub fn append(&mut self, time_ms: u64, payload: &[u8]) -> Result<u64, AppendError> {
        let mut outcome = Err(AppendError::Size(payload.len()));
        self.append_all([(time_ms, payload)], |_, result| outcome = result);
        outcome
    }

    /// Appends `records` (time in ms, payload) in order, as [`SegmentLog::append`] does each, but
    /// with one write for all the records that fit in the active segment (and in
    /// [`WRITE_CHUNK`]): a bus's polls of a tenth of a second cost the card one write, not one
    /// each. `settle` learns each record's outcome by its index in `records`: its sequence
    /// number, or why it was refused. A write that fails refuses the records it carried and no
    /// others.
    pub fn append_all<'a>(
        &mut self,
        records: impl IntoIterator<Item = (u64, &'a [u8])>,
        mut settle: impl FnMut(usize, Result<u64, AppendError>),
    ) {
        self.cut_tail();
        self.scratch.clear();
        let mut carried = std::mem::take(&mut self.carried);
        for (index, (time_ms, payload)) in records.into_iter().enumerate() {
            if payload.is_empty() || payload.len() > MAX_PAYLOAD {
                settle(index, Err(AppendError::Size(payload.len())));
                continue;
            }
            let len = (HEADER_LEN + payload.len()) as u64;
            let used = self.active_segment().bytes + self.scratch.len() as u64;
            let segment_full = used > 0 && used + len > self.options.segment_bytes;
            if segment_full || self.scratch.len() + len as usize > WRITE_CHUNK {
                self.write_carried(&mut carried, &mut settle);
            }
            let active_bytes = self.active_segment().bytes;
            if active_bytes > 0 && active_bytes + len > self.options.segment_bytes {
                if let Err(e) = self.roll() {
                    self.stats.io_errors += 1;
                    settle(index, Err(e.into()));
                    continue;
                }
            }
            let seq = self.next_seq + carried.len() as u64;
            record::encode(seq, time_ms, payload, &mut self.scratch);
            carried.push(index);
        }
        self.write_carried(&mut carried, &mut settle);
        self.carried = carried;
    }

    /// Writes the records encoded in `scratch` (their indices in `carried`) at the end of the
    /// active segment, making room once on a full card, and settles them.
    fn write_carried(
        &mut self,
        carried: &mut Vec<usize>,
        settle: &mut impl FnMut(usize, Result<u64, AppendError>),
    ) {
        if carried.is_empty() {
            return;
        }
        let written = match self.write_record() {
            Err(e) if is_full(&e) && self.make_room() => self.write_record(),
            other => other,
        };
        match written {
            Ok(()) => {
                let first = self.next_seq;
                let count = carried.len() as u64;
                let len = self.scratch.len() as u64;
                let segment = self.active_segment_mut();
                segment.bytes += len;
                segment.last = Some(first + count - 1);
                self.next_seq += count;
                self.unsynced += len;
                self.stats.appended += count;
                for (seq, index) in (first..).zip(carried.drain(..)) {
                    settle(index, Ok(seq));
                }
                self.enforce_max_bytes();
            }
            Err(e) => {
                self.stats.io_errors += 1;
                for index in carried.drain(..) {
                    settle(index, Err(io::Error::new(e.kind(), e.to_string()).into()));
                }
            }
        }
        self.scratch.clear();
    }

    /// `fdatasync`s the active segment if `sync_interval` has passed or `sync_bytes` are waiting,
    /// and retries a cursor that could not be written. Returns whether it synced.
    pub fn sync_if_due(&mut self) -> io::Result<bool> {
        let due = self.sync_is_due();
        if due {
            self.sync()?;
        }
        if self.cursor_dirty {
            self.persist_cursor()?;
        }
        Ok(due)
    }

    /// The sync that is due (as [`SegmentLog::sync_if_due`] judges), to run without holding the
    /// log: a handle on the active segment and the bytes it covers. Appends go on meanwhile;
    /// report the outcome with [`SegmentLog::synced`].
    pub fn sync_due(&mut self) -> io::Result<Option<PendingSync>> {
        if self.cursor_dirty {
            self.persist_cursor()?;
        }
        if !self.sync_is_due() {
            return Ok(None);
        }
        self.cut_tail();
        Ok(Some(PendingSync {
            file: self.active.try_clone()?,
            bytes: self.unsynced,
            disk: Arc::clone(&self.options.disk),
        }))
    }

    /// A [`PendingSync`] of `bytes` succeeded: they are durable.
    pub fn synced(&mut self, bytes: u64) {
        self.unsynced = self.unsynced.saturating_sub(bytes);
        self.last_sync = Instant::now();
    }

    /// Whether `sync_interval` has passed with bytes waiting, or `sync_bytes` are waiting.
    fn sync_is_due(&self) -> bool {
        self.unsynced >= self.options.sync_bytes
            || (self.unsynced > 0 && self.last_sync.elapsed() >= self.options.sync_interval)
    }

    /// `fdatasync`s the active segment now.
    pub fn sync(&mut self) -> io::Result<()> {
        self.cut_tail();
        self.options
            .disk
            .sync_data(&self.active)
            .inspect_err(|_| self.stats.io_errors += 1)?;
        self.unsynced = 0;
        self.last_sync = Instant::now();
        Ok(())
    }

    /// Reads the next records in order, up to `max_records` and about `max_bytes` of payload
    /// (at least one record if any is waiting). Reading does not acknowledge. Damage found
    /// since recovery is skipped (counted) by scanning for the next valid record; a read never
    /// stops for good at a damaged record.
    pub fn read(&mut self, max_records: usize, max_bytes: usize) -> io::Result<Vec<Record>> {
        let mut out = Vec::new();
        let mut bytes = 0usize;
        while out.len() < max_records && bytes < max_bytes && self.read_seq < self.next_seq {
            let position = match self.read_at {
                Some(p) => p,
                None => match self.locate(self.read_seq) {
                    Some(p) => p,
                    None => break,
                },
            };
            let Some(index) = self.segments.iter().position(|s| s.base == position.base) else {
                self.read_at = None;
                continue;
            };
            let segment_bytes = self.segments[index].bytes;
            if position.offset >= segment_bytes {
                // End of this segment: continue in the next one, if there is one.
                match self.segments.get(index + 1) {
                    Some(next) => {
                        self.read_at = Some(ReadPosition {
                            base: next.base,
                            offset: 0,
                        });
                        continue;
                    }
                    None => break,
                }
            }
            let remaining = segment_bytes - position.offset;
            let mut window =
                remaining.min((max_bytes.saturating_sub(bytes) + HEADER_LEN + READ_SLACK) as u64);
            let mut buffer = read_range(&self.segments[index].path, position.offset, window)?;
            // A record longer than the window is read whole: the window is sized for the batch,
            // not for the largest record the log takes.
            if let Some(whole) = record::declared_len(&buffer).map(|len| len as u64) {
                if whole > buffer.len() as u64 && whole <= remaining {
                    window = whole;
                    buffer = read_range(&self.segments[index].path, position.offset, window)?;
                }
            }
            if buffer.is_empty() {
                // The file is shorter than the log knows (cut outside the log): skip the rest.
                self.stats.corrupted += 1;
                self.read_at = Some(ReadPosition {
                    base: position.base,
                    offset: segment_bytes,
                });
                continue;
            }
            let reaches_end =
                (buffer.len() as u64) < window || position.offset + window == segment_bytes;
            let mut at = 0usize;
            while at < buffer.len() && out.len() < max_records && bytes < max_bytes {
                match record::decode(&buffer[at..]) {
                    Found::Record(rec, len) => {
                        at += len;
                        if rec.seq >= self.read_seq {
                            self.read_seq = rec.seq + 1;
                            bytes += rec.payload.len();
                            out.push(rec);
                        }
                    }
                    // The window ends inside a whole record: read on from it.
                    Found::Truncated if at > 0 && !reaches_end => break,
                    Found::Truncated | Found::Invalid => {
                        // Damaged since recovery: skip to the next valid record of the segment.
                        self.stats.corrupted += 1;
                        let from = position.offset + at as u64;
                        let rest =
                            read_range(&self.segments[index].path, from, segment_bytes - from)?;
                        at += record::resync(&rest, 1).unwrap_or((segment_bytes - from) as usize);
                        break;
                    }
                }
            }
            self.read_at = Some(ReadPosition {
                base: position.base,
                offset: position.offset + at as u64,
            });
        }
        Ok(out)
    }

    /// Starts reading again from the oldest unacknowledged record (after a failed delivery that
    /// the caller did not keep in memory, or a restart of the consumer).
    pub fn rewind(&mut self) {
        self.read_seq = self.acked;
        self.read_at = None;
    }

    /// Acknowledges every record below `upto`: persists the cursor and deletes segments that
    /// hold only acknowledged records. On an error the acknowledgement still holds in memory
    /// (nothing is read again) and is written at the next acknowledgement or sync.
    pub fn ack(&mut self, upto: u64) -> io::Result<()> {
        match self.acknowledge(upto) {
            None => Ok(()),
            Some(write) => {
                let written = write.run();
                self.cursor_written(&write, written)
            }
        }
    }

    /// [`SegmentLog::ack`] in two halves, so that the cursor's fsyncs run without holding the
    /// log: acknowledges below `upto` in memory and returns the cursor write to run, when the
    /// cursor changed; report its outcome with [`SegmentLog::cursor_written`].
    pub fn acknowledge(&mut self, upto: u64) -> Option<CursorWrite> {
        let upto = upto.min(self.next_seq);
        if upto > self.acked {
            self.acked = upto;
            self.cursor_dirty = true;
            if self.read_seq < upto {
                self.read_seq = upto;
                self.read_at = None;
            }
        }
        if !self.cursor_dirty {
            return None;
        }
        // In flight from here: a sync meanwhile must not write the cursor a second time (on
        // the runtime's thread, and over the same temporary file). A failed write marks it
        // dirty again in `cursor_written`.
        self.cursor_dirty = false;
        Some(self.cursor_write())
    }

    /// After a [`CursorWrite`] ran: the delivered segments are deleted. The cursor first, so
    /// that a crash in between cannot make delivered records look lost; on a full card,
    /// deleting the delivered segments is what makes room for it, so it is written again here.
    /// A cursor that could not be written (or has moved on since) is dirty again and is
    /// retried at the next acknowledgement or sync.
    pub fn cursor_written(
        &mut self,
        write: &CursorWrite,
        written: io::Result<()>,
    ) -> io::Result<()> {
        if written.is_err() || write.acked != self.acked {
            self.cursor_dirty = true;
        }
        let deleted = self.delete_acknowledged();
        match written {
            Err(e) if is_full(&e) => self.persist_cursor(),
            other => other,
        }
        .and(deleted)
        .inspect_err(|_| self.stats.io_errors += 1)
    }

    /// Records appended but not acknowledged.
    pub fn pending(&self) -> u64 {
        self.next_seq - self.acked
    }

    /// Bytes of all segments.
    pub fn total_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum()
    }

    /// Room on the log's filesystem, and whether it is low: below two segments or 5 % of the
    /// filesystem (where the next full card would start dropping readings). Re-makes a released
    /// reserve when there is room for it again.
    pub fn room(&self) -> io::Result<(Space, bool)> {
        if let Some(reserve) = &self.options.reserve {
            reserve.restore();
        }
        let space = space(&self.dir)?;
        let low = space.available < 2 * self.options.segment_bytes
            || space.available.saturating_mul(20) < space.total;
        Ok((space, low))
    }

    pub fn stats(&self) -> &LogStats {
        &self.stats
    }

    /// Size and backlog as of `now_ms` (Unix ms): what metrics, the status API and
    /// self-monitoring report. An unreadable oldest record gives no age rather than an error.
    pub fn backlog(&mut self, now_ms: i64) -> Backlog {
        let oldest = self.oldest_pending_time_ms().ok().flatten();
        Backlog {
            bytes: self.total_bytes(),
            pending: self.pending(),
            oldest_unsent: oldest
                .map(|t| Duration::from_millis(now_ms.saturating_sub(t as i64).max(0) as u64)),
        }
    }

    /// Append time (Unix ms) of the oldest unacknowledged record, `None` when nothing is
    /// pending. Reads one header at the read position in the usual case (everything read so far
    /// acknowledged); otherwise scans headers from the start of the record's segment.
    pub fn oldest_pending_time_ms(&mut self) -> io::Result<Option<u64>> {
        if self.acked >= self.next_seq {
            return Ok(None);
        }
        if let Some((seq, time)) = self.oldest {
            if seq == self.acked {
                return Ok(Some(time));
            }
        }
        let Some(position) = self.locate(self.acked) else {
            return Ok(None);
        };
        let offset = match self.read_at {
            Some(at) if at.base == position.base && self.read_seq == self.acked => at.offset,
            _ => 0,
        };
        let Some(segment) = self.segments.iter().find(|s| s.base == position.base) else {
            return Ok(None);
        };
        let end = segment.bytes;
        let mut file = io::BufReader::new(File::open(&segment.path)?);
        file.seek(SeekFrom::Start(offset))?;
        let mut at = offset;
        let mut header = [0u8; HEADER_LEN];
        while at + HEADER_LEN as u64 <= end && file.read_exact(&mut header).is_ok() {
            let Some((seq, time, len)) = record::peek_header(&header) else {
                break;
            };
            if seq >= self.acked {
                self.oldest = Some((self.acked, time));
                return Ok(Some(time));
            }
            file.seek_relative(len as i64)?;
            at += (HEADER_LEN + len) as u64;
        }
        Ok(None)
    }

    fn active_segment(&self) -> &Segment {
        self.segments
            .last()
            .unwrap_or_else(|| unreachable!("the log always has an active segment"))
    }

    fn active_segment_mut(&mut self) -> &mut Segment {
        self.segments
            .last_mut()
            .unwrap_or_else(|| unreachable!("the log always has an active segment"))
    }

    /// Writes the encoded record in `scratch` at the end of the active segment. On failure,
    /// cuts the file back to its last whole record (or notes that it must be).
    fn write_record(&mut self) -> io::Result<()> {
        let offset = self.active_segment().bytes;
        let written = self
            .options
            .disk
            .write_at(&self.active, offset, &self.scratch);
        if written.is_err() {
            self.tail_dirty = true;
            self.cut_tail();
        }
        written
    }

    /// Cuts bytes a failed write left behind the last whole record, if any are pending.
    fn cut_tail(&mut self) {
        if self.tail_dirty {
            let end = self.active_segment().bytes;
            if self.options.disk.set_len(&self.active, end).is_ok() {
                self.tail_dirty = false;
            }
        }
    }

    /// Frees room for an append that met a full card. Returns whether anything was freed.
    fn make_room(&mut self) -> bool {
        if self.options.when_full == WhenFull::Refuse {
            return self
                .options
                .reserve
                .as_deref()
                .is_some_and(Reserve::release);
        }
        if self.segments.len() < 2 {
            // Only the active segment holds records: close it so that it can be dropped.
            if self.active_segment().bytes == 0 || self.roll().is_err() {
                return false;
            }
        }
        match self.drop_oldest(DropReason::DiskFull) {
            Ok(freed) => freed,
            Err(e) => {
                self.stats.io_errors += 1;
                tracing::error!(dir = %self.dir.display(), error = %e, "Cannot drop the oldest segment on a full card");
                false
            }
        }
    }

    fn enforce_max_bytes(&mut self) {
        while self.total_bytes() > self.options.max_bytes {
            match self.drop_oldest(DropReason::MaxSize) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    self.stats.io_errors += 1;
                    tracing::error!(dir = %self.dir.display(), error = %e, "Cannot drop the oldest segment beyond the size limit");
                    break;
                }
            }
        }
    }

    /// Where reading `seq` starts: the first segment that holds a record at or after it.
    fn locate(&self, seq: u64) -> Option<ReadPosition> {
        self.segments
            .iter()
            .find(|s| s.last.is_some_and(|last| last >= seq))
            .map(|s| ReadPosition {
                base: s.base,
                offset: 0,
            })
    }

    /// Syncs the active segment and starts a new one. On failure the old segment stays active.
    fn roll(&mut self) -> io::Result<()> {
        self.sync()?;
        let path = self.dir.join(segment_name(self.next_seq));
        let file = self.options.disk.create(&path)?;
        self.segments.push(Segment {
            base: self.next_seq,
            path,
            bytes: 0,
            last: None,
        });
        self.active = file;
        self.tail_dirty = false;
        self.options.disk.sync_dir(&self.dir)
    }

    /// Drops the oldest segment (not the active one), counting its unacknowledged records. The
    /// segment leaves the list only once its file is gone.
    fn drop_oldest(&mut self, reason: DropReason) -> io::Result<bool> {
        if self.segments.len() < 2 {
            return Ok(false);
        }
        removed(self.options.disk.remove(&self.segments[0].path))?;
        let oldest = self.segments.remove(0);
        if let Some(last) = oldest.last {
            let from = oldest.base.max(self.acked);
            if last >= from {
                let count = last - from + 1;
                match reason {
                    DropReason::MaxSize => self.stats.dropped_max_size += count,
                    DropReason::DiskFull => self.stats.dropped_disk_full += count,
                }
                tracing::error!(
                    records = count,
                    reason = reason.name(),
                    dir = %self.dir.display(),
                    "Dropped the oldest unsent readings"
                );
            }
            let after = last + 1;
            if self.acked < after {
                self.acked = after;
                self.cursor_dirty = true;
            }
            if self.read_seq < after {
                self.read_seq = after;
                self.read_at = None;
            }
        }
        if self.read_at.is_some_and(|p| p.base == oldest.base) {
            self.read_at = None;
        }
        // Neither failure undoes the drop: the file is gone, and a stale cursor only makes the
        // next recovery count the dropped records as lost.
        let synced = self.options.disk.sync_dir(&self.dir);
        if let Err(e) = synced.and_then(|()| self.persist_cursor()) {
            self.stats.io_errors += 1;
            tracing::warn!(dir = %self.dir.display(), error = %e, "Segment dropped; its cursor or directory entry not yet durable");
        }
        Ok(true)
    }

    /// Deletes the segments before the active one that hold only acknowledged records. Each
    /// leaves the list only once its file is gone.
    fn delete_acknowledged(&mut self) -> io::Result<()> {
        let mut deleted = false;
        let mut result = Ok(());
        while self.segments.len() > 1 {
            let first = &self.segments[0];
            if first.last.is_some_and(|last| last >= self.acked) {
                break;
            }
            if let Err(e) = removed(self.options.disk.remove(&first.path)) {
                result = Err(e);
                break;
            }
            let gone = self.segments.remove(0);
            if self.read_at.is_some_and(|p| p.base == gone.base) {
                self.read_at = None;
            }
            deleted = true;
        }
        if deleted {
            result = result.and(self.options.disk.sync_dir(&self.dir));
        }
        result
    }

    /// Writes the cursor if it changed since the last write, using the reserve on a full card.
    fn persist_cursor(&mut self) -> io::Result<()> {
        if !self.cursor_dirty {
            return Ok(());
        }
        self.cursor_write().run()?;
        self.cursor_dirty = false;
        Ok(())
    }

    /// The write of the cursor as it is now.
    fn cursor_write(&self) -> CursorWrite {
        CursorWrite {
            acked: self.acked,
            path: self.dir.join(CURSOR_FILE),
            disk: Arc::clone(&self.options.disk),
            reserve: self.options.reserve.clone(),
        }
    }
}

/// A write of the acknowledged position taken out of the log (see
/// [`SegmentLog::acknowledge`]): a temporary file, fsynced, renamed over the cursor, the
/// directory synced.
pub struct CursorWrite {
    acked: u64,
    path: PathBuf,
    disk: Arc<dyn Disk>,
    reserve: Option<Arc<Reserve>>,
}

impl CursorWrite {
    /// Writes the cursor (blocking), using the reserve on a full card.
    pub fn run(&self) -> io::Result<()> {
        let mut bytes = Vec::with_capacity(12);
        bytes.extend_from_slice(&self.acked.to_le_bytes());
        bytes.extend_from_slice(&crc32fast::hash(&self.acked.to_le_bytes()).to_le_bytes());
        with_reserve(self.reserve.as_deref(), || {
            replace_file(self.disk.as_ref(), &self.path, &bytes)
        })
    }
}

/// An `fdatasync` of the active segment taken out of the log (see [`SegmentLog::sync_due`]).
pub struct PendingSync {
    file: File,
    bytes: u64,
    disk: Arc<dyn Disk>,
}

impl PendingSync {
    /// Runs the sync (blocking); the bytes it made durable.
    pub fn run(self) -> io::Result<u64> {
        self.disk.sync_data(&self.file)?;
        Ok(self.bytes)
    }
}

#[derive(Debug, Clone, Copy)]
enum DropReason {
    MaxSize,
    DiskFull,
}

impl DropReason {
    fn name(self) -> &'static str {
        match self {
            DropReason::MaxSize => "max_size",
            DropReason::DiskFull => "disk_full",
        }
    }
}

/// The cursor, if the file exists and passes its CRC.
fn read_cursor(dir: &Path) -> Option<u64> {
    let bytes = fs::read(dir.join(CURSOR_FILE)).ok()?;
    if bytes.len() != 12 {
        return None;
    }
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&bytes[..8]);
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&bytes[8..]);
    (crc32fast::hash(&seq) == u32::from_le_bytes(crc)).then(|| u64::from_le_bytes(seq))
}

fn read_range(path: &Path, offset: u64, len: u64) -> io::Result<Vec<u8>> {
    let mut file = File::open(path)?;
    file.seek(SeekFrom::Start(offset))?;
    let mut buffer = Vec::with_capacity(len as usize);
    file.take(len).read_to_end(&mut buffer)?;
    Ok(buffer)
}

/// Renames an unreadable segment `<name>.corrupt`; returns the new path.
fn quarantine(disk: &dyn Disk, path: &Path, stats: &mut LogStats) -> Option<PathBuf> {
    let mut target = path.as_os_str().to_owned();
    target.push(QUARANTINE_SUFFIX);
    let target = PathBuf::from(target);
    stats.quarantined += 1;
    match disk.rename(path, &target) {
        Ok(()) => {
            tracing::error!(path = %path.display(), "Telemetry segment unreadable; quarantined");
            Some(target)
        }
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "Telemetry segment unreadable and cannot be quarantined");
            None
        }
    }
}

/// Scans one segment and repairs it: `Ok(None)` if it held nothing and was deleted, `Err` if it
/// cannot be read (the caller quarantines it).
///
/// No length is trusted: bytes that are not a valid record, including a header whose length
/// runs past the end, are skipped by scanning for the next record whose magic and CRC check;
/// each such region counts once as corrupted. Only what follows the last valid record is a
/// tail: torn bytes in the active segment, damage in a closed one.
fn recover_segment(
    disk: &dyn Disk,
    base: u64,
    path: &Path,
    is_last: bool,
    stats: &mut LogStats,
) -> Result<Option<Segment>, ()> {
    let bytes = fs::read(path).map_err(|_| ())?;
    let mut valid: Vec<(usize, usize)> = Vec::new();
    let mut last: Option<u64> = None;
    let mut at = 0usize;
    let mut damaged = false;
    let mut tail_from: Option<usize> = None;
    while at < bytes.len() {
        match record::decode(&bytes[at..]) {
            Found::Record(rec, len) => {
                let in_order = rec.seq >= base && last.is_none_or(|l| rec.seq > l);
                if in_order {
                    valid.push((at, len));
                    last = Some(rec.seq);
                } else {
                    stats.corrupted += 1;
                    damaged = true;
                }
                at += len;
            }
            Found::Truncated | Found::Invalid => match record::resync(&bytes, at + 1) {
                Some(next) => {
                    stats.corrupted += 1;
                    damaged = true;
                    at = next;
                }
                None => {
                    tail_from = Some(at);
                    break;
                }
            },
        }
    }
    if let Some(from) = tail_from {
        if is_last {
            stats.torn_bytes += (bytes.len() - from) as u64;
        } else {
            stats.corrupted += 1;
        }
    }
    let repair = |result: io::Result<()>| match result {
        Ok(()) => true,
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "Cannot repair telemetry segment");
            false
        }
    };
    if valid.is_empty() && !is_last {
        repair(removed(disk.remove(path)));
        return Ok(None);
    }
    let end = valid.last().map_or(0, |(offset, len)| offset + len) as u64;
    let mut segment = Segment {
        base,
        path: path.to_path_buf(),
        bytes: end,
        last,
    };
    if damaged {
        let mut clean = Vec::with_capacity(end as usize);
        for (offset, len) in &valid {
            clean.extend_from_slice(&bytes[*offset..offset + len]);
        }
        // Without room for the copy the damaged file stays; reads skip its damage.
        if repair(replace_file(disk, path, &clean)) {
            segment.bytes = clean.len() as u64;
        }
    } else if tail_from.is_some() {
        // A failed cut is harmless: the next record is written over the tail.
        repair(disk.open(path).and_then(|file| {
            disk.set_len(&file, end)?;
            disk.sync_data(&file)
        }));
    }
    Ok(Some(segment))
}
