//! The telemetry log: order, acknowledgement, one test per known corruption mode, and a
//! model-based property test.

use std::fs;
use std::path::{Path, PathBuf};

use proptest::prelude::*;

use super::record::HEADER_LEN;
use super::{LogOptions, SegmentLog};

fn options(segment_bytes: u64) -> LogOptions {
    LogOptions {
        segment_bytes,
        ..LogOptions::default()
    }
}

fn payload(i: u64) -> Vec<u8> {
    format!("pump_station,device=booster-1 counter={i}i 1764150000{i:09}").into_bytes()
}

/// A log in `dir` holding records 0..n.
fn filled(dir: &Path, n: u64, segment_bytes: u64) -> SegmentLog {
    let (mut log, _) = SegmentLog::open(dir, options(segment_bytes)).expect("opens");
    for i in 0..n {
        assert_eq!(log.append(i, &payload(i)).expect("appends"), i);
    }
    log.sync().expect("syncs");
    log
}

fn read_all(log: &mut SegmentLog) -> Vec<u64> {
    read_checked(log, payload)
}

/// Reads everything waiting, checking each payload against `expected(seq)`; the sequence
/// numbers read. Panics if reading never ends (a read that keeps returning records).
pub(super) fn read_checked(log: &mut SegmentLog, expected: fn(u64) -> Vec<u8>) -> Vec<u64> {
    let mut seqs = Vec::new();
    for _ in 0..100_000 {
        let batch = log.read(7, 1 << 20).expect("reads");
        if batch.is_empty() {
            return seqs;
        }
        for record in batch {
            assert_eq!(
                record.payload,
                expected(record.seq),
                "payload of {}",
                record.seq
            );
            seqs.push(record.seq);
        }
    }
    panic!("reading never ends")
}

fn reopen(dir: &Path, segment_bytes: u64) -> SegmentLog {
    SegmentLog::open(dir, options(segment_bytes))
        .expect("reopens")
        .0
}

/// The segment files in `dir`, oldest first.
pub(super) fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir(dir)
        .expect("lists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    found.sort();
    found
}

fn record_len(i: u64) -> u64 {
    (HEADER_LEN + payload(i).len()) as u64
}

#[test]
fn appends_and_reads_back_in_order_across_segments() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut log = filled(dir.path(), 100, 1000);
    assert!(segments(dir.path()).len() > 5);
    assert_eq!(read_all(&mut log), (0..100).collect::<Vec<_>>());
    assert_eq!(log.pending(), 100);
}

#[test]
fn acknowledged_segments_are_deleted_and_reading_resumes_after_the_cursor() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut log = filled(dir.path(), 100, 1000);
    let before = segments(dir.path()).len();
    log.read(60, 1 << 20).expect("reads");
    log.ack(60).expect("acks");
    assert!(segments(dir.path()).len() < before);
    assert_eq!(log.pending(), 40);
    drop(log);
    let mut log = reopen(dir.path(), 1000);
    assert_eq!(read_all(&mut log), (60..100).collect::<Vec<_>>());
}

#[test]
fn a_killed_process_loses_nothing_it_had_accepted() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut log, _) = SegmentLog::open(dir.path(), options(1000)).expect("opens");
    for i in 0..50 {
        log.append(i, &payload(i)).expect("appends");
    }
    // No sync: the log has no clean-close step (nothing happens on drop), so dropping it here is
    // what SIGKILL does. The page cache holds what was written.
    drop(log);
    let mut log = reopen(dir.path(), 1000);
    assert_eq!(read_all(&mut log), (0..50).collect::<Vec<_>>());
    assert_eq!(log.append(50, &payload(50)).expect("appends"), 50);
}

#[test]
fn a_torn_tail_at_every_offset_of_the_last_record_loses_only_that_record() {
    let pristine = tempfile::tempdir().expect("temp dir");
    drop(filled(pristine.path(), 10, 1 << 20));
    let segment = segments(pristine.path()).pop().expect("a segment");
    let full = fs::metadata(&segment).expect("size").len();
    let last = record_len(9);
    for cut in 1..last {
        let dir = tempfile::tempdir().expect("temp dir");
        let copy = dir.path().join(segment.file_name().expect("name"));
        fs::copy(&segment, &copy).expect("copies");
        let file = fs::OpenOptions::new()
            .write(true)
            .open(&copy)
            .expect("opens");
        file.set_len(full - cut).expect("tears");
        drop(file);
        let (mut log, report) = SegmentLog::open(dir.path(), options(1 << 20)).expect("opens");
        assert_eq!(report.torn_bytes, last - cut, "cut {cut}");
        assert_eq!(report.corrupted, 0, "cut {cut}");
        assert_eq!(read_all(&mut log), (0..9).collect::<Vec<_>>(), "cut {cut}");
        // The torn record never completed: its number is given to the next append.
        assert_eq!(log.append(9, &payload(9)).expect("appends"), 9);
        assert_eq!(fs::metadata(&copy).expect("size").len(), full);
    }
}

/// Flips one bit of record 5 of 10 and reopens; the directory lives as long as the result.
fn flip_bit_and_reopen(
    offset_in_record: u64,
) -> (tempfile::TempDir, SegmentLog, super::RecoveryReport) {
    let dir = tempfile::tempdir().expect("temp dir");
    drop(filled(dir.path(), 10, 1 << 20));
    let segment = segments(dir.path()).pop().expect("a segment");
    let mut bytes = fs::read(&segment).expect("reads");
    let record_5: u64 = (0..5).map(record_len).sum();
    bytes[(record_5 + offset_in_record) as usize] ^= 0x10;
    fs::write(&segment, bytes).expect("writes");
    let (log, report) = SegmentLog::open(dir.path(), options(1 << 20)).expect("opens");
    (dir, log, report)
}

#[test]
fn a_flipped_bit_in_a_header_loses_only_that_record() {
    // Offsets 2 (length), 7 (CRC), 12 (sequence number), 20 (time).
    for offset in [2, 7, 12, 20] {
        let (_dir, mut log, report) = flip_bit_and_reopen(offset);
        assert_eq!(report.corrupted, 1, "header offset {offset}");
        let expected: Vec<u64> = (0..10).filter(|i| *i != 5).collect();
        assert_eq!(read_all(&mut log), expected, "header offset {offset}");
    }
}

#[test]
fn a_flipped_bit_in_a_payload_loses_only_that_record() {
    let (_dir, mut log, report) = flip_bit_and_reopen(HEADER_LEN as u64 + 3);
    assert_eq!(report.corrupted, 1);
    let expected: Vec<u64> = (0..10).filter(|i| *i != 5).collect();
    assert_eq!(read_all(&mut log), expected);
    // The repaired segment reads the same after another restart.
    assert_eq!(log.append(10, &payload(10)).expect("appends"), 10);
}

#[test]
fn a_zero_filled_tail_is_truncated_and_appending_continues() {
    let dir = tempfile::tempdir().expect("temp dir");
    drop(filled(dir.path(), 10, 1 << 20));
    let segment = segments(dir.path()).pop().expect("a segment");
    let mut file = fs::OpenOptions::new()
        .append(true)
        .open(&segment)
        .expect("opens");
    std::io::Write::write_all(&mut file, &[0u8; 4096]).expect("zero fill");
    drop(file);
    let (mut log, report) = SegmentLog::open(dir.path(), options(1 << 20)).expect("opens");
    assert_eq!(report.torn_bytes, 4096);
    assert_eq!(log.append(10, &payload(10)).expect("appends"), 10);
    drop(log);
    let mut log = reopen(dir.path(), 1 << 20);
    assert_eq!(read_all(&mut log), (0..11).collect::<Vec<_>>());
}

#[test]
fn a_missing_segment_loses_only_its_records_and_counts_them() {
    let dir = tempfile::tempdir().expect("temp dir");
    drop(filled(dir.path(), 60, 1000));
    let all = segments(dir.path());
    let victim = &all[2];
    let next_base: u64 = all[3]
        .file_stem()
        .and_then(|s| s.to_str())
        .and_then(|s| s.parse().ok())
        .expect("numeric name");
    let victim_base: u64 = victim
        .file_stem()
        .and_then(|s| s.to_str())
        .and_then(|s| s.parse().ok())
        .expect("numeric name");
    fs::remove_file(victim).expect("removes");
    let (mut log, report) = SegmentLog::open(dir.path(), options(1000)).expect("opens");
    assert_eq!(report.lost, next_base - victim_base);
    let expected: Vec<u64> = (0..60)
        .filter(|i| !(victim_base..next_base).contains(i))
        .collect();
    assert_eq!(read_all(&mut log), expected);
}

#[test]
fn a_garbage_cursor_resends_from_the_oldest_record() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut log = filled(dir.path(), 30, 1 << 20);
    log.read(10, 1 << 20).expect("reads");
    log.ack(10).expect("acks");
    drop(log);
    fs::write(dir.path().join("ack"), b"\xde\xad\xbe\xef garbage").expect("writes");
    let (mut log, report) = SegmentLog::open(dir.path(), options(1 << 20)).expect("opens");
    assert!(report.cursor_reset);
    // Nothing is lost: the acknowledged records still on disk are sent again.
    assert_eq!(read_all(&mut log), (0..30).collect::<Vec<_>>());
}

#[test]
fn an_unreadable_segment_is_quarantined_and_the_log_still_opens() {
    let dir = tempfile::tempdir().expect("temp dir");
    drop(filled(dir.path(), 10, 1 << 20));
    // A directory where a segment should be cannot be read as a file, even by root.
    fs::create_dir(dir.path().join("00000000000000000005.seg")).expect("creates");
    fs::write(dir.path().join("not-a-number.seg"), b"junk").expect("writes");
    let (mut log, report) = SegmentLog::open(dir.path(), options(1 << 20)).expect("opens");
    assert_eq!(report.quarantined, 2);
    assert!(dir.path().join("00000000000000000005.seg.corrupt").exists());
    assert!(dir.path().join("not-a-number.seg.corrupt").exists());
    assert_eq!(read_all(&mut log), (0..10).collect::<Vec<_>>());
}

#[test]
fn exceeding_max_bytes_drops_the_oldest_segment_and_counts_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let options = LogOptions {
        segment_bytes: 1000,
        max_bytes: 3000,
        ..LogOptions::default()
    };
    let (mut log, _) = SegmentLog::open(dir.path(), options.clone()).expect("opens");
    for i in 0..100 {
        log.append(i, &payload(i)).expect("appends");
    }
    assert!(log.total_bytes() <= 3000);
    let dropped = log.stats().dropped_max_size;
    assert!(dropped > 0);
    let survivors = read_all(&mut log);
    assert_eq!(survivors.len() as u64 + dropped, 100);
    assert_eq!(survivors.last(), Some(&99));
    drop(log);
    // The cursor moved past the dropped records: a restart does not count them again.
    let (_, report) = SegmentLog::open(dir.path(), options).expect("reopens");
    assert_eq!(report.lost, 0);
}

#[test]
fn the_oldest_pending_time_follows_the_cursor_also_after_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut log, _) = SegmentLog::open(dir.path(), options(1000)).expect("opens");
    assert_eq!(log.oldest_pending_time_ms().expect("reads"), None);
    for i in 0..30 {
        log.append(1_000 + i, &payload(i)).expect("appends");
    }
    assert_eq!(log.oldest_pending_time_ms().expect("reads"), Some(1_000));
    log.read(12, 1 << 20).expect("reads");
    log.ack(12).expect("acks");
    assert_eq!(log.oldest_pending_time_ms().expect("reads"), Some(1_012));
    drop(log);
    let mut log = reopen(dir.path(), 1000);
    assert_eq!(log.oldest_pending_time_ms().expect("reads"), Some(1_012));
    log.read(100, 1 << 20).expect("reads");
    log.ack(30).expect("acks");
    assert_eq!(log.oldest_pending_time_ms().expect("reads"), None);
}

#[test]
fn an_empty_or_oversized_record_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut log, _) = SegmentLog::open(dir.path(), options(1 << 20)).expect("opens");
    assert!(log.append(0, b"").is_err());
    assert!(log.append(0, &vec![b'x'; (1 << 20) + 1]).is_err());
    assert_eq!(log.append(0, b"ok=1").expect("appends"), 0);
}

#[derive(Debug, Clone)]
enum Op {
    Append(u8),
    Read(u8),
    AckRead,
    Sync,
    Reopen,
    Rewind,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1u8..40).prop_map(Op::Append),
        2 => (1u8..10).prop_map(Op::Read),
        1 => Just(Op::AckRead),
        1 => Just(Op::Sync),
        1 => Just(Op::Reopen),
        1 => Just(Op::Rewind),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Against a model: a list of appended payloads, the acknowledged prefix and a read position.
    #[test]
    fn behaves_like_an_in_memory_queue(ops in prop::collection::vec(op(), 1..80)) {
        let dir = tempfile::tempdir().expect("temp dir");
        let open = || SegmentLog::open(dir.path(), options(300)).expect("opens").0;
        let mut log = open();
        let mut model: Vec<Vec<u8>> = Vec::new();
        let (mut acked, mut read) = (0u64, 0u64);
        for op in ops {
            match op {
                Op::Append(len) => {
                    let payload = vec![b'a' + (model.len() % 26) as u8; usize::from(len)];
                    let seq = log.append(0, &payload).expect("appends");
                    prop_assert_eq!(seq, model.len() as u64);
                    model.push(payload);
                }
                Op::Read(n) => {
                    let batch = log.read(usize::from(n), 1 << 20).expect("reads");
                    let expected: Vec<(u64, Vec<u8>)> = (read..model.len() as u64)
                        .take(usize::from(n))
                        .map(|s| (s, model[s as usize].clone()))
                        .collect();
                    let got: Vec<(u64, Vec<u8>)> =
                        batch.into_iter().map(|r| (r.seq, r.payload)).collect();
                    prop_assert_eq!(&got, &expected);
                    read += got.len() as u64;
                }
                Op::AckRead => {
                    log.ack(read).expect("acks");
                    acked = read;
                }
                Op::Sync => log.sync().expect("syncs"),
                Op::Reopen => {
                    drop(log);
                    log = open();
                    read = acked;
                }
                Op::Rewind => {
                    log.rewind();
                    read = acked;
                }
            }
            prop_assert_eq!(log.pending(), model.len() as u64 - acked);
        }
    }
}

/// The acknowledged position the cursor file on disk holds (none when there is no file).
fn cursor_on_disk(dir: &Path) -> Option<u64> {
    let bytes = fs::read(dir.join("ack")).ok()?;
    Some(u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?))
}

#[test]
fn a_cursor_write_in_flight_is_not_written_again_by_a_sync_and_a_failed_one_is_retried() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut log = filled(dir.path(), 6, 1 << 20);
    assert_eq!(read_all(&mut log).len(), 6);

    // Taken out of the log: until it runs, a sync leaves the cursor on disk alone.
    let before = cursor_on_disk(dir.path());
    assert_ne!(before, Some(4));
    let write = log.acknowledge(4).expect("the cursor moved");
    log.append(6, &payload(6)).expect("appends");
    log.sync_due().expect("sync");
    log.sync().expect("sync");
    assert_eq!(cursor_on_disk(dir.path()), before);
    let written = write.run();
    log.cursor_written(&write, written).expect("written");
    assert_eq!(cursor_on_disk(dir.path()), Some(4));

    // A write that failed leaves the cursor dirty: the next sync writes it.
    let write = log.acknowledge(6).expect("the cursor moved");
    let failed = Err(std::io::Error::other("injected"));
    assert!(log.cursor_written(&write, failed).is_err());
    assert_eq!(cursor_on_disk(dir.path()), Some(4));
    log.sync_due().expect("sync retries the cursor");
    assert_eq!(cursor_on_disk(dir.path()), Some(6));
    assert_eq!(log.pending(), 1);
}

#[test]
fn a_record_longer_than_the_read_window_is_read_whole_and_in_order() {
    // A read's window is sized for its byte budget (plus a little); a record beyond it, up to
    // the largest the log takes, is still read whole, neither skipped nor counted as damage.
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut log, _) = SegmentLog::open(dir.path(), options(4 << 20)).expect("opens");
    let big = vec![b'x'; super::record::MAX_PAYLOAD];
    let small = |i: u64| payload(i);
    log.append(0, &small(0)).expect("appends");
    log.append(1, &big).expect("appends the largest record");
    log.append(2, &small(2)).expect("appends");
    let mut read = Vec::new();
    for _ in 0..10 {
        let batch = log.read(100, 1024).expect("reads");
        if batch.is_empty() {
            break;
        }
        read.extend(batch.into_iter().map(|r| (r.seq, r.payload.len())));
    }
    assert_eq!(
        read,
        vec![
            (0, small(0).len()),
            (1, super::record::MAX_PAYLOAD),
            (2, small(2).len())
        ]
    );
    assert_eq!(log.stats().corrupted, 0);
}
