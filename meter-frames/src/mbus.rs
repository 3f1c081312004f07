//! EN 13757-3 M-Bus for the primary heat meter (DOMAIN.md §3.8.2): the REQ_UD2 short frame
//! `10 5B A CS 16` and the RSP_UD long frame `68 L L 68 C A CI data CS 16` with CI 0x72
//! (variable data: a 12-byte header, then records of DIF [DIFE…] VIF [VIFE…] data).
//!
//! Only the quantities a heat meter reports are named (energy, volume, power, volume flow,
//! flow and return temperature, operating time); other records are skipped by their length.

use crate::{bcd_le, checksum, find_start, FrameError};

/// What a record measures, in the gateway's units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quantity {
    EnergyKwh,
    VolumeM3,
    PowerKw,
    FlowM3h,
    FlowTempC,
    ReturnTempC,
    TempDiffK,
    OperatingH,
}

/// One decoded record.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub quantity: Quantity,
    pub value: f64,
    /// 0 is the current value; others are stored (historic) values.
    pub storage: u32,
}

/// A request for class 2 data from the meter at primary `address`.
pub fn req_ud2(address: u8) -> Vec<u8> {
    vec![0x10, 0x5B, address, 0x5Bu8.wrapping_add(address), 0x16]
}

/// A decoded RSP_UD: the meter's primary address and its records.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub address: u8,
    /// Identification number (8 BCD digits).
    pub id: u64,
    /// The header's status byte (EN 13757-3: bits 0–1 application errors, bit 2 power low,
    /// bit 3 permanent error, bit 4 temporary error).
    pub status: u8,
    pub records: Vec<Record>,
}

impl Response {
    /// The current (storage 0) value of `quantity`, when the meter sent one.
    pub fn current(&self, quantity: Quantity) -> Option<f64> {
        self.records
            .iter()
            .find(|r| r.quantity == quantity && r.storage == 0)
            .map(|r| r.value)
    }
}

/// Decodes one RSP_UD long frame with variable data; returns it and the bytes it used.
pub fn decode(bytes: &[u8]) -> Result<(Response, usize), FrameError> {
    let start = find_start(bytes, 0x68)?;
    let frame = &bytes[start..];
    if frame.len() < 6 {
        return Err(FrameError::Incomplete(6 - frame.len()));
    }
    let len = usize::from(frame[1]);
    if frame[2] != frame[1] || frame[3] != 0x68 {
        return Err(FrameError::Malformed("long frame header"));
    }
    let total = 6 + len;
    if frame.len() < total {
        return Err(FrameError::Incomplete(total - frame.len()));
    }
    let body = &frame[4..4 + len];
    let expected = checksum(body);
    if frame[4 + len] != expected {
        return Err(FrameError::Checksum {
            found: frame[4 + len],
            expected,
        });
    }
    if frame[5 + len] != 0x16 {
        return Err(FrameError::Malformed("no end byte"));
    }
    let [_control, address, ci, data @ ..] = body else {
        return Err(FrameError::Malformed("long frame shorter than C, A and CI"));
    };
    if *ci != 0x72 {
        return Err(FrameError::Malformed("not variable data (CI 0x72)"));
    }
    let Some((header, records)) = data.split_first_chunk::<12>() else {
        return Err(FrameError::Malformed(
            "variable data header shorter than 12 bytes",
        ));
    };
    Ok((
        Response {
            address: *address,
            id: bcd_le(&header[..4])?,
            status: header[9],
            records: parse_records(records)?,
        },
        start + total,
    ))
}

/// Data field length and whether it is BCD, from the DIF's low nibble; `None` for variable
/// length and special functions.
fn data_field(dif: u8) -> Option<(usize, bool)> {
    Some(match dif & 0x0F {
        0x0 | 0x8 => (0, false),
        n @ 0x1..=0x4 => (usize::from(n), false),
        0x5 => (4, false),
        0x6 => (6, false),
        0x7 => (8, false),
        0x9 => (1, true),
        0xA => (2, true),
        0xB => (3, true),
        0xC => (4, true),
        0xE => (6, true),
        _ => return None,
    })
}

/// What a primary VIF measures and its factor to the gateway's unit.
fn meaning(vif: u8) -> Option<(Quantity, f64)> {
    let n = i32::from(vif & 0x07);
    let low2 = i32::from(vif & 0x03);
    Some(match vif & 0x7F {
        0x00..=0x07 => (Quantity::EnergyKwh, 10f64.powi(n - 6)), // Wh × 10^(n−3)
        0x08..=0x0F => (Quantity::EnergyKwh, 10f64.powi(n) / 3.6e6), // J × 10^n
        0x10..=0x17 => (Quantity::VolumeM3, 10f64.powi(n - 6)),
        0x28..=0x2F => (Quantity::PowerKw, 10f64.powi(n - 6)), // W × 10^(n−3)
        0x38..=0x3F => (Quantity::FlowM3h, 10f64.powi(n - 6)),
        0x58..=0x5B => (Quantity::FlowTempC, 10f64.powi(low2 - 3)),
        0x5C..=0x5F => (Quantity::ReturnTempC, 10f64.powi(low2 - 3)),
        0x60..=0x63 => (Quantity::TempDiffK, 10f64.powi(low2 - 3)),
        0x20..=0x27 => match vif & 0x03 {
            // On time / operating time: seconds, minutes, hours, days.
            0 => (Quantity::OperatingH, 1.0 / 3600.0),
            1 => (Quantity::OperatingH, 1.0 / 60.0),
            2 => (Quantity::OperatingH, 1.0),
            _ => (Quantity::OperatingH, 24.0),
        },
        _ => return None,
    })
}

fn parse_records(mut rest: &[u8]) -> Result<Vec<Record>, FrameError> {
    let mut records = Vec::new();
    while let Some((&dif, tail)) = rest.split_first() {
        rest = tail;
        if dif == 0x2F {
            continue; // idle filler
        }
        if dif & 0x0F == 0x0F {
            break; // manufacturer-specific data to the end
        }
        let mut storage = u32::from((dif >> 6) & 1);
        let mut extension = dif & 0x80 != 0;
        let mut shift = 1;
        while extension {
            let (&dife, tail) = rest
                .split_first()
                .ok_or(FrameError::Malformed("DIFE missing"))?;
            rest = tail;
            storage |= u32::from(dife & 0x0F).checked_shl(shift).unwrap_or(0);
            shift += 4;
            extension = dife & 0x80 != 0;
        }
        let (&vif, tail) = rest
            .split_first()
            .ok_or(FrameError::Malformed("VIF missing"))?;
        rest = tail;
        let mut extension = vif & 0x80 != 0;
        while extension {
            let (&vife, tail) = rest
                .split_first()
                .ok_or(FrameError::Malformed("VIFE missing"))?;
            rest = tail;
            extension = vife & 0x80 != 0;
        }
        let (len, bcd) = match data_field(dif) {
            Some(field) => field,
            None if dif & 0x0F == 0x0D => {
                let (&lvar, tail) = rest
                    .split_first()
                    .ok_or(FrameError::Malformed("LVAR missing"))?;
                rest = tail;
                (usize::from(lvar.min(0xBF)), false)
            }
            None => return Err(FrameError::Malformed("unsupported data field")),
        };
        if rest.len() < len {
            return Err(FrameError::Malformed("record data cut short"));
        }
        let (data, tail) = rest.split_at(len);
        rest = tail;
        let Some((quantity, factor)) = meaning(vif) else {
            continue;
        };
        if dif & 0x0F == 0x0D || len == 0 {
            continue; // text, or no data
        }
        let raw = if bcd {
            bcd_le(data)? as f64
        } else if dif & 0x0F == 0x5 {
            f64::from(f32::from_le_bytes([data[0], data[1], data[2], data[3]]))
        } else {
            let mut bytes = [0u8; 8];
            bytes[..len].copy_from_slice(data);
            // Sign-extend the integer from its length.
            let bits = 8 * len as u32;
            let value = i64::from_le_bytes(bytes);
            (value << (64 - bits) >> (64 - bits)) as f64
        };
        records.push(Record {
            quantity,
            value: raw * factor,
            storage,
        });
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn bytes(hex: &str) -> Vec<u8> {
        hex.split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).expect("hex"))
            .collect()
    }

    #[test]
    fn req_ud2_to_primary_address_1() {
        assert_eq!(req_ud2(1), bytes("10 5B 01 5C 16"));
    }

    /// Meter 12345678 at primary address 1: 12345 kWh (04 06), 4567.89 m³ (04 14), 15.5 kW
    /// (04 2B), 1.234 m³/h (04 3B), 65.12 °C / 45.03 °C (02 59, 02 5D), 1234 h (0A 22, BCD),
    /// and a stored (storage 1) energy of 10000 kWh (44 06). Checksum computed by hand.
    const RSP_UD: &str = "68 39 39 68 08 01 72 78 56 34 12 2D 2C 01 04 01 00 00 00 \
        04 06 39 30 00 00 04 14 55 F8 06 00 04 2B 8C 3C 00 00 04 3B D2 04 00 00 \
        02 59 70 19 02 5D 97 11 0A 22 34 12 44 06 10 27 00 00 B6 16";

    #[test]
    fn a_heat_meter_response_decodes_record_by_record() {
        let (response, used) = decode(&bytes(RSP_UD)).expect("a response");
        assert_eq!(used, bytes(RSP_UD).len());
        assert_eq!((response.address, response.id), (1, 12_345_678));
        assert_eq!(response.status, 0);
        let close = |q: Quantity, expected: f64| {
            let v = response
                .current(q)
                .unwrap_or_else(|| panic!("{q:?} missing"));
            assert!((v - expected).abs() < 1e-9, "{q:?}: {v} ≠ {expected}");
        };
        close(Quantity::EnergyKwh, 12345.0);
        close(Quantity::VolumeM3, 4567.89);
        close(Quantity::PowerKw, 15.5);
        close(Quantity::FlowM3h, 1.234);
        close(Quantity::FlowTempC, 65.12);
        close(Quantity::ReturnTempC, 45.03);
        close(Quantity::OperatingH, 1234.0);
        let stored = response
            .records
            .iter()
            .find(|r| r.storage == 1)
            .expect("stored energy");
        assert!((stored.value - 10000.0).abs() < 1e-9);
    }

    #[test]
    fn damaged_responses_are_refused() {
        let mut damaged = bytes(RSP_UD);
        damaged[20] ^= 0x01;
        assert!(matches!(decode(&damaged), Err(FrameError::Checksum { .. })));
        let cut = &bytes(RSP_UD)[..30];
        assert!(matches!(decode(cut), Err(FrameError::Incomplete(_))));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(noise in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok((_, used)) = decode(&noise) {
                prop_assert!(used <= noise.len());
            }
        }

        #[test]
        fn arbitrary_records_in_a_valid_frame_never_panic(records in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut body = vec![0x08, 0x01, 0x72];
            body.extend_from_slice(&[0x78, 0x56, 0x34, 0x12, 0x2D, 0x2C, 1, 4, 1, 0, 0, 0]);
            body.extend_from_slice(&records);
            let len = body.len() as u8;
            let mut frame = vec![0x68, len, len, 0x68];
            frame.extend_from_slice(&body);
            frame.push(checksum(&body));
            frame.push(0x16);
            let _ = decode(&frame);
        }
    }
}
