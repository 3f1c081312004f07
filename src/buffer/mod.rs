//! Durable buffers on local disk: the telemetry log that keeps every reading until InfluxDB has
//! confirmed it.
//!
//! # Design of the telemetry log
//!
//! **Why our own log.** The access pattern is append-only, read once in order, acknowledged in
//! order, deleted from the front. Measured write amplification per durable commit on this pattern
//! was ×4–5 for a plain segmented log against ×20 for SQLite (WAL, FULL) and ×33 for redb; SD
//! cards in the field wear out, so the plain log it is.
//!
//! **On disk.** A directory holds segment files `<base>.seg`, where `<base>` is the sequence
//! number of the segment's first record, 20 decimal digits, and a cursor file `ack`. A segment is
//! a run of records (see [`record`]): magic, length, CRC-32, sequence number, append time,
//! payload. Sequence numbers increase by one per record, across segments. The cursor holds the
//! first sequence number not yet acknowledged, with its own CRC, and is replaced atomically
//! (write `ack.tmp`, fsync, rename, fsync the directory).
//!
//! **Invariants.**
//! - Every record with sequence number ≥ the cursor that the scan finds is delivered (read) before
//!   any later one; records below the cursor are never read again.
//! - A record is *accepted* once written to the segment file: a killed process loses nothing
//!   accepted (the page cache outlives it). `fdatasync` runs every `sync_interval` or
//!   `sync_bytes`, so power loss loses at most that window.
//! - Only the last segment is appended to. A new segment is created when the last one would
//!   exceed `segment_bytes`; creating and deleting segments fsyncs the directory.
//! - Segments whose records are all acknowledged are deleted. When the segments together exceed
//!   `max_bytes`, the oldest is dropped even if unacknowledged, and its records are counted as
//!   dropped (`max_size`); the cursor is moved past it and persisted, so they are not counted twice.
//!
//! **Recovery (at every open; the scan, not the cursor, is the truth).** Every segment is read
//! and checked record by record, and no length is trusted:
//! - bytes that are not a valid record (a CRC that fails, a length that runs past the end, a
//!   wrong magic) are skipped by scanning for the next record whose magic and CRC check; each
//!   damaged region counts as one corrupt record, and the segment is rewritten without it (if
//!   there is no room for the copy, the damaged file stays and reads skip the damage);
//! - only what follows the last valid record is a tail: in the active segment a torn write,
//!   truncated and counted in torn bytes; in a closed segment damage, cut and counted as
//!   corrupt;
//! - a segment that cannot be read at all is renamed `<name>.corrupt` and counted as
//!   quarantined; the two newest quarantined files are kept, older ones removed;
//! - leftover `*.tmp` files (a replace cut short) are removed and counted;
//! - a gap in sequence numbers between segments (a segment deleted by hand or lost) is counted
//!   as lost records;
//! - a cursor that is missing, unreadable or fails its CRC is reset to the oldest record found:
//!   records may be sent twice, which InfluxDB absorbs (same series and timestamp overwrite);
//! - the next sequence number continues after the highest one found or the cursor.
//!
//! The log never refuses to open because of what is in it; only an unusable directory (cannot
//! create, cannot list) is an error.
//!
//! **I/O failures (every write goes through [`disk::Disk`], where tests inject them).**
//! - Records are written at the end of the last whole record (positional writes, no
//!   `O_APPEND`). A failed or short write is cut back with `set_len`; if even that fails, the
//!   bytes left stay behind the segment's known end, where reads never look and the next record
//!   overwrites them. The in-memory end only moves after a whole record is written.
//! - A segment leaves the in-memory list only once its file is removed.
//! - The cursor is written before delivered segments are deleted; when that write meets a full
//!   card, the segments are deleted first and the cursor written again (with the reserve, see
//!   [`reserve`]). A cursor that could not be written is kept in memory and written at the next
//!   acknowledgement or sync: nothing is read twice in the meantime.
//! - On a full card the telemetry log drops its oldest segment (acknowledged first, then
//!   unsent, counted as `disk_full`) and writes again; an outbox ([`WhenFull::Refuse`]) releases
//!   the reserve instead and never drops an alarm.
//!
//! **Not handled here.** What a record means (the sink writes line protocol into it and reads it
//! back), batching for InfluxDB, retries. The log is synchronous and single-owner; the async
//! stages call it from a blocking-capable context.

pub mod disk;
pub mod io_thread;
pub mod outbox;
pub mod record;
pub mod reserve;
mod segment_log;

pub use segment_log::{
    AppendError, Backlog, CursorWrite, LogOptions, LogStats, PendingSync, RecoveryReport,
    SegmentLog, WhenFull,
};

#[cfg(test)]
mod tests;

#[cfg(test)]
mod fault_tests;

#[cfg(test)]
mod corruption_tests;
