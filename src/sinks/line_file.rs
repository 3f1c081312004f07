//! Writes samples as line protocol to a file or to standard output, flushing whenever the
//! channel runs dry so that a reader sees lines within one poll.
//!
//! It adds no durability of its own (that is the telemetry log's job). A file is capped and
//! rotated ([`RotatingFile`]): on a gateway's SD card an ever-growing file would fill the card
//! that the telemetry log and the alarm outboxes need. Writes are plain blocking writes of one
//! buffer per batch: a page-cache write takes microseconds, less than handing it to another
//! thread.

use std::io::Write as _;
use std::path::Path;

use tokio::sync::mpsc;

use crate::model::Sample;

use super::rotating_file::RotatingFile;
use crate::line_protocol;

/// Where lines go.
pub enum LineOut {
    Stdout,
    File(RotatingFile),
}

/// Opens `path` (`-` for standard output), a file capped at `max_bytes`.
pub fn open(path: &str, max_bytes: u64) -> std::io::Result<LineOut> {
    if path == "-" {
        return Ok(LineOut::Stdout);
    }
    RotatingFile::open(Path::new(path), max_bytes).map(LineOut::File)
}

impl LineOut {
    fn write(&mut self, text: &[u8]) -> std::io::Result<()> {
        match self {
            LineOut::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(text)?;
                out.flush()
            }
            LineOut::File(file) => file.append(text),
        }
    }

    fn rotated_out_lines(&self) -> u64 {
        match self {
            LineOut::Stdout => 0,
            LineOut::File(file) => file.rotated_out_lines(),
        }
    }
}

/// Counts of a finished writer.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub lines: u64,
    pub skipped_fields: u64,
    /// Lines removed again to keep the file within its cap.
    pub rotated_out: u64,
}

/// Drains `samples` into `out` until the channel closes.
pub async fn write_lines(
    mut samples: mpsc::Receiver<Sample>,
    mut out: LineOut,
) -> std::io::Result<Written> {
    let mut written = Written::default();
    let mut buffer = String::new();
    let mut receipts = Vec::new();
    while let Some(sample) = samples.recv().await {
        let mut next = Some(sample);
        while let Some(mut sample) = next {
            let encoded = line_protocol::encode(&sample, &mut buffer);
            written.lines += u64::from(encoded.fields > 0);
            written.skipped_fields += encoded.skipped as u64;
            receipts.push(std::mem::take(&mut sample.receipt));
            next = samples.try_recv().ok();
        }
        let result = out.write(buffer.as_bytes());
        for mut receipt in receipts.drain(..) {
            receipt.settle(result.is_ok());
        }
        result?;
        buffer.clear();
    }
    written.rotated_out = out.rotated_out_lines();
    Ok(written)
}
