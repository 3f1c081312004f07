//! Register decoding: raw Modbus words (or bits) to engineering values.
//!
//! A point's raw bytes are reassembled according to its [`WordOrder`], interpreted as its
//! [`PointType`], then scaled: `value = raw × scale × ratio + offset`. Unscaled integers stay
//! integers (status words keep their bits); everything scaled becomes a float. Values that are not
//! finite (a NaN from a float register) are refused, never emitted.

use thiserror::Error;

use crate::config::{PointConfig, PointType, Ratio, WordOrder};
use crate::model::Value;

/// Why a point could not be decoded from a reply.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum DecodeError {
    #[error("reply too short: point needs words {start}..{end}, reply has {len}")]
    ShortReply {
        start: usize,
        end: usize,
        len: usize,
    },
    #[error("value is not finite ({0})")]
    NotFinite(f64),
}

/// A point ready to decode: its profile entry plus the device's instrument-transformer ratios.
#[derive(Debug, Clone)]
pub struct PointDecoder {
    pub kind: PointType,
    pub order: WordOrder,
    pub bit: u8,
    pub width: u16,
    /// scale × ratio, folded once.
    factor: Factor,
    pub offset: f64,
}

/// How a raw value is scaled, chosen once per point: a factor of 10^-k divides by 10^k, so that
/// 4710 × 0.01 comes out as 47.1 and not 47.100000000000001.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Factor {
    One,
    DivideBy(f64),
    MultiplyBy(f64),
}

impl Factor {
    fn of(factor: f64) -> Factor {
        if factor == 1.0 {
            return Factor::One;
        }
        let inverse = 1.0 / factor;
        let rounded = inverse.round();
        if rounded >= 2.0 && (inverse - rounded).abs() < 1e-9 * rounded {
            Factor::DivideBy(rounded)
        } else {
            Factor::MultiplyBy(factor)
        }
    }

    fn apply(self, raw: f64) -> f64 {
        match self {
            Factor::One => raw,
            Factor::DivideBy(divisor) => raw / divisor,
            Factor::MultiplyBy(factor) => raw * factor,
        }
    }
}

impl PointDecoder {
    pub fn new(point: &PointConfig, ct_ratio: f64, pt_ratio: f64) -> Self {
        let ratio = match point.ratio {
            None => 1.0,
            Some(Ratio::Ct) => ct_ratio,
            Some(Ratio::Pt) => pt_ratio,
            Some(Ratio::PtCt) => ct_ratio * pt_ratio,
        };
        PointDecoder {
            kind: point.kind,
            order: point.order,
            bit: point.bit.unwrap_or(0),
            width: point.kind.width(point.length),
            factor: Factor::of(point.scale * ratio),
            offset: point.offset,
        }
    }

    /// Decodes a bit point from the bits of a coil/discrete-input reply.
    pub fn decode_bits(&self, bits: &[bool], at: usize) -> Result<Value, DecodeError> {
        bits.get(at)
            .map(|b| Value::Bool(*b))
            .ok_or(DecodeError::ShortReply {
                start: at,
                end: at + 1,
                len: bits.len(),
            })
    }

    /// Decodes a register point starting at word `at` of a register reply.
    pub fn decode_words(&self, words: &[u16], at: usize) -> Result<Value, DecodeError> {
        let end = at + usize::from(self.width);
        let raw = words.get(at..end).ok_or(DecodeError::ShortReply {
            start: at,
            end,
            len: words.len(),
        })?;
        // Numbers take at most four registers: their bytes are ordered on the stack.
        let mut ordered = [0u8; 8];
        let bytes = &mut ordered[..(raw.len() * 2).min(8)];
        ordered_into(&raw[..bytes.len() / 2], self.order, bytes);
        let value = match self.kind {
            PointType::Bool | PointType::Bit => {
                let word = u16::from_be_bytes([bytes[0], bytes[1]]);
                return Ok(Value::Bool(word >> self.bit & 1 == 1));
            }
            PointType::String => {
                let mut text = vec![0u8; raw.len() * 2];
                ordered_into(raw, self.order, &mut text);
                return Ok(Value::Text(text_of(&text)));
            }
            PointType::U16 => Raw::Unsigned(u64::from(u16::from_be_bytes(take(bytes)))),
            PointType::I16 => Raw::Signed(i64::from(i16::from_be_bytes(take(bytes)))),
            PointType::U32 => Raw::Unsigned(u64::from(u32::from_be_bytes(take(bytes)))),
            PointType::I32 => Raw::Signed(i64::from(i32::from_be_bytes(take(bytes)))),
            PointType::U64 => Raw::Unsigned(u64::from_be_bytes(take(bytes))),
            PointType::I64 => Raw::Signed(i64::from_be_bytes(take(bytes))),
            PointType::F32 => Raw::Float(shortest_f64(f32::from_be_bytes(take(bytes)))),
            PointType::F64 => Raw::Float(f64::from_be_bytes(take(bytes))),
        };
        self.scale(value)
    }

    fn scale(&self, raw: Raw) -> Result<Value, DecodeError> {
        let unscaled = self.factor == Factor::One && self.offset == 0.0;
        let value = match raw {
            Raw::Unsigned(v) if unscaled => return Ok(Value::UInt(v)),
            Raw::Signed(v) if unscaled => return Ok(Value::Int(v)),
            Raw::Unsigned(v) => self.factor.apply(v as f64) + self.offset,
            Raw::Signed(v) => self.factor.apply(v as f64) + self.offset,
            Raw::Float(v) => self.factor.apply(v) + self.offset,
        };
        if value.is_finite() {
            Ok(Value::Float(value))
        } else {
            Err(DecodeError::NotFinite(value))
        }
    }
}

enum Raw {
    Unsigned(u64),
    Signed(i64),
    Float(f64),
}

/// The point's bytes in big-endian (ABCD) order, whatever order they came in, into `out`
/// (two bytes a word).
fn ordered_into(words: &[u16], order: WordOrder, out: &mut [u8]) {
    let last = words.len().saturating_sub(1);
    for (i, word) in words.iter().enumerate() {
        let slot = if order.reverses_words() { last - i } else { i };
        let [hi, lo] = word.to_be_bytes();
        let pair = if order.swaps_bytes() {
            [lo, hi]
        } else {
            [hi, lo]
        };
        out[2 * slot..2 * slot + 2].copy_from_slice(&pair);
    }
}

/// The first `N` bytes as an array; callers pass exactly the width of their type.
fn take<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes[..N]);
    out
}

/// An f32 widened to the f64 with the same shortest decimal form (0.47f32 → 0.47, not
/// 0.4699999988079071), so that what the device shows is what the dashboard shows.
fn shortest_f64(v: f32) -> f64 {
    if !v.is_finite() {
        return f64::from(v);
    }
    // ryu's shortest digits, parsed as an f64: this runs for every float point of every poll.
    ryu::Buffer::new()
        .format_finite(v)
        .parse()
        .unwrap_or(f64::from(v))
}

/// Text from register bytes: up to the first NUL, trailing spaces trimmed, invalid UTF-8
/// replaced rather than refused (device strings are labels, not data).
fn text_of(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end])
        .trim_end()
        .to_string()
}

#[cfg(test)]
mod tests;
