//! Writes samples as line protocol to a file (appending) or to standard output, flushing whenever
//! the channel runs dry so that a reader sees lines within one poll.
//!
//! This is the output until the durable InfluxDB path exists: it adds no durability of its own.

use std::path::Path;

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::model::Sample;

use super::influx::line_protocol;

/// Where lines go.
pub async fn open(path: &str) -> std::io::Result<Box<dyn AsyncWrite + Send + Unpin>> {
    if path == "-" {
        return Ok(Box::new(tokio::io::stdout()));
    }
    let file = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(Path::new(path))
        .await?;
    Ok(Box::new(file))
}

/// Counts of a finished writer.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub lines: u64,
    pub skipped_fields: u64,
}

/// Drains `samples` into `out` until the channel closes.
pub async fn write_lines(
    mut samples: mpsc::Receiver<Sample>,
    mut out: impl AsyncWrite + Unpin,
) -> std::io::Result<Written> {
    let mut written = Written::default();
    let mut buffer = String::new();
    while let Some(sample) = samples.recv().await {
        let mut next = Some(sample);
        while let Some(sample) = next {
            let encoded = line_protocol::encode(&sample, &mut buffer);
            written.lines += u64::from(encoded.fields > 0);
            written.skipped_fields += encoded.skipped as u64;
            next = samples.try_recv().ok();
        }
        out.write_all(buffer.as_bytes()).await?;
        out.flush().await?;
        buffer.clear();
    }
    Ok(written)
}
