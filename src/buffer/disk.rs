//! Every write the durable buffers make to the card, through one small interface: positional
//! write, `fdatasync`, `set_len`, create, rename, remove, directory sync.
//!
//! Two reasons for the indirection. A test can put a fault-injecting implementation under the
//! log and the outboxes and fail the k-th call of any kind with ENOSPC, EIO or a short write (the
//! way SQLite's I/O-error tests do), which is how the log's promises on a full or failing card
//! are checked. And all writes are positional: a record is written at the offset where the last
//! whole record ends, never with `O_APPEND`, so bytes a failed write left behind are overwritten
//! by the next record instead of sitting between two records.
//!
//! Reads are not routed through here: a failed read changes nothing on disk.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

/// The write side of a filesystem, as the buffers use it.
pub trait Disk: Send + Sync + std::fmt::Debug {
    /// Creates `path` (truncating an existing file), opened for reading and writing.
    fn create(&self, path: &Path) -> io::Result<File>;
    /// Opens an existing `path` for reading and writing.
    fn open(&self, path: &Path) -> io::Result<File>;
    /// Writes all of `bytes` at `offset`; an error may leave some of them written.
    fn write_at(&self, file: &File, offset: u64, bytes: &[u8]) -> io::Result<()>;
    fn sync_data(&self, file: &File) -> io::Result<()>;
    fn set_len(&self, file: &File, len: u64) -> io::Result<()>;
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Makes the directory's entries (created, renamed, removed files) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// The operating system's filesystem.
#[derive(Debug, Default, Clone, Copy)]
pub struct OsDisk;

impl OsDisk {
    pub fn shared() -> Arc<dyn Disk> {
        Arc::new(OsDisk)
    }
}

impl Disk for OsDisk {
    fn create(&self, path: &Path) -> io::Result<File> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
    }

    fn open(&self, path: &Path) -> io::Result<File> {
        OpenOptions::new().read(true).write(true).open(path)
    }

    fn write_at(&self, file: &File, offset: u64, bytes: &[u8]) -> io::Result<()> {
        file.write_all_at(bytes, offset)
    }

    fn sync_data(&self, file: &File) -> io::Result<()> {
        file.sync_data()
    }

    fn set_len(&self, file: &File, len: u64) -> io::Result<()> {
        file.set_len(len)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}

/// Whether an error means the filesystem is full (ENOSPC, or EDQUOT for a quota).
pub fn is_full(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::ENOSPC) | Some(libc::EDQUOT)
    ) || error.kind() == io::ErrorKind::StorageFull
}

/// Writes `contents` to `path` atomically through `disk`: a temporary file beside it, fsynced,
/// renamed over `path`, and the directory fsynced. On failure the temporary file is removed and
/// `path` is untouched.
pub fn replace_file(disk: &dyn Disk, path: &Path, contents: &[u8]) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let written = disk.create(&tmp).and_then(|file| {
        disk.write_at(&file, 0, contents)?;
        disk.sync_data(&file)
    });
    let renamed = written.and_then(|()| disk.rename(&tmp, path));
    if let Err(e) = renamed {
        // Best effort: a leftover is removed at the next start anyway.
        let _ = disk.remove(&tmp);
        return Err(e);
    }
    match path.parent() {
        Some(dir) => disk.sync_dir(dir),
        None => Ok(()),
    }
}
