//! I/O-error tests in the manner of SQLite's: a scripted workload runs over a filesystem that
//! fails its k-th write, fsync, rename, remove, create or `set_len` (with ENOSPC, EIO or a short
//! write; once, or from then on until cleared), for every k the workload reaches. After each
//! run the fault clears, the same log must take and serve records again, and a reopened log
//! must hold every accepted record that was neither acknowledged nor counted as dropped.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};

use super::disk::{Disk, OsDisk};
use super::outbox::Outbox;
use super::{LogOptions, SegmentLog};
use crate::model::AlarmEvent;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FaultKind {
    NoSpace,
    Eio,
    /// Half the bytes are written, then ENOSPC (what a write to a filling card does).
    ShortWrite,
}

#[derive(Debug, Clone, Copy)]
struct Fault {
    /// 1-based index of the first failing operation.
    at: u64,
    kind: FaultKind,
    /// Every operation from `at` on fails, until cleared.
    persistent: bool,
}

#[derive(Debug, Default)]
struct FaultState {
    ops: u64,
    fault: Option<Fault>,
    injected: u64,
}

/// The real filesystem with one scripted fault. Syncs are counted but not performed: power loss
/// is not what these tests are about, and thousands of runs must stay fast.
#[derive(Debug, Default)]
pub(super) struct FaultyDisk {
    state: Mutex<FaultState>,
}

impl FaultyDisk {
    pub(super) fn new() -> Arc<FaultyDisk> {
        Arc::new(FaultyDisk::default())
    }

    /// Arms `fault`, counting operations from now (opening the log is not under test: a
    /// directory that cannot be written at start is an error the daemon reports).
    fn arm(&self, fault: Option<Fault>) {
        let mut state = self.state.lock().expect("fault state");
        state.ops = 0;
        state.fault = fault;
    }

    fn clear(&self) {
        self.state.lock().expect("fault state").fault = None;
    }

    fn ops(&self) -> u64 {
        self.state.lock().expect("fault state").ops
    }

    fn injected(&self) -> u64 {
        self.state.lock().expect("fault state").injected
    }

    /// Counts one operation; returns the fault to inject into it, if any.
    fn next(&self) -> Option<FaultKind> {
        let mut state = self.state.lock().expect("fault state");
        state.ops += 1;
        let ops = state.ops;
        let fault = state.fault?;
        let hit = ops == fault.at || (fault.persistent && ops > fault.at);
        if hit {
            state.injected += 1;
        }
        hit.then_some(fault.kind)
    }

    fn fail(&self) -> io::Result<()> {
        match self.next() {
            None => Ok(()),
            Some(FaultKind::Eio) => Err(io::Error::from_raw_os_error(libc::EIO)),
            Some(_) => Err(io::Error::from_raw_os_error(libc::ENOSPC)),
        }
    }
}

impl Disk for FaultyDisk {
    fn create(&self, path: &Path) -> io::Result<File> {
        self.fail()?;
        OsDisk.create(path)
    }

    fn open(&self, path: &Path) -> io::Result<File> {
        OsDisk.open(path)
    }

    fn write_at(&self, file: &File, offset: u64, bytes: &[u8]) -> io::Result<()> {
        match self.next() {
            None => OsDisk.write_at(file, offset, bytes),
            Some(FaultKind::ShortWrite) => {
                OsDisk.write_at(file, offset, &bytes[..bytes.len() / 2])?;
                Err(io::Error::from_raw_os_error(libc::ENOSPC))
            }
            Some(FaultKind::Eio) => Err(io::Error::from_raw_os_error(libc::EIO)),
            Some(FaultKind::NoSpace) => Err(io::Error::from_raw_os_error(libc::ENOSPC)),
        }
    }

    fn sync_data(&self, _file: &File) -> io::Result<()> {
        self.fail()
    }

    fn set_len(&self, file: &File, len: u64) -> io::Result<()> {
        self.fail()?;
        OsDisk.set_len(file, len)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.fail()?;
        OsDisk.rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        self.fail()?;
        OsDisk.remove(path)
    }

    fn sync_dir(&self, _dir: &Path) -> io::Result<()> {
        self.fail()
    }
}

const KINDS: [FaultKind; 3] = [FaultKind::NoSpace, FaultKind::Eio, FaultKind::ShortWrite];

/// Runs `case` with every kind of fault, once and persistent, at every operation 1..=ops;
/// returns how many cases ran.
fn every_fault(ops: u64, case: fn(Option<Fault>) -> u64) -> usize {
    let mut cases = 0;
    for at in 1..=ops {
        for kind in KINDS {
            for persistent in [false, true] {
                case(Some(Fault {
                    at,
                    kind,
                    persistent,
                }));
                cases += 1;
            }
        }
    }
    cases
}

fn log_options(disk: Arc<dyn Disk>) -> LogOptions {
    LogOptions {
        // About five records a segment, and room for about six segments: the workload rolls,
        // deletes acknowledged segments and drops the oldest unsent ones beyond the limit.
        segment_bytes: 400,
        max_bytes: 2_400,
        disk,
        ..LogOptions::default()
    }
}

fn payload(attempt: u64) -> Vec<u8> {
    format!("pump_station,device=booster-1 outlet_pressure_mpa=0.{attempt:03} {attempt}")
        .into_bytes()
}

/// What the workload was told: the records it accepted (sequence → attempt) and how far it
/// acknowledged.
#[derive(Debug, Default)]
struct Model {
    accepted: BTreeMap<u64, u64>,
    acked: u64,
    attempts: u64,
}

impl Model {
    fn append(&mut self, log: &mut SegmentLog) -> bool {
        let attempt = self.attempts;
        self.attempts += 1;
        match log.append(attempt, &payload(attempt)) {
            Ok(seq) => {
                assert!(
                    self.accepted.insert(seq, attempt).is_none(),
                    "sequence {seq} given twice"
                );
                true
            }
            Err(_) => false,
        }
    }

    /// Appends the next `n` records in one [`SegmentLog::append_all`].
    fn append_batch(&mut self, log: &mut SegmentLog, n: u64) {
        let attempts: Vec<u64> = (self.attempts..self.attempts + n).collect();
        self.attempts += n;
        let payloads: Vec<Vec<u8>> = attempts.iter().map(|a| payload(*a)).collect();
        let mut settled = Vec::new();
        log.append_all(
            attempts
                .iter()
                .zip(&payloads)
                .map(|(a, p)| (*a, p.as_slice())),
            |index, outcome| settled.push((index, outcome.ok())),
        );
        let indices: Vec<usize> = settled.iter().map(|(i, _)| *i).collect();
        assert_eq!(
            indices,
            (0..n as usize).collect::<Vec<_>>(),
            "each record settled once, in order"
        );
        for (index, seq) in settled {
            if let Some(seq) = seq {
                assert!(
                    self.accepted.insert(seq, attempts[index]).is_none(),
                    "sequence {seq} given twice"
                );
            }
        }
    }

    /// Reads up to `n` records, checks them against the model, acknowledges them.
    fn deliver(&mut self, log: &mut SegmentLog, n: usize, context: &str) {
        let Ok(batch) = log.read(n, 1 << 20) else {
            return;
        };
        self.check(&batch, context);
        if let Some(last) = batch.last() {
            self.acked = self.acked.max(last.seq + 1);
            let _ = log.ack(last.seq + 1);
        }
    }

    fn check(&self, records: &[super::record::Record], context: &str) {
        for record in records {
            let attempt = self
                .accepted
                .get(&record.seq)
                .unwrap_or_else(|| panic!("{context}: record {} was never accepted", record.seq));
            assert_eq!(
                record.payload,
                payload(*attempt),
                "{context}: payload of {}",
                record.seq
            );
        }
        assert!(
            records.windows(2).all(|w| w[0].seq < w[1].seq),
            "{context}: out of order"
        );
    }

    /// Accepted records not acknowledged.
    fn owed(&self) -> Vec<u64> {
        self.accepted.range(self.acked..).map(|(s, _)| *s).collect()
    }
}

fn read_everything(log: &mut SegmentLog) -> Vec<super::record::Record> {
    let mut all = Vec::new();
    for _ in 0..10_000 {
        let batch = log.read(16, 1 << 20).expect("reads");
        if batch.is_empty() {
            return all;
        }
        all.extend(batch);
    }
    panic!("reading never ends")
}

/// Every owed record is in `found`, except at most `dropped` of them.
fn assert_owed_present(
    model: &Model,
    found: &[super::record::Record],
    dropped: u64,
    context: &str,
) {
    model.check(found, context);
    let missing: Vec<u64> = model
        .owed()
        .into_iter()
        .filter(|seq| !found.iter().any(|r| r.seq == *seq))
        .collect();
    assert!(
        missing.len() as u64 <= dropped,
        "{context}: {} owed records missing ({missing:?}), only {dropped} counted as dropped",
        missing.len()
    );
}

/// The scripted workload: appends, syncs, reads and acknowledgements that roll segments,
/// delete acknowledged ones and drop unsent ones beyond the size limit.
/// `batched` appends each round's nine records in one call (rolling the segment twice in it).
fn workload(log: &mut SegmentLog, model: &mut Model, batched: bool) {
    for round in 0..6 {
        if batched {
            model.append_batch(log, 9);
        } else {
            for _ in 0..9 {
                model.append(log);
            }
        }
        let _ = log.sync_if_due();
        let _ = log.sync();
        if round % 2 == 0 {
            model.deliver(log, 12, "during the fault");
        }
    }
}

/// Runs the workload under `fault`; returns how many operations the workload made.
fn run_log_case(fault: Option<Fault>) -> u64 {
    run_log_workload(fault, false)
}

fn run_batched_log_case(fault: Option<Fault>) -> u64 {
    run_log_workload(fault, true)
}

fn run_log_workload(fault: Option<Fault>, batched: bool) -> u64 {
    let dir = tempfile::tempdir().expect("temp dir");
    let disk = FaultyDisk::new();
    let context = format!("{fault:?}");
    let (mut log, _) = SegmentLog::open(dir.path(), log_options(disk.clone())).expect("opens");
    disk.arm(fault);
    let mut model = Model::default();
    workload(&mut log, &mut model, batched);
    let ops = disk.ops();
    if fault.is_some_and(|f| f.at <= ops) {
        assert!(disk.injected() > 0, "{context}: fault not reached");
    }
    // The fault clears: the same log takes records again at once and serves all it owes.
    disk.clear();
    for _ in 0..8 {
        assert!(
            model.append(&mut log),
            "{context}: append refused after the fault cleared"
        );
    }
    log.sync().expect("syncs after the fault cleared");
    let stats = log.stats().clone();
    let dropped = stats.dropped_max_size + stats.dropped_disk_full;
    let unread_before = {
        log.rewind();
        read_everything(&mut log)
    };
    assert_owed_present(
        &model,
        &unread_before,
        dropped,
        &format!("{context}, same log"),
    );
    // What a restart would find now (the copy is checked below).
    let copy = tempfile::tempdir().expect("temp dir");
    for entry in std::fs::read_dir(dir.path()).expect("lists") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), copy.path().join(entry.file_name())).expect("copies");
    }
    let owed = Model {
        accepted: model.accepted.clone(),
        acked: model.acked,
        attempts: model.attempts,
    };
    // Delivered in full, the log leaves only its active segment on the card: no file the log
    // forgot, nothing that keeps a full card full.
    log.rewind();
    model.deliver(&mut log, usize::MAX, &context);
    assert_eq!(log.pending(), 0, "{context}");
    let on_disk: Vec<u64> = std::fs::read_dir(dir.path())
        .expect("lists")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".seg"))
        .map(|e| e.metadata().expect("metadata").len())
        .collect();
    assert_eq!(
        on_disk,
        vec![log.total_bytes()],
        "{context}: segment files on disk"
    );
    // Reopened from disk: nothing accepted and owed is gone without being counted.
    drop(log);
    let (mut log, report) =
        SegmentLog::open(copy.path(), log_options(OsDisk::shared())).expect("reopens");
    assert_eq!(report.corrupted, 0, "{context}: {report:?}");
    let found = read_everything(&mut log);
    assert_owed_present(
        &owed,
        &found,
        dropped + report.lost,
        &format!("{context}, reopened"),
    );
    assert!(
        log.append(0, b"after").is_ok(),
        "{context}: reopened log refuses"
    );
    ops
}

#[test]
fn every_io_failure_of_the_log_loses_only_what_it_counts_and_appends_resume() {
    let ops = run_log_case(None);
    assert!(ops > 100, "the workload makes {ops} operations");
    let cases = every_fault(ops, run_log_case);
    println!("log: {cases} fault cases over {ops} operations, none lost an uncounted record");
}

#[test]
fn every_io_failure_of_batched_appends_loses_only_what_it_counts_and_appends_resume() {
    let ops = run_batched_log_case(None);
    assert!(ops > 50, "the batched workload makes {ops} operations");
    let cases = every_fault(ops, run_batched_log_case);
    println!(
        "batched log: {cases} fault cases over {ops} operations, none lost an uncounted record"
    );
}

fn alarm(n: u64) -> AlarmEvent {
    AlarmEvent::pump_fault(n as i64, "W13报警：水泵或变频器故障")
}

/// The outbox under `fault`, driven the way the rules stage drives it: what a push did not
/// write stays in memory and is pushed again; delivered events are acknowledged.
fn run_outbox_case(fault: Option<Fault>) -> u64 {
    let dir = tempfile::tempdir().expect("temp dir");
    let disk = FaultyDisk::new();
    let context = format!("outbox {fault:?}");
    let options = LogOptions {
        disk: disk.clone(),
        ..LogOptions::default()
    };
    let outbox = Outbox::open_with(dir.path(), "wecom", options).expect("opens");
    disk.arm(fault);
    let mut waiting: Vec<AlarmEvent> = Vec::new();
    let mut delivered: Vec<AlarmEvent> = Vec::new();
    let push = |waiting: &mut Vec<AlarmEvent>| match outbox.push(waiting) {
        Ok(()) => waiting.clear(),
        Err(e) => {
            waiting.drain(..e.written);
        }
    };
    for n in 0..30 {
        waiting.push(alarm(n));
        push(&mut waiting);
        if n % 4 == 3 {
            // Sent to the robot; whether the acknowledgement reaches the card or not, the
            // alarm has been delivered (a failed acknowledgement may only send it twice).
            if let Ok(Some((seq, event))) = outbox.next() {
                delivered.push(event);
                let _ = outbox.delivered(seq);
            }
        }
    }
    let ops = disk.ops();
    disk.clear();
    push(&mut waiting);
    assert!(
        waiting.is_empty(),
        "{context}: push refused after the fault cleared"
    );
    drop(outbox);
    let outbox = Outbox::open(dir.path(), "wecom", None).expect("reopens");
    let mut found = Vec::new();
    while let Some((seq, event)) = outbox.next().expect("reads") {
        outbox.delivered(seq).expect("acks");
        found.push(event);
    }
    for n in 0..30 {
        let event = alarm(n);
        assert!(
            found.contains(&event) || delivered.contains(&event),
            "{context}: alarm {n} neither delivered nor in the outbox"
        );
    }
    ops
}

#[test]
fn every_io_failure_of_an_outbox_keeps_every_alarm() {
    let ops = run_outbox_case(None);
    assert!(ops > 60, "the outbox workload makes {ops} operations");
    let cases = every_fault(ops, run_outbox_case);
    println!("outbox: {cases} fault cases over {ops} operations, no alarm lost");
}
