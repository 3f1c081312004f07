//! The segmented telemetry log: append, read in order, acknowledge, recover. See the module
//! documentation of [`crate::buffer`] for the on-disk format and the recovery rules.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use thiserror::Error;

use super::record::{self, Found, Record, HEADER_LEN, MAX_PAYLOAD};

const SEGMENT_SUFFIX: &str = ".seg";
const CURSOR_FILE: &str = "ack";
const CURSOR_TMP: &str = "ack.tmp";

/// Sizes and sync policy.
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
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            segment_bytes: 8 << 20,
            max_bytes: 1 << 30,
            sync_interval: Duration::from_secs(1),
            sync_bytes: 1 << 20,
        }
    }
}

/// Counters of the log since it was opened (recovery findings included).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogStats {
    pub appended: u64,
    /// Damaged records skipped (recovery and reads).
    pub corrupted: u64,
    /// Bytes of torn tails truncated at recovery.
    pub torn_bytes: u64,
    /// Segments renamed `*.corrupt` because they could not be read.
    pub quarantined: u64,
    /// Records missing between segments at recovery.
    pub lost: u64,
    /// Unacknowledged records dropped because the log exceeded `max_bytes`.
    pub dropped_max_size: u64,
    /// Cursors found unusable at recovery (records then re-sent from the oldest).
    pub cursor_resets: u64,
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

/// Why an append was refused.
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
}

#[derive(Debug)]
struct Segment {
    base: u64,
    path: PathBuf,
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
    active: File,
    next_seq: u64,
    /// Every sequence number below this is acknowledged.
    acked: u64,
    /// The next sequence number to read.
    read_seq: u64,
    read_at: Option<ReadPosition>,
    unsynced: u64,
    last_sync: Instant,
    stats: LogStats,
    scratch: Vec<u8>,
    /// Append time of the oldest unacknowledged record, once looked up: (sequence, time ms).
    oldest: Option<(u64, u64)>,
}

fn segment_name(base: u64) -> String {
    format!("{base:020}{SEGMENT_SUFFIX}")
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl SegmentLog {
    /// Opens (creating if needed) the log in `dir` and recovers it.
    pub fn open(dir: &Path, options: LogOptions) -> io::Result<(SegmentLog, RecoveryReport)> {
        fs::create_dir_all(dir)?;
        let mut stats = LogStats::default();
        let mut segments = Vec::new();
        let mut found: Vec<(u64, PathBuf)> = Vec::new();
        for entry in fs::read_dir(dir)? {
            let path = entry?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let Some(stem) = name.strip_suffix(SEGMENT_SUFFIX) else {
                continue;
            };
            match stem.parse::<u64>() {
                Ok(base) if stem.len() == 20 => found.push((base, path)),
                _ => quarantine(&path, &mut stats),
            }
        }
        found.sort();
        let count = found.len();
        for (i, (base, path)) in found.into_iter().enumerate() {
            let is_last = i + 1 == count;
            if let Some(segment) = recover_segment(base, &path, is_last, &mut stats) {
                segments.push(segment);
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
        // Append to the last segment, or start one.
        let active = match segments.last() {
            Some(last) => OpenOptions::new().append(true).open(&last.path)?,
            None => {
                let path = dir.join(segment_name(next_seq));
                let file = OpenOptions::new().create(true).append(true).open(&path)?;
                sync_dir(dir)?;
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
        };
        let mut log = SegmentLog {
            dir: dir.to_path_buf(),
            options,
            segments,
            active,
            next_seq,
            acked,
            read_seq: acked,
            read_at: None,
            unsynced: 0,
            last_sync: Instant::now(),
            stats,
            scratch: Vec::new(),
            oldest: None,
        };
        if !cursor_ok {
            log.write_cursor()?;
        }
        log.delete_acknowledged()?;
        Ok((log, report))
    }

    /// Appends one record; returns its sequence number. The record is written to the file (it
    /// survives a killed process) but not yet synced (see [`SegmentLog::sync_if_due`]).
    pub fn append(&mut self, time_ms: u64, payload: &[u8]) -> Result<u64, AppendError> {
        if payload.is_empty() || payload.len() > MAX_PAYLOAD {
            return Err(AppendError::Size(payload.len()));
        }
        let len = (HEADER_LEN + payload.len()) as u64;
        let active_bytes = self.segments.last().map_or(0, |s| s.bytes);
        if active_bytes > 0 && active_bytes + len > self.options.segment_bytes {
            self.roll()?;
        }
        let seq = self.next_seq;
        self.scratch.clear();
        record::encode(seq, time_ms, payload, &mut self.scratch);
        if let Err(e) = self.active.write_all(&self.scratch) {
            // A full disk: give up the oldest segment and try once more.
            if e.raw_os_error() == Some(28) && self.drop_oldest()? {
                self.active.write_all(&self.scratch)?;
            } else {
                return Err(e.into());
            }
        }
        if let Some(segment) = self.segments.last_mut() {
            segment.bytes += len;
            segment.last = Some(seq);
        }
        self.next_seq += 1;
        self.unsynced += len;
        self.stats.appended += 1;
        while self.total_bytes() > self.options.max_bytes && self.drop_oldest()? {}
        Ok(seq)
    }

    /// `fdatasync`s the active segment if `sync_interval` has passed or `sync_bytes` are waiting.
    /// Returns whether it synced.
    pub fn sync_if_due(&mut self) -> io::Result<bool> {
        let due = self.unsynced >= self.options.sync_bytes
            || (self.unsynced > 0 && self.last_sync.elapsed() >= self.options.sync_interval);
        if due {
            self.sync()?;
        }
        Ok(due)
    }

    /// `fdatasync`s the active segment now.
    pub fn sync(&mut self) -> io::Result<()> {
        self.active.sync_data()?;
        self.unsynced = 0;
        self.last_sync = Instant::now();
        Ok(())
    }

    /// Reads the next records in order, up to `max_records` and about `max_bytes` of payload
    /// (at least one record if any is waiting). Reading does not acknowledge.
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
            let window = (segment_bytes - position.offset)
                .min((max_bytes.saturating_sub(bytes) + HEADER_LEN + MAX_PAYLOAD) as u64);
            let buffer = read_range(&self.segments[index].path, position.offset, window)?;
            let mut at = 0usize;
            let mut progressed = false;
            while at < buffer.len() && out.len() < max_records && bytes < max_bytes {
                match record::decode(&buffer[at..]) {
                    Found::Record(rec, len) => {
                        at += len;
                        progressed = true;
                        if rec.seq >= self.read_seq {
                            self.read_seq = rec.seq + 1;
                            bytes += rec.payload.len();
                            out.push(rec);
                        }
                    }
                    Found::Truncated => break,
                    Found::Invalid => {
                        // Damaged since recovery: skip to the next valid record of the segment.
                        self.stats.corrupted += 1;
                        let rest = read_range(
                            &self.segments[index].path,
                            position.offset + at as u64,
                            segment_bytes - position.offset - at as u64,
                        )?;
                        at += record::resync(&rest, 1).unwrap_or(rest.len());
                        progressed = true;
                        break;
                    }
                }
            }
            self.read_at = Some(ReadPosition {
                base: position.base,
                offset: position.offset + at as u64,
            });
            if !progressed {
                break;
            }
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
    /// hold only acknowledged records.
    pub fn ack(&mut self, upto: u64) -> io::Result<()> {
        let upto = upto.min(self.next_seq);
        if upto <= self.acked {
            return Ok(());
        }
        self.acked = upto;
        if self.read_seq < upto {
            self.read_seq = upto;
            self.read_at = None;
        }
        self.write_cursor()?;
        self.delete_acknowledged()
    }

    /// Records appended but not acknowledged.
    pub fn pending(&self) -> u64 {
        self.next_seq - self.acked
    }

    /// Bytes of all segments.
    pub fn total_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum()
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
        let mut file = io::BufReader::new(File::open(&segment.path)?);
        file.seek(SeekFrom::Start(offset))?;
        let mut header = [0u8; HEADER_LEN];
        while file.read_exact(&mut header).is_ok() {
            let Some((seq, time, len)) = record::peek_header(&header) else {
                break;
            };
            if seq >= self.acked {
                self.oldest = Some((self.acked, time));
                return Ok(Some(time));
            }
            file.seek_relative(len as i64)?;
        }
        Ok(None)
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

    fn roll(&mut self) -> io::Result<()> {
        self.sync()?;
        let path = self.dir.join(segment_name(self.next_seq));
        self.active = OpenOptions::new().create(true).append(true).open(&path)?;
        sync_dir(&self.dir)?;
        self.segments.push(Segment {
            base: self.next_seq,
            path,
            bytes: 0,
            last: None,
        });
        Ok(())
    }

    /// Drops the oldest segment (not the active one), counting its unacknowledged records.
    fn drop_oldest(&mut self) -> io::Result<bool> {
        if self.segments.len() < 2 {
            return Ok(false);
        }
        let oldest = self.segments.remove(0);
        if let Some(last) = oldest.last {
            let from = oldest.base.max(self.acked);
            if last >= from {
                self.stats.dropped_max_size += last - from + 1;
            }
            let after = last + 1;
            if self.acked < after {
                self.acked = after;
                self.write_cursor()?;
            }
            if self.read_seq < after {
                self.read_seq = after;
                self.read_at = None;
            }
        }
        if self.read_at.is_some_and(|p| p.base == oldest.base) {
            self.read_at = None;
        }
        fs::remove_file(&oldest.path)?;
        sync_dir(&self.dir)?;
        Ok(true)
    }

    fn delete_acknowledged(&mut self) -> io::Result<()> {
        let mut deleted = false;
        while self.segments.len() > 1 {
            let first = &self.segments[0];
            let done = match first.last {
                Some(last) => last < self.acked,
                None => true,
            };
            if !done {
                break;
            }
            let gone = self.segments.remove(0);
            if self.read_at.is_some_and(|p| p.base == gone.base) {
                self.read_at = None;
            }
            fs::remove_file(&gone.path)?;
            deleted = true;
        }
        if deleted {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }

    fn write_cursor(&self) -> io::Result<()> {
        let mut bytes = Vec::with_capacity(12);
        bytes.extend_from_slice(&self.acked.to_le_bytes());
        bytes.extend_from_slice(&crc32fast::hash(&self.acked.to_le_bytes()).to_le_bytes());
        let tmp = self.dir.join(CURSOR_TMP);
        {
            let mut file = File::create(&tmp)?;
            file.write_all(&bytes)?;
            file.sync_data()?;
        }
        fs::rename(&tmp, self.dir.join(CURSOR_FILE))?;
        sync_dir(&self.dir)
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

fn quarantine(path: &Path, stats: &mut LogStats) {
    let mut target = path.as_os_str().to_owned();
    target.push(".corrupt");
    match fs::rename(path, &target) {
        Ok(()) => {
            tracing::error!(path = %path.display(), "Telemetry segment unreadable; quarantined")
        }
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "Telemetry segment unreadable and cannot be quarantined")
        }
    }
    stats.quarantined += 1;
}

/// Scans one segment, repairing it in place; `None` if it was quarantined or deleted as empty.
fn recover_segment(base: u64, path: &Path, is_last: bool, stats: &mut LogStats) -> Option<Segment> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(_) => {
            quarantine(path, stats);
            return None;
        }
    };
    let mut valid: Vec<(usize, usize)> = Vec::new();
    let mut last: Option<u64> = None;
    let mut at = 0usize;
    let mut damaged = false;
    let mut torn_from: Option<usize> = None;
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
            Found::Truncated => {
                torn_from = Some(at);
                break;
            }
            Found::Invalid => match record::resync(&bytes, at + 1) {
                Some(next) => {
                    stats.corrupted += 1;
                    damaged = true;
                    at = next;
                }
                None => {
                    // Nothing valid follows: a torn or zero-filled tail.
                    torn_from = Some(at);
                    break;
                }
            },
        }
    }
    if let Some(from) = torn_from {
        stats.torn_bytes += (bytes.len() - from) as u64;
    }
    let kept: u64 = valid.iter().map(|(_, len)| *len as u64).sum();
    let repair = |result: io::Result<()>| {
        if let Err(e) = result {
            tracing::error!(path = %path.display(), error = %e, "Cannot repair telemetry segment");
        }
    };
    if valid.is_empty() && !is_last {
        repair(fs::remove_file(path));
        return None;
    }
    if damaged {
        let mut clean = Vec::with_capacity(kept as usize);
        for (offset, len) in &valid {
            clean.extend_from_slice(&bytes[*offset..offset + len]);
        }
        repair(rewrite(path, &clean));
    } else if torn_from.is_some() {
        repair(truncate(path, kept));
    }
    Some(Segment {
        base,
        path: path.to_path_buf(),
        bytes: kept,
        last,
    })
}

fn truncate(path: &Path, len: u64) -> io::Result<()> {
    let file = OpenOptions::new().write(true).open(path)?;
    file.set_len(len)?;
    file.sync_all()
}

fn rewrite(path: &Path, contents: &[u8]) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    {
        let mut file = File::create(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}
