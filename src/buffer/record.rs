//! One record on disk, and finding records in a segment's bytes.
//!
//! ```text
//! offset  size  field
//!      0     2  magic "RG" (0x52 0x47)
//!      2     4  payload length, u32 LE (1 ..= MAX_PAYLOAD)
//!      6     4  CRC-32 (IEEE) of bytes 2..6 and 10.. (length, sequence, time, payload)
//!     10     8  sequence number, u64 LE
//!     18     8  append time, Unix milliseconds, u64 LE
//!     26     n  payload
//! ```
//!
//! The CRC covers the length, so a flipped length bit is detected like any other. The magic lets
//! a scan find the next record after a damaged one without trusting the damaged length.

/// Bytes before the payload.
pub const HEADER_LEN: usize = 26;
/// Largest payload accepted (a line of line protocol is far smaller).
pub const MAX_PAYLOAD: usize = 1 << 20;
const MAGIC: [u8; 2] = *b"RG";

/// A record as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub seq: u64,
    pub time_ms: u64,
    pub payload: Vec<u8>,
}

/// Appends the encoding of a record to `out`.
pub fn encode(seq: u64, time_ms: u64, payload: &[u8], out: &mut Vec<u8>) {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&len.to_le_bytes());
    hasher.update(&seq.to_le_bytes());
    hasher.update(&time_ms.to_le_bytes());
    hasher.update(payload);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&hasher.finalize().to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&time_ms.to_le_bytes());
    out.extend_from_slice(payload);
}

/// What is at an offset of a segment.
#[derive(Debug, PartialEq, Eq)]
pub enum Found {
    /// A valid record occupying `len` bytes.
    Record(Record, usize),
    /// Not enough bytes for the record that starts here (possibly a torn write).
    Truncated,
    /// Bytes that are not a valid record.
    Invalid,
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(b)
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(b)
}

/// The whole length (header and payload) the record starting at `bytes` declares, when its
/// header is there and plausible; a reader uses it to fetch a record longer than its window.
pub fn declared_len(bytes: &[u8]) -> Option<usize> {
    if bytes.len() < 6 || bytes[..2] != MAGIC {
        return None;
    }
    let len = u32_at(bytes, 2) as usize;
    (len > 0 && len <= MAX_PAYLOAD).then_some(HEADER_LEN + len)
}

/// Decodes the record starting at `bytes[0]`.
pub fn decode(bytes: &[u8]) -> Found {
    if bytes.len() < HEADER_LEN {
        return if bytes.len() >= 2 && bytes[..2] != MAGIC {
            Found::Invalid
        } else {
            Found::Truncated
        };
    }
    if bytes[..2] != MAGIC {
        return Found::Invalid;
    }
    let len = u32_at(bytes, 2) as usize;
    if len == 0 || len > MAX_PAYLOAD {
        return Found::Invalid;
    }
    if bytes.len() < HEADER_LEN + len {
        return Found::Truncated;
    }
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&bytes[2..6]);
    hasher.update(&bytes[10..HEADER_LEN + len]);
    if hasher.finalize() != u32_at(bytes, 6) {
        return Found::Invalid;
    }
    Found::Record(
        Record {
            seq: u64_at(bytes, 10),
            time_ms: u64_at(bytes, 18),
            payload: bytes[HEADER_LEN..HEADER_LEN + len].to_vec(),
        },
        HEADER_LEN + len,
    )
}

/// Sequence number, append time and payload length from a header, without checking the CRC
/// (for figures such as the oldest unsent age, never for data).
pub fn peek_header(header: &[u8; HEADER_LEN]) -> Option<(u64, u64, usize)> {
    (header[..2] == MAGIC).then(|| {
        (
            u64_at(header, 10),
            u64_at(header, 18),
            u32_at(header, 2) as usize,
        )
    })
}

/// The offset of the next valid record at or after `from`, if any.
pub fn resync(bytes: &[u8], from: usize) -> Option<usize> {
    (from..bytes.len().saturating_sub(1))
        .filter(|&at| bytes[at..at + 2] == MAGIC)
        .find(|&at| matches!(decode(&bytes[at..]), Found::Record(..)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_detects_any_flipped_bit() {
        let mut bytes = Vec::new();
        encode(42, 1_764_150_000_000, b"pump_station p=0.47 1", &mut bytes);
        let Found::Record(record, len) = decode(&bytes) else {
            panic!("valid record not found")
        };
        assert_eq!(
            (record.seq, record.time_ms, len),
            (42, 1_764_150_000_000, bytes.len())
        );
        assert_eq!(record.payload, b"pump_station p=0.47 1");
        for bit in 0..bytes.len() * 8 {
            let mut damaged = bytes.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(
                !matches!(decode(&damaged), Found::Record(..)),
                "flipped bit {bit} not detected"
            );
        }
    }

    #[test]
    fn a_short_tail_is_truncated_and_garbage_is_invalid() {
        let mut bytes = Vec::new();
        encode(1, 0, b"x=1", &mut bytes);
        for cut in 1..bytes.len() {
            assert_eq!(decode(&bytes[..cut]), Found::Truncated, "cut at {cut}");
        }
        assert_eq!(decode(&[0u8; 64]), Found::Invalid);
    }

    #[test]
    fn resync_finds_the_record_after_damage() {
        let mut bytes = Vec::new();
        encode(1, 0, b"first", &mut bytes);
        let second_at = bytes.len();
        encode(2, 0, b"second", &mut bytes);
        bytes[5] ^= 0xFF; // the first record's length
        assert_eq!(decode(&bytes), Found::Invalid);
        assert_eq!(resync(&bytes, 1), Some(second_at));
    }
}
