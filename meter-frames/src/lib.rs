//! The Chinese meter protocols and M-Bus (DOMAIN.md §3.7.5, §3.8): frame encoding and decoding
//! for DL/T 645-2007 household electricity meters ([`dlt645`]), CJ/T 188-2004 heat and water
//! meters ([`cjt188`]) and EN 13757-3 M-Bus heat meters ([`mbus`]). A crate of its own because
//! both the gateway (the master side) and retrofit-sim (the meters) speak them.
//!
//! Every decoder takes arbitrary bytes from a serial line and returns a frame or a
//! [`FrameError`]; none panics on any input (property-tested). Wake-up preambles (`FE`) and
//! line noise before the start byte are skipped.

pub mod cjt188;
pub mod dlt645;
pub mod mbus;

/// Why bytes are not a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("no start byte")]
    NoStart,
    #[error("frame incomplete: {0} more bytes needed")]
    Incomplete(usize),
    #[error("checksum {found:#04x}, expected {expected:#04x}")]
    Checksum { found: u8, expected: u8 },
    #[error("bad frame: {0}")]
    Malformed(&'static str),
    #[error("not BCD: {0:#04x}")]
    NotBcd(u8),
    #[error("the meter answered with error {0:#04x}")]
    MeterError(u8),
}

/// Sum of `bytes` modulo 256 (the checksum of all three protocols).
pub fn checksum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |sum, b| sum.wrapping_add(*b))
}

/// Little-endian packed BCD (least significant byte first) as an integer.
pub fn bcd_le(bytes: &[u8]) -> Result<u64, FrameError> {
    let mut value = 0u64;
    for &byte in bytes.iter().rev() {
        let (high, low) = (byte >> 4, byte & 0x0F);
        if high > 9 || low > 9 {
            return Err(FrameError::NotBcd(byte));
        }
        value = value * 100 + u64::from(high) * 10 + u64::from(low);
    }
    Ok(value)
}

/// `value` as `len` bytes of little-endian packed BCD (digits beyond `2 × len` are dropped).
pub fn to_bcd_le(mut value: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|_| {
            let byte = (((value % 100 / 10) << 4) | (value % 10)) as u8;
            value /= 100;
            byte
        })
        .collect()
}

/// A meter address written as decimal digits (`"000012345678"`) as little-endian BCD bytes.
pub fn address_bytes(digits: &str, len: usize) -> Option<Vec<u8>> {
    if digits.len() != 2 * len || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    to_bcd_le(digits.parse().ok()?, len).into()
}

/// The index of the first `start` byte, after any preamble or noise.
fn find_start(bytes: &[u8], start: u8) -> Result<usize, FrameError> {
    bytes
        .iter()
        .position(|b| *b == start)
        .ok_or(FrameError::NoStart)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bcd_round_trips_and_refuses_hex_digits() {
        assert_eq!(bcd_le(&[0x67, 0x45, 0x23, 0x01]), Ok(1_234_567));
        assert_eq!(to_bcd_le(1_234_567, 4), vec![0x67, 0x45, 0x23, 0x01]);
        assert_eq!(bcd_le(&[0x1A]), Err(FrameError::NotBcd(0x1A)));
        assert_eq!(
            address_bytes("000012345678", 6),
            Some(vec![0x78, 0x56, 0x34, 0x12, 0x00, 0x00])
        );
        assert_eq!(address_bytes("12345", 6), None);
        assert_eq!(address_bytes("00001234567x", 6), None);
    }
}
