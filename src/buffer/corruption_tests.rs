//! Damaged storage: one test per corruption mode that a single damaged length used to turn into
//! a lost segment, and 10,000 random corruptions (bit flips, zeroed pages, truncations,
//! appended garbage) over closed segments, the active segment and the cursor. Every start must
//! succeed and every record outside the damaged bytes must come back.

use std::fs;
use std::ops::Range;
use std::path::Path;

use super::fault_tests::FaultyDisk;
use super::record::HEADER_LEN;
use super::{LogOptions, SegmentLog};

const SEGMENT_BYTES: u64 = 900;

fn options() -> LogOptions {
    LogOptions {
        segment_bytes: SEGMENT_BYTES,
        // Recovery repairs with fsync; a disk that skips syncs keeps 10,000 starts quick.
        disk: FaultyDisk::new(),
        ..LogOptions::default()
    }
}

fn payload(i: u64) -> Vec<u8> {
    // Lengths vary, so records do not line up with pages.
    let pad = "x".repeat((i % 7) as usize * 5);
    format!("heat_meter,device=hm-{i} energy_kwh={i}.5,tag=\"{pad}\" 1764150000{i:09}").into_bytes()
}

/// Where each record lies: file name → (sequence, byte range) in file order.
type Layout = Vec<(String, Vec<(u64, Range<u64>)>)>;

/// A log of `n` records with the first `acked` acknowledged, and where every record lies.
fn build(dir: &Path, n: u64, acked: u64) -> Layout {
    let (mut log, _) = SegmentLog::open(dir, options()).expect("opens");
    for i in 0..n {
        log.append(i, &payload(i)).expect("appends");
    }
    log.read(acked as usize, 1 << 20).expect("reads");
    log.ack(acked).expect("acks");
    log.sync().expect("syncs");
    drop(log);
    let mut layout = Layout::new();
    for path in super::tests::segments(dir) {
        let base: u64 = path
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.parse().ok())
            .expect("numeric name");
        let mut at = 0u64;
        let mut records = Vec::new();
        let size = fs::metadata(&path).expect("size").len();
        let mut seq = base;
        while at < size {
            let len = (HEADER_LEN + payload(seq).len()) as u64;
            records.push((seq, at..at + len));
            at += len;
            seq += 1;
        }
        layout.push((name(&path), records));
    }
    layout
}

fn name(path: &Path) -> String {
    path.file_name()
        .and_then(|n| n.to_str())
        .expect("name")
        .to_string()
}

fn read_all(log: &mut SegmentLog) -> Vec<u64> {
    super::tests::read_checked(log, payload)
}

fn set_length(path: &Path, at: u64, length: u32) {
    let mut bytes = fs::read(path).expect("reads");
    let at = at as usize + 2;
    bytes[at..at + 4].copy_from_slice(&length.to_le_bytes());
    fs::write(path, bytes).expect("writes");
}

#[test]
fn a_length_past_the_end_of_a_closed_segment_loses_only_that_record() {
    let dir = tempfile::tempdir().expect("temp dir");
    let layout = build(dir.path(), 60, 0);
    assert!(layout.len() > 3, "several segments");
    let (file, records) = &layout[1];
    let (victim, range) = records[1].clone();
    // A length that runs far past the end of the segment (but below the largest payload).
    set_length(&dir.path().join(file), range.start, 500_000);
    let (mut log, report) = SegmentLog::open(dir.path(), options()).expect("opens");
    assert_eq!(report.corrupted, 1);
    assert_eq!(report.torn_bytes, 0);
    let expected: Vec<u64> = (0..60).filter(|s| *s != victim).collect();
    assert_eq!(read_all(&mut log), expected);
}

#[test]
fn a_length_past_the_end_in_the_middle_of_the_active_segment_is_not_taken_for_a_torn_tail() {
    let dir = tempfile::tempdir().expect("temp dir");
    let layout = build(dir.path(), 60, 0);
    let (file, records) = layout.last().expect("active segment");
    assert!(records.len() > 3);
    let (victim, range) = records[1].clone();
    set_length(&dir.path().join(file), range.start, 70_000);
    let (mut log, report) = SegmentLog::open(dir.path(), options()).expect("opens");
    assert_eq!((report.corrupted, report.torn_bytes), (1, 0));
    let expected: Vec<u64> = (0..60).filter(|s| *s != victim).collect();
    assert_eq!(read_all(&mut log), expected);
    assert_eq!(log.append(60, &payload(60)).expect("appends"), 60);
}

#[test]
fn a_length_damaged_after_recovery_is_skipped_by_reads_without_stalling_them() {
    let dir = tempfile::tempdir().expect("temp dir");
    let layout = build(dir.path(), 60, 0);
    let (mut log, _) = SegmentLog::open(dir.path(), options()).expect("opens");
    // Damaged while the log is open: the last record of a closed segment and one in the middle.
    let (file, records) = &layout[2];
    let (last_of_closed, range) = records.last().cloned().expect("records");
    set_length(&dir.path().join(file), range.start, 400_000);
    let (file, records) = &layout[4];
    let (middle, range) = records[1].clone();
    set_length(&dir.path().join(file), range.start, 3);
    let expected: Vec<u64> = (0..60)
        .filter(|s| *s != last_of_closed && *s != middle)
        .collect();
    assert_eq!(read_all(&mut log), expected);
    assert_eq!(log.stats().corrupted, 2);
}

#[test]
fn leftover_temporary_files_are_removed_and_counted() {
    let dir = tempfile::tempdir().expect("temp dir");
    build(dir.path(), 10, 0);
    fs::write(dir.path().join("ack.tmp"), b"half a cursor").expect("writes");
    fs::write(dir.path().join("00000000000000000000.seg.tmp"), b"half").expect("writes");
    let (mut log, report) = SegmentLog::open(dir.path(), options()).expect("opens");
    assert_eq!(report.leftovers_removed, 2);
    assert!(!dir.path().join("ack.tmp").exists());
    assert_eq!(read_all(&mut log), (0..10).collect::<Vec<_>>());
}

#[test]
fn only_the_two_newest_quarantined_segments_are_kept() {
    let dir = tempfile::tempdir().expect("temp dir");
    build(dir.path(), 10, 0);
    for base in [1u64, 2, 3, 4] {
        fs::write(dir.path().join(format!("{base:020}.seg.corrupt")), b"x").expect("writes");
    }
    let (_, report) = SegmentLog::open(dir.path(), options()).expect("opens");
    assert_eq!(report.leftovers_removed, 2);
    let left: Vec<String> = fs::read_dir(dir.path())
        .expect("lists")
        .filter_map(|e| e.ok().map(|e| name(&e.path())))
        .filter(|n| n.ends_with(".corrupt"))
        .collect();
    assert_eq!(left.len(), 2);
}

/// A small deterministic generator (xorshift64*), so a failing case can be run again.
struct Dice(u64);

impl Dice {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    }
}

#[derive(Debug, Clone, Copy)]
enum Damage {
    FlipBit,
    ZeroPage,
    Truncate,
    AppendGarbage,
}

/// Damages one file; returns the byte range that no longer holds what was written.
fn damage(path: &Path, kind: Damage, dice: &mut Dice) -> Range<u64> {
    let mut bytes = fs::read(path).expect("reads");
    let len = bytes.len() as u64;
    let range = match kind {
        Damage::FlipBit => {
            let at = dice.below(len);
            bytes[at as usize] ^= 1 << dice.below(8);
            at..at + 1
        }
        Damage::ZeroPage => {
            // A 512-byte sector of the file (the unit a failing card loses).
            let sector = dice.below(len.div_ceil(512)) * 512;
            let end = (sector + 512).min(len);
            bytes[sector as usize..end as usize].fill(0);
            sector..end
        }
        Damage::Truncate => {
            let at = dice.below(len);
            bytes.truncate(at as usize);
            at..len
        }
        Damage::AppendGarbage => {
            let extra = 1 + dice.below(300);
            for _ in 0..extra {
                // Garbage that now and then starts like a record.
                let byte = match dice.below(10) {
                    0 => b'R',
                    1 => b'G',
                    _ => dice.below(256) as u8,
                };
                bytes.push(byte);
            }
            len..len + extra
        }
    };
    fs::write(path, bytes).expect("writes");
    range
}

#[test]
fn ten_thousand_random_corruptions_lose_only_the_damaged_records() {
    const ACKED: u64 = 8;
    const RECORDS: u64 = 70;
    let template = tempfile::tempdir().expect("temp dir");
    let layout = build(template.path(), RECORDS, ACKED);
    let files: Vec<String> = layout
        .iter()
        .map(|(f, _)| f.clone())
        .chain(std::iter::once("ack".to_string()))
        .collect();
    let kinds = [
        Damage::FlipBit,
        Damage::ZeroPage,
        Damage::Truncate,
        Damage::AppendGarbage,
    ];
    let mut dice = Dice(0x5EED_2026_1201);
    let (mut outside, mut recovered, mut damaged_records) = (0u64, 0u64, 0u64);
    let work = tempfile::tempdir().expect("temp dir");
    for case in 0..10_000u64 {
        let dir = work.path().join(case.to_string());
        fs::create_dir(&dir).expect("creates");
        for file in &files {
            fs::copy(template.path().join(file), dir.join(file)).expect("copies");
        }
        let target = &files[dice.below(files.len() as u64) as usize];
        let kind = kinds[dice.below(kinds.len() as u64) as usize];
        let hit = damage(&dir.join(target), kind, &mut dice);
        let context = format!("case {case}: {kind:?} of {target} at {hit:?}");
        let (mut log, _) = SegmentLog::open(&dir, options())
            .unwrap_or_else(|e| panic!("{context}: the log did not open: {e}"));
        let found = read_all(&mut log);
        assert!(
            found.windows(2).all(|w| w[0] < w[1]),
            "{context}: out of order"
        );
        // Records at or after the cursor whose bytes the damage did not touch.
        let intact: Vec<u64> = layout
            .iter()
            .flat_map(|(file, records)| {
                records
                    .iter()
                    .filter(move |(seq, range)| {
                        *seq >= ACKED
                            && !(file == target && range.start < hit.end && hit.start < range.end)
                    })
                    .map(|(seq, _)| *seq)
            })
            .collect();
        let missing: Vec<u64> = intact
            .iter()
            .filter(|s| !found.contains(s))
            .copied()
            .collect();
        assert!(
            missing.is_empty(),
            "{context}: lost intact records {missing:?}"
        );
        outside += intact.len() as u64;
        recovered += intact.len() as u64 - missing.len() as u64;
        damaged_records += (RECORDS - ACKED) - intact.len() as u64;
        assert!(
            log.append(RECORDS, &payload(RECORDS)).is_ok(),
            "{context}: the log refuses appends"
        );
        drop(log);
        fs::remove_dir_all(&dir).expect("cleans up");
    }
    println!(
        "10,000 random corruptions: {recovered} of {outside} records outside the damaged bytes recovered; {damaged_records} records hit by damage"
    );
}
