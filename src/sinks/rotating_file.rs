//! An append-only text file that never outgrows its cap: the dead-letter file and the
//! line-protocol file output both sit on an SD card that nobody empties.
//!
//! The file and one predecessor `<path>.1` share the cap, half each: when a write would take the
//! file past half, it becomes `<path>.1` (the previous `.1` is removed, its lines counted as
//! rotated out) and a new file is started. A single write larger than half the cap still goes
//! into a file of its own, so nothing handed in is refused for its size.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// A capped, rotating append-only file.
#[derive(Debug)]
pub struct RotatingFile {
    path: PathBuf,
    /// Both files together.
    max_bytes: u64,
    file: File,
    size: u64,
    /// Lines removed with an old `.1` file since opening.
    rotated_out_lines: u64,
}

impl RotatingFile {
    /// Opens `path` for appending (creating it).
    pub fn open(path: &Path, max_bytes: u64) -> io::Result<RotatingFile> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(RotatingFile {
            path: path.to_path_buf(),
            max_bytes,
            file,
            size,
            rotated_out_lines: 0,
        })
    }

    /// Appends `text`, rotating first if it would take the file past half the cap.
    pub fn append(&mut self, text: &[u8]) -> io::Result<()> {
        if self.size > 0 && self.size + text.len() as u64 > self.max_bytes / 2 {
            self.rotate()?;
        }
        self.file.write_all(text)?;
        self.size += text.len() as u64;
        Ok(())
    }

    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// Lines given up with rotated-out files since opening.
    pub fn rotated_out_lines(&self) -> u64 {
        self.rotated_out_lines
    }

    fn rotate(&mut self) -> io::Result<()> {
        let old = self.older();
        match std::fs::read(&old) {
            Ok(bytes) => {
                self.rotated_out_lines += bytes.iter().filter(|b| **b == b'\n').count() as u64
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        std::fs::rename(&self.path, &old)?;
        self.file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&self.path)?;
        self.size = 0;
        Ok(())
    }

    fn older(&self) -> PathBuf {
        let mut name = self.path.as_os_str().to_owned();
        name.push(".1");
        PathBuf::from(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size(path: &Path) -> u64 {
        std::fs::metadata(path).map_or(0, |m| m.len())
    }

    #[test]
    fn two_files_share_the_cap_and_rotated_out_lines_are_counted() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("dead-letter.lp");
        let mut file = RotatingFile::open(&path, 1000).expect("opens");
        let line = format!("{}\n", "x".repeat(99));
        for _ in 0..40 {
            file.append(line.as_bytes()).expect("appends");
            let both = size(&path) + size(&dir.path().join("dead-letter.lp.1"));
            assert!(both <= 1000, "{both} bytes on disk");
        }
        // 40 lines written, at most 10 kept: the rest were counted as they went.
        let kept = (size(&path) + size(&dir.path().join("dead-letter.lp.1"))) / 100;
        assert_eq!(file.rotated_out_lines() + kept, 40);
    }

    #[test]
    fn a_reopened_file_continues_from_its_size() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("lines.txt");
        RotatingFile::open(&path, 100)
            .expect("opens")
            .append(&[b'a'; 40])
            .expect("appends");
        let mut file = RotatingFile::open(&path, 100).expect("reopens");
        file.append(&[b'b'; 20]).expect("appends");
        assert_eq!(size(&path), 20, "rotated: 40 + 20 is past half the cap");
        assert_eq!(size(&dir.path().join("lines.txt.1")), 40);
    }
}
