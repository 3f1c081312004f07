//! CJ/T 188-2004, the heat and water meter protocol (DOMAIN.md §3.8.1):
//!
//! ```text
//! [FE FE] 68 T A0..A6 C L DI0 DI1 SER DATA CS 16
//! ```
//!
//! T is the meter type (0x10 cold water … 0x20 heat), the address is 7 BCD bytes least
//! significant first, C = 0x01 reads data (0x81 reply, 0xC1 error), DI 0x901F is the current
//! metering data (sent low byte first), CS is the sum from 68 to the last data byte; unlike DL/T
//! 645 there is no +0x33 offset. Values are little-endian BCD followed by a unit code.

use crate::{bcd_le, checksum, find_start, FrameError};

/// Meter types.
pub const HEAT_METER: u8 = 0x20;
pub const COLD_WATER_METER: u8 = 0x10;
const READ_DATA: u8 = 0x01;
const READ_REPLY: u8 = 0x81;
const ERROR_REPLY: u8 = 0xC1;
/// Current metering data.
pub const CURRENT_DATA: u16 = 0x901F;

/// A 188 frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub meter_type: u8,
    pub address: [u8; 7],
    pub control: u8,
    /// From DI0 on: DI0 DI1 SER and the data.
    pub data: Vec<u8>,
}

/// The bytes of a frame, with a two-byte wake-up preamble.
pub fn encode(frame: &Frame) -> Vec<u8> {
    let mut bytes = vec![0xFE, 0xFE, 0x68, frame.meter_type];
    bytes.extend_from_slice(&frame.address);
    bytes.push(frame.control);
    bytes.push(frame.data.len() as u8);
    bytes.extend_from_slice(&frame.data);
    bytes.push(checksum(&bytes[2..]));
    bytes.push(0x16);
    bytes
}

/// A read of the current data (901F) with sequence number `ser`.
pub fn read_request(meter_type: u8, address: [u8; 7], ser: u8) -> Vec<u8> {
    let [di0, di1] = CURRENT_DATA.to_le_bytes();
    encode(&Frame {
        meter_type,
        address,
        control: READ_DATA,
        data: vec![di0, di1, ser],
    })
}

/// Decodes one frame; returns it and the bytes it used.
pub fn decode(bytes: &[u8]) -> Result<(Frame, usize), FrameError> {
    let start = find_start(bytes, 0x68)?;
    let frame = &bytes[start..];
    if frame.len() < 13 {
        return Err(FrameError::Incomplete(13 - frame.len()));
    }
    let len = usize::from(frame[10]);
    let total = 13 + len;
    if frame.len() < total {
        return Err(FrameError::Incomplete(total - frame.len()));
    }
    let expected = checksum(&frame[..11 + len]);
    if frame[11 + len] != expected {
        return Err(FrameError::Checksum {
            found: frame[11 + len],
            expected,
        });
    }
    if frame[12 + len] != 0x16 {
        return Err(FrameError::Malformed("no end byte"));
    }
    let mut address = [0u8; 7];
    address.copy_from_slice(&frame[2..9]);
    Ok((
        Frame {
            meter_type: frame[1],
            address,
            control: frame[9],
            data: frame[11..11 + len].to_vec(),
        },
        start + total,
    ))
}

/// What a heat meter's current data (901F) says, in the gateway's units.
#[derive(Debug, Clone, PartialEq)]
pub struct HeatReading {
    pub settlement_heat_kwh: f64,
    pub heat_kwh: f64,
    pub power_kw: f64,
    pub flow_m3h: f64,
    pub volume_m3: f64,
    pub supply_c: f64,
    pub return_c: f64,
    pub operating_h: f64,
    /// The status word ST, first byte in the low 8 bits (its bit map is the vendor's).
    pub status: u16,
}

/// A BCD value with `decimals` followed by its unit code, converted to the gateway's unit
/// (kWh, kW, m³, m³/h).
fn with_unit(bytes: &[u8], decimals: i32) -> Result<f64, FrameError> {
    let (digits, unit) = bytes.split_at(bytes.len() - 1);
    let value = bcd_le(digits)? as f64 / 10f64.powi(decimals);
    let factor = match unit[0] {
        0x02 => 1e-3,         // Wh
        0x05 => 1.0,          // kWh
        0x08 => 1e3,          // MWh
        0x0A => 1e5,          // 100 MWh
        0x0B => 1.0 / 3600.0, // kJ
        0x0E => 1e3 / 3600.0, // MJ
        0x11 => 1e6 / 3600.0, // GJ
        0x13 => 1e8 / 3600.0, // 100 GJ
        0x14 => 1e-3,         // W
        0x17 => 1.0,          // kW
        0x1A => 1e3,          // MW
        0x29 => 1e-3,         // L
        0x2C => 1.0,          // m³
        0x32 => 1e-3,         // L/h
        0x35 => 1.0,          // m³/h
        _ => return Err(FrameError::Malformed("unknown unit code")),
    };
    Ok(value * factor)
}

/// The data of a normal reply to a 901F read, at least `len` bytes; the meter's error byte as
/// [`FrameError::MeterError`].
fn current_data(frame: &Frame, len: usize) -> Result<&[u8], FrameError> {
    match frame.control {
        ERROR_REPLY => {
            return Err(FrameError::MeterError(
                frame.data.get(3).copied().unwrap_or(0),
            ))
        }
        READ_REPLY => {}
        _ => return Err(FrameError::Malformed("not a reply to a read")),
    }
    let d = &frame.data;
    if d.len() < len {
        return Err(FrameError::Malformed(
            "901F reply too short for its meter type",
        ));
    }
    if u16::from_le_bytes([d[0], d[1]]) != CURRENT_DATA {
        return Err(FrameError::Malformed("reply to another data identifier"));
    }
    Ok(d)
}

/// What a water meter's current data (901F) says.
#[derive(Debug, Clone, PartialEq)]
pub struct WaterReading {
    pub volume_m3: f64,
    pub settlement_volume_m3: f64,
    /// The status word ST, first byte in the low 8 bits.
    pub status: u16,
}

/// The current data of a water meter's reply to a 901F read: accumulated volume and the
/// settlement day's (4 BCD bytes XXXXXX.XX + unit each), real time (7), ST (2).
pub fn water_reading(frame: &Frame) -> Result<WaterReading, FrameError> {
    let d = current_data(frame, 22)?;
    Ok(WaterReading {
        volume_m3: with_unit(&d[3..8], 2)?,
        settlement_volume_m3: with_unit(&d[8..13], 2)?,
        status: u16::from_le_bytes([d[20], d[21]]),
    })
}

/// The current data of a heat meter's reply to a 901F read.
pub fn heat_reading(frame: &Frame) -> Result<HeatReading, FrameError> {
    let d = current_data(frame, 46)?;
    Ok(HeatReading {
        settlement_heat_kwh: with_unit(&d[3..8], 2)?,
        heat_kwh: with_unit(&d[8..13], 2)?,
        power_kw: with_unit(&d[13..18], 2)?,
        flow_m3h: with_unit(&d[18..23], 4)?,
        volume_m3: with_unit(&d[23..28], 2)?,
        supply_c: bcd_le(&d[28..31])? as f64 / 100.0,
        return_c: bcd_le(&d[31..34])? as f64 / 100.0,
        operating_h: bcd_le(&d[34..37])? as f64,
        status: u16::from_le_bytes([d[44], d[45]]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Meter 00000000012345.
    const METER: [u8; 7] = [0x45, 0x23, 0x01, 0x00, 0x00, 0x00, 0x00];

    fn bytes(hex: &str) -> Vec<u8> {
        hex.split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).expect("hex"))
            .collect()
    }

    // Vectors computed by hand: checksum = sum from 68 to the last data byte, mod 256.

    #[test]
    fn a_read_of_the_current_data() {
        assert_eq!(
            read_request(HEAT_METER, METER, 1),
            bytes("FE FE 68 20 45 23 01 00 00 00 00 01 03 1F 90 01 A5 16")
        );
    }

    /// 1234.56 kWh at settlement, 2345.67 kWh now, 15.50 kW, 1.2345 m³/h, 4567.89 m³,
    /// 65.12 °C / 45.03 °C, 12345 h, 2026-11-26 10:15:30, ST 0x0004 (battery low).
    const REPLY: &str = "FE FE 68 20 45 23 01 00 00 00 00 81 2E 1F 90 01 \
        56 34 12 00 05 67 45 23 00 05 50 15 00 00 17 45 23 01 00 35 89 67 45 00 2C \
        12 65 00 03 45 00 45 23 01 30 15 10 26 11 26 20 04 00 3E 16";

    #[test]
    fn a_heat_meter_reply_decodes_field_by_field() {
        let (frame, used) = decode(&bytes(REPLY)).expect("a frame");
        assert_eq!(used, bytes(REPLY).len());
        assert_eq!((frame.meter_type, frame.address), (HEAT_METER, METER));
        let reading = heat_reading(&frame).expect("a reading");
        assert_eq!(
            reading,
            HeatReading {
                settlement_heat_kwh: 1234.56,
                heat_kwh: 2345.67,
                power_kw: 15.5,
                flow_m3h: 1.2345,
                volume_m3: 4567.89,
                supply_c: 65.12,
                return_c: 45.03,
                operating_h: 12345.0,
                status: 0x0004,
            }
        );
    }

    #[test]
    fn units_are_converted_and_errors_reported() {
        // 1.23 GJ is 341.67 kWh.
        let gj = with_unit(&[0x23, 0x01, 0x00, 0x00, 0x11], 2).expect("GJ");
        assert!((gj - 1.23e6 / 3600.0).abs() < 1e-9);
        assert!(matches!(
            with_unit(&[0, 0, 0, 0, 0x99], 2),
            Err(FrameError::Malformed(_))
        ));
        let error = encode(&Frame {
            meter_type: HEAT_METER,
            address: METER,
            control: 0xC1,
            data: vec![0x1F, 0x90, 0x01, 0x01],
        });
        let (frame, _) = decode(&error).expect("a frame");
        assert_eq!(heat_reading(&frame), Err(FrameError::MeterError(0x01)));
        let mut damaged = bytes(REPLY);
        let at = damaged.len() - 2;
        damaged[at] ^= 0xFF;
        assert!(matches!(decode(&damaged), Err(FrameError::Checksum { .. })));
    }

    #[test]
    fn a_water_meter_reply_decodes() {
        // Meter 00000000012345, type 0x10: 123456.78 m³ now, 123450.00 m³ at settlement,
        // 2026-11-26 10:15:30, ST 0. Length 0x16 = 22; checksum 0xFD summed by hand.
        let reply = bytes(
            "68 10 45 23 01 00 00 00 00 81 16 1F 90 02 78 56 34 12 2C 00 50 34 12 2C \
             30 15 10 26 11 26 20 00 00 FD 16",
        );
        let (frame, _) = decode(&reply).expect("a frame");
        assert_eq!(frame.meter_type, COLD_WATER_METER);
        assert_eq!(
            water_reading(&frame),
            Ok(WaterReading {
                volume_m3: 123456.78,
                settlement_volume_m3: 123450.0,
                status: 0,
            })
        );
        // A water meter's reply is too short to be a heat meter's.
        assert!(matches!(
            heat_reading(&frame),
            Err(FrameError::Malformed(_))
        ));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(noise in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok((frame, used)) = decode(&noise) {
                prop_assert!(used <= noise.len());
                let _ = heat_reading(&frame);
                let _ = water_reading(&frame);
            }
        }
    }
}
