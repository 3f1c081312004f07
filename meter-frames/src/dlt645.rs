//! DL/T 645-2007, the household electricity meter protocol (DOMAIN.md §3.7.5):
//!
//! ```text
//! [FE FE FE FE] 68 A0..A5 68 C L DATA(each byte + 0x33) CS 16
//! ```
//!
//! A read (C = 0x11) carries a 4-byte data identifier (DI, least significant byte first); the
//! normal reply (0x91) repeats the DI followed by the value in little-endian BCD; the error reply
//! (0xD1) carries one error byte. CS is the sum from the first 68 to the last data byte.

use crate::{bcd_le, checksum, find_start, FrameError};

/// Read data.
pub const READ: u8 = 0x11;
const NORMAL_REPLY: u8 = 0x91;
const ERROR_REPLY: u8 = 0xD1;
const OFFSET: u8 = 0x33;
const PREAMBLE: [u8; 4] = [0xFE; 4];

/// A data identifier the gateway reads, and how its value is written.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DataId {
    pub di: u32,
    /// The field name written.
    pub name: &'static str,
    pub bytes: usize,
    pub decimals: i32,
    /// Bit 7 of the most significant byte is the sign (currents, powers).
    pub signed: bool,
    /// A bit field (status words): plain binary, little-endian, not BCD.
    pub bits: bool,
}

/// The identifiers of DOMAIN.md §3.7.5.
pub const DATA_IDS: [DataId; 15] = [
    DataId {
        di: 0x0000_0000,
        name: "combined_energy_kwh",
        bytes: 4,
        decimals: 2,
        signed: false,
        bits: false,
    },
    DataId {
        di: 0x0001_0000,
        name: "import_energy_kwh",
        bytes: 4,
        decimals: 2,
        signed: false,
        bits: false,
    },
    DataId {
        di: 0x0002_0000,
        name: "export_energy_kwh",
        bytes: 4,
        decimals: 2,
        signed: false,
        bits: false,
    },
    DataId {
        di: 0x0201_0100,
        name: "ua_v",
        bytes: 2,
        decimals: 1,
        signed: false,
        bits: false,
    },
    DataId {
        di: 0x0201_0200,
        name: "ub_v",
        bytes: 2,
        decimals: 1,
        signed: false,
        bits: false,
    },
    DataId {
        di: 0x0201_0300,
        name: "uc_v",
        bytes: 2,
        decimals: 1,
        signed: false,
        bits: false,
    },
    DataId {
        di: 0x0202_0100,
        name: "ia_a",
        bytes: 3,
        decimals: 3,
        signed: true,
        bits: false,
    },
    DataId {
        di: 0x0202_0200,
        name: "ib_a",
        bytes: 3,
        decimals: 3,
        signed: true,
        bits: false,
    },
    DataId {
        di: 0x0202_0300,
        name: "ic_a",
        bytes: 3,
        decimals: 3,
        signed: true,
        bits: false,
    },
    DataId {
        di: 0x0203_0000,
        name: "p_kw",
        bytes: 3,
        decimals: 4,
        signed: true,
        bits: false,
    },
    DataId {
        di: 0x0204_0000,
        name: "q_kvar",
        bytes: 3,
        decimals: 4,
        signed: true,
        bits: false,
    },
    DataId {
        di: 0x0206_0000,
        name: "pf",
        bytes: 2,
        decimals: 3,
        signed: true,
        bits: false,
    },
    DataId {
        di: 0x0280_0002,
        name: "frequency_hz",
        bytes: 2,
        decimals: 2,
        signed: false,
        bits: false,
    },
    DataId {
        di: 0x0400_0501,
        name: "status_word_1",
        bytes: 2,
        decimals: 0,
        signed: false,
        bits: true,
    },
    DataId {
        di: 0x0400_0502,
        name: "status_word_2",
        bytes: 2,
        decimals: 0,
        signed: false,
        bits: true,
    },
];

/// The identifier `di`, if the gateway knows it.
pub fn data_id(di: u32) -> Option<&'static DataId> {
    DATA_IDS.iter().find(|d| d.di == di)
}

/// A 645 frame: the meter's address, the control code and the data with the offset removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub address: [u8; 6],
    pub control: u8,
    pub data: Vec<u8>,
}

/// The bytes of a frame, with the wake-up preamble.
pub fn encode(frame: &Frame) -> Vec<u8> {
    let mut bytes = PREAMBLE.to_vec();
    let start = bytes.len();
    bytes.push(0x68);
    bytes.extend_from_slice(&frame.address);
    bytes.push(0x68);
    bytes.push(frame.control);
    bytes.push(frame.data.len() as u8);
    bytes.extend(frame.data.iter().map(|b| b.wrapping_add(OFFSET)));
    bytes.push(checksum(&bytes[start..]));
    bytes.push(0x16);
    bytes
}

/// A read request for `di` to the meter at `address`.
pub fn read_request(address: [u8; 6], di: u32) -> Vec<u8> {
    encode(&Frame {
        address,
        control: READ,
        data: di.to_le_bytes().to_vec(),
    })
}

/// Decodes one frame from `bytes` (preamble and noise before it skipped); returns the frame and
/// the number of bytes it used.
pub fn decode(bytes: &[u8]) -> Result<(Frame, usize), FrameError> {
    let start = find_start(bytes, 0x68)?;
    let frame = &bytes[start..];
    if frame.len() < 12 {
        return Err(FrameError::Incomplete(12 - frame.len()));
    }
    if frame[7] != 0x68 {
        return Err(FrameError::Malformed("no second start byte"));
    }
    let len = usize::from(frame[9]);
    let total = 12 + len;
    if frame.len() < total {
        return Err(FrameError::Incomplete(total - frame.len()));
    }
    let expected = checksum(&frame[..10 + len]);
    if frame[10 + len] != expected {
        return Err(FrameError::Checksum {
            found: frame[10 + len],
            expected,
        });
    }
    if frame[11 + len] != 0x16 {
        return Err(FrameError::Malformed("no end byte"));
    }
    let mut address = [0u8; 6];
    address.copy_from_slice(&frame[1..7]);
    Ok((
        Frame {
            address,
            control: frame[8],
            data: frame[10..10 + len]
                .iter()
                .map(|b| b.wrapping_sub(OFFSET))
                .collect(),
        },
        start + total,
    ))
}

/// The value of a normal reply to a read of `expected`: checks the control code and the DI, and
/// turns an error reply into [`FrameError::MeterError`].
pub fn reply_value(frame: &Frame, expected: &DataId) -> Result<f64, FrameError> {
    match frame.control {
        ERROR_REPLY => {
            return Err(FrameError::MeterError(
                frame.data.first().copied().unwrap_or(0),
            ))
        }
        NORMAL_REPLY => {}
        _ => return Err(FrameError::Malformed("not a reply to a read")),
    }
    let Some((di, value)) = frame.data.split_first_chunk::<4>() else {
        return Err(FrameError::Malformed(
            "reply shorter than its data identifier",
        ));
    };
    if u32::from_le_bytes(*di) != expected.di {
        return Err(FrameError::Malformed("reply to another data identifier"));
    }
    if value.len() < expected.bytes {
        return Err(FrameError::Malformed("value shorter than its format"));
    }
    value_of(&value[..expected.bytes], expected)
}

/// A little-endian BCD value in `format`, with the sign bit when the format has one; a status
/// word as its bits.
pub fn value_of(bytes: &[u8], format: &DataId) -> Result<f64, FrameError> {
    if format.bits {
        let word = bytes
            .iter()
            .rev()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
        return Ok(word as f64);
    }
    let mut digits = bytes.to_vec();
    let mut negative = false;
    if format.signed {
        if let Some(top) = digits.last_mut() {
            negative = *top & 0x80 != 0;
            *top &= 0x7F;
        }
    }
    let magnitude = bcd_le(&digits)? as f64 / 10f64.powi(format.decimals);
    Ok(if negative { -magnitude } else { magnitude })
}

/// The value bytes of `value` in `format` (before the +0x33 offset): the inverse of
/// [`value_of`] for values the format can hold.
pub fn encode_value(value: f64, format: &DataId) -> Vec<u8> {
    let scaled = (value.abs() * 10f64.powi(format.decimals)).round() as u64;
    if format.bits {
        return scaled.to_le_bytes()[..format.bytes.min(8)].to_vec();
    }
    let mut bcd = crate::to_bcd_le(scaled, format.bytes);
    if format.signed && value < 0.0 {
        if let Some(top) = bcd.last_mut() {
            *top |= 0x80;
        }
    }
    bcd
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Meter 000012345678.
    const METER: [u8; 6] = [0x78, 0x56, 0x34, 0x12, 0x00, 0x00];

    fn bytes(hex: &str) -> Vec<u8> {
        hex.split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).expect("hex"))
            .collect()
    }

    fn reply(hex: &str, di: u32) -> Result<f64, FrameError> {
        let (frame, used) = decode(&bytes(hex))?;
        assert_eq!(used, bytes(hex).len());
        assert_eq!(frame.address, METER);
        reply_value(&frame, data_id(di).expect("known DI"))
    }

    // Vectors computed by hand (checksums: sum of bytes from the first 68, mod 256).

    #[test]
    fn a_read_of_phase_a_voltage() {
        assert_eq!(
            read_request(METER, 0x0201_0100),
            bytes("FE FE FE FE 68 78 56 34 12 00 00 68 11 04 33 34 34 35 C9 16")
        );
    }

    #[test]
    fn normal_replies_with_their_formats_and_sign_bits() {
        // 229.8 V: BCD 22 98 → 98 22 → +0x33 → CB 55.
        let ua = "68 78 56 34 12 00 00 68 91 06 33 34 34 35 CB 55 6B 16";
        assert_eq!(reply(ua, 0x0201_0100), Ok(229.8));
        // −1.234 A: 00 12 34 with the sign bit → 80 12 34 → LE 34 12 80 → 67 45 B3.
        let ia = "68 78 56 34 12 00 00 68 91 07 33 34 35 35 67 45 B3 AC 16";
        assert_eq!(reply(ia, 0x0202_0100), Ok(-1.234));
        // −0.5000 kW (exporting).
        let p = "68 78 56 34 12 00 00 68 91 07 33 33 36 35 33 83 B3 B6 16";
        assert_eq!(reply(p, 0x0203_0000), Ok(-0.5));
        // 12345.67 kWh imported.
        let energy = "68 78 56 34 12 00 00 68 91 08 33 33 34 33 9A 78 56 34 E6 16";
        assert_eq!(reply(energy, 0x0001_0000), Ok(12345.67));
    }

    #[test]
    fn a_status_word_is_bits_not_bcd() {
        // Status word 1 = 0x0014 (clock battery low, reverse active power): 14 00 → 47 33.
        let status = "68 78 56 34 12 00 00 68 91 06 34 38 33 37 47 33 CB 16";
        assert_eq!(reply(status, 0x0400_0501), Ok(20.0));
        // 0x000A is no BCD number but a valid status word.
        let format = data_id(0x0400_0501).expect("known DI");
        assert_eq!(value_of(&[0x0A, 0x00], format), Ok(10.0));
        assert_eq!(encode_value(10.0, format), vec![0x0A, 0x00]);
    }

    #[test]
    fn an_error_reply_carries_its_error_byte() {
        // 0x02: no such data.
        let error = "68 78 56 34 12 00 00 68 D1 01 35 EB 16";
        assert_eq!(reply(error, 0x0201_0100), Err(FrameError::MeterError(0x02)));
    }

    #[test]
    fn damaged_frames_are_refused_with_the_reason() {
        // The public IVY example: its checksum B2 is wrong (F7 is right).
        let ivy = bytes("68 34 12 00 00 00 00 68 11 04 33 33 33 33 B2 16");
        assert_eq!(
            decode(&ivy),
            Err(FrameError::Checksum {
                found: 0xB2,
                expected: 0xF7
            })
        );
        let short = bytes("FE FE 68 78 56 34 12 00 00 68 91 06 33 34");
        assert_eq!(decode(&short), Err(FrameError::Incomplete(6)));
        assert_eq!(decode(&bytes("FE FE FE")), Err(FrameError::NoStart));
        // A reply for another DI, and digits that are not BCD.
        let ua = "68 78 56 34 12 00 00 68 91 06 33 34 34 35 CB 55 6B 16";
        assert!(matches!(
            reply(ua, 0x0201_0200),
            Err(FrameError::Malformed(_))
        ));
        let hex_digit = "68 78 56 34 12 00 00 68 91 06 33 34 34 35 CB 5F 75 16";
        assert_eq!(reply(hex_digit, 0x0201_0100), Err(FrameError::NotBcd(0x2C)));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(noise in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok((frame, used)) = decode(&noise) {
                prop_assert!(used <= noise.len());
                for id in &DATA_IDS {
                    let _ = reply_value(&frame, id);
                }
            }
        }

        #[test]
        fn every_value_survives_a_round_trip(pick in 0..DATA_IDS.len(), raw in 0u64..1_000_000, negative: bool) {
            let id = DATA_IDS[pick];
            let digits = raw % 10u64.pow(2 * id.bytes as u32 - u32::from(id.signed));
            let negative = negative && id.signed && digits > 0;
            let expected = digits as f64 / 10f64.powi(id.decimals) * if negative { -1.0 } else { 1.0 };
            let mut data = id.di.to_le_bytes().to_vec();
            data.extend(encode_value(expected, &id));
            let sent = encode(&Frame { address: METER, control: 0x91, data });
            let (frame, _) = decode(&sent).expect("decodes");
            prop_assert_eq!(reply_value(&frame, &id), Ok(expected));
        }
    }
}
