//! Space held back on the card for the writes that must not fail on a full disk.
//!
//! A file `data_dir/reserve` of [`RESERVE_BYTES`], allocated with `posix_fallocate` (blocks
//! really taken, nothing written: no wear). When an essential write (the telemetry log's cursor,
//! an alarm outbox append, the alarm state) meets ENOSPC, the holder releases the reserve and
//! tries once more. The reserve is made again once the filesystem has room for it and
//! [`MIN_FREE_AFTER`] besides; telemetry never uses it (the telemetry log frees its own space by
//! dropping its oldest segment).
//!
//! Also here: how much room the filesystem has, for the low-space health check and the start-up
//! warning.

use std::fs::OpenOptions;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

/// Size of the reserve file.
pub const RESERVE_BYTES: u64 = 1 << 20;
/// Room left free after re-making the reserve, so that it is not released again at once.
pub const MIN_FREE_AFTER: u64 = 4 << 20;
const FILE_NAME: &str = "reserve";

/// The reserve file of one data directory.
#[derive(Debug)]
pub struct Reserve {
    path: PathBuf,
    held: AtomicBool,
    /// Times the reserve was released for an essential write.
    releases: AtomicU64,
}

impl Reserve {
    /// The reserve of `data_dir`, one per directory in the process: the telemetry log, the
    /// outboxes and the alarm state share it (a second holder of the same file would release
    /// space the first still counts on).
    pub fn shared(data_dir: &Path) -> Arc<Reserve> {
        static OPEN: Mutex<Vec<(PathBuf, Weak<Reserve>)>> = Mutex::new(Vec::new());
        let mut open = OPEN.lock().unwrap_or_else(|p| p.into_inner());
        open.retain(|(_, reserve)| reserve.strong_count() > 0);
        if let Some(reserve) = open
            .iter()
            .find(|(dir, _)| dir == data_dir)
            .and_then(|(_, r)| r.upgrade())
        {
            return reserve;
        }
        let reserve = Arc::new(Reserve::open(data_dir));
        open.push((data_dir.to_path_buf(), Arc::downgrade(&reserve)));
        reserve
    }

    /// Takes the reserve in `data_dir` (creating the directory), or notes that it could not.
    pub fn open(data_dir: &Path) -> Reserve {
        let reserve = Reserve {
            path: data_dir.join(FILE_NAME),
            held: AtomicBool::new(false),
            releases: AtomicU64::new(0),
        };
        let _ = std::fs::create_dir_all(data_dir);
        match allocate(&reserve.path) {
            Ok(()) => reserve.held.store(true, Ordering::SeqCst),
            Err(e) => tracing::warn!(
                path = %reserve.path.display(),
                error = %e,
                "Cannot reserve space for alarms and cursors; a full card may cost alarms"
            ),
        }
        reserve
    }

    /// Gives the reserved space back to the filesystem. Returns whether there was any to give.
    pub fn release(&self) -> bool {
        if !self.held.swap(false, Ordering::SeqCst) {
            return false;
        }
        match std::fs::remove_file(&self.path) {
            Ok(()) => {
                self.releases.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    "The card is full; released the reserved space for an essential write"
                );
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "Cannot release the reserved space");
                false
            }
        }
    }

    /// Re-makes a released reserve when the filesystem has room for it and more.
    pub fn restore(&self) {
        if self.held.load(Ordering::SeqCst) {
            return;
        }
        let Some(dir) = self.path.parent() else {
            return;
        };
        let roomy = space(dir).is_ok_and(|s| s.available >= RESERVE_BYTES + MIN_FREE_AFTER);
        if roomy && allocate(&self.path).is_ok() {
            self.held.store(true, Ordering::SeqCst);
            tracing::info!("Reserved space re-made");
        }
    }

    pub fn held(&self) -> bool {
        self.held.load(Ordering::SeqCst)
    }

    pub fn releases(&self) -> u64 {
        self.releases.load(Ordering::Relaxed)
    }
}

/// Runs `write`; if it fails because the card is full and a reserve was released, runs it once
/// more.
pub fn with_reserve<T>(
    reserve: Option<&Reserve>,
    mut write: impl FnMut() -> io::Result<T>,
) -> io::Result<T> {
    match write() {
        Err(e) if super::disk::is_full(&e) && reserve.is_some_and(Reserve::release) => write(),
        other => other,
    }
}

fn allocate(path: &Path) -> io::Result<()> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    // SAFETY: the descriptor is open for writing for the duration of the call.
    let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, RESERVE_BYTES as libc::off_t) };
    if rc != 0 {
        drop(file);
        let _ = std::fs::remove_file(path);
        return Err(io::Error::from_raw_os_error(rc));
    }
    file.sync_all()
}

/// Room on a filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Space {
    /// Bytes an unprivileged process may still write.
    pub available: u64,
    pub total: u64,
}

/// The room on the filesystem that holds `dir`.
pub fn space(dir: &Path) -> io::Result<Space> {
    let mut path = dir.as_os_str().as_bytes().to_vec();
    path.push(0);
    let mut stats = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `path` is NUL-terminated and `stats` is a valid out-pointer for statvfs.
    let rc = unsafe { libc::statvfs(path.as_ptr().cast(), stats.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it filled the struct.
    let stats = unsafe { stats.assume_init() };
    // The fields are 32-bit on armv7 and 64-bit on aarch64 and x86-64.
    #[allow(clippy::unnecessary_cast)]
    let block = stats.f_frsize as u64;
    #[allow(clippy::unnecessary_cast)]
    Ok(Space {
        available: stats.f_bavail as u64 * block,
        total: stats.f_blocks as u64 * block,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reserve_is_a_real_allocation_that_can_be_released_and_remade() {
        let dir = tempfile::tempdir().expect("temp dir");
        let reserve = Reserve::open(dir.path());
        assert!(reserve.held());
        let meta = std::fs::metadata(dir.path().join(FILE_NAME)).expect("reserve file");
        assert_eq!(meta.len(), RESERVE_BYTES);
        use std::os::unix::fs::MetadataExt;
        assert!(
            meta.blocks() * 512 >= RESERVE_BYTES,
            "blocks allocated, not sparse"
        );
        assert!(reserve.release());
        assert!(!reserve.release(), "released once");
        assert!(!dir.path().join(FILE_NAME).exists());
        reserve.restore();
        assert!(reserve.held());
        assert_eq!(reserve.releases(), 1);
    }

    #[test]
    fn a_full_write_is_tried_again_once_after_releasing_the_reserve() {
        let dir = tempfile::tempdir().expect("temp dir");
        let reserve = Reserve::open(dir.path());
        let mut calls = 0;
        let result = with_reserve(Some(&reserve), || {
            calls += 1;
            if calls == 1 {
                Err(io::Error::from_raw_os_error(libc::ENOSPC))
            } else {
                Ok(calls)
            }
        });
        assert_eq!(result.expect("second try"), 2);
        let mut calls = 0;
        let again = with_reserve(Some(&reserve), || -> io::Result<()> {
            calls += 1;
            Err(io::Error::from_raw_os_error(libc::ENOSPC))
        });
        assert!(again.is_err());
        assert_eq!(calls, 1, "nothing left to release: not tried again");
    }

    #[test]
    fn space_reports_the_filesystem() {
        let dir = tempfile::tempdir().expect("temp dir");
        let s = space(dir.path()).expect("statvfs");
        assert!(s.total > 0 && s.available <= s.total);
    }
}
