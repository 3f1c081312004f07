//! Device profiles: register maps. A profile names the device kind (the measurement) and lists its
//! points with function code, 0-based PDU address, data type, word order, scale and offset.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::named;
use super::ConfigDuration;

/// A device profile file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// The device kind, used as the InfluxDB measurement (`pump_station`, `power_meter` …).
    pub kind: String,
    #[serde(default)]
    pub description: String,
    /// Added to every point address; for maps that document 1-based or shifted addresses.
    #[serde(default)]
    pub address_offset: i32,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    #[serde(rename = "point")]
    pub points: Vec<PointConfig>,
}

/// Modbus read functions. Writing is out of scope: the gateway is read-only toward devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Function {
    ReadCoils,
    ReadDiscreteInputs,
    ReadHoldingRegisters,
    ReadInputRegisters,
}

impl Function {
    pub fn from_code(code: u8) -> Option<Function> {
        match code {
            1 => Some(Function::ReadCoils),
            2 => Some(Function::ReadDiscreteInputs),
            3 => Some(Function::ReadHoldingRegisters),
            4 => Some(Function::ReadInputRegisters),
            _ => None,
        }
    }

    pub fn code(self) -> u8 {
        match self {
            Function::ReadCoils => 1,
            Function::ReadDiscreteInputs => 2,
            Function::ReadHoldingRegisters => 3,
            Function::ReadInputRegisters => 4,
        }
    }

    /// Whether the function reads single bits rather than 16-bit registers.
    pub fn reads_bits(self) -> bool {
        matches!(self, Function::ReadCoils | Function::ReadDiscreteInputs)
    }

    /// Protocol limit on the quantity of one read.
    pub fn max_quantity(self) -> u16 {
        if self.reads_bits() {
            2000
        } else {
            125
        }
    }
}

/// Data type of a point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PointType {
    /// A coil or discrete input (FC 1/2).
    Bool,
    /// Bit `bit` of a register.
    Bit,
    U16,
    I16,
    U32,
    I32,
    U64,
    I64,
    F32,
    F64,
    /// `length` registers of text, two bytes each.
    String,
}

const POINT_TYPES: &[(&str, PointType)] = &[
    ("bool", PointType::Bool),
    ("bit", PointType::Bit),
    ("u16", PointType::U16),
    ("i16", PointType::I16),
    ("u32", PointType::U32),
    ("i32", PointType::I32),
    ("u64", PointType::U64),
    ("i64", PointType::I64),
    ("f32", PointType::F32),
    ("f64", PointType::F64),
    ("string", PointType::String),
];
named::deserialize_by_name!(PointType, POINT_TYPES);

impl PointType {
    /// Registers (or bits, for `Bool`) one value occupies.
    pub fn width(self, length: Option<u16>) -> u16 {
        match self {
            PointType::Bool | PointType::Bit | PointType::U16 | PointType::I16 => 1,
            PointType::U32 | PointType::I32 | PointType::F32 => 2,
            PointType::U64 | PointType::I64 | PointType::F64 => 4,
            PointType::String => length.unwrap_or(1),
        }
    }

    pub fn is_numeric(self) -> bool {
        !matches!(self, PointType::Bool | PointType::Bit | PointType::String)
    }
}

/// Byte and word order of multi-byte values, named by where bytes A (most significant) to D
/// (least) of a 32-bit value land on the wire. Applies by analogy to 16- and 64-bit values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WordOrder {
    /// Big-endian, high word first: the Modbus default.
    #[default]
    ABCD,
    /// Word-swapped, low word first: common on Chinese PLCs and meters.
    CDAB,
    /// Bytes swapped inside each word, high word first.
    BADC,
    /// Fully little-endian.
    DCBA,
}

const WORD_ORDERS: &[(&str, WordOrder)] = &[
    ("ABCD", WordOrder::ABCD),
    ("CDAB", WordOrder::CDAB),
    ("BADC", WordOrder::BADC),
    ("DCBA", WordOrder::DCBA),
];
named::deserialize_by_name!(WordOrder, WORD_ORDERS);

impl WordOrder {
    pub fn swaps_bytes(self) -> bool {
        matches!(self, WordOrder::BADC | WordOrder::DCBA)
    }

    pub fn reverses_words(self) -> bool {
        matches!(self, WordOrder::CDAB | WordOrder::DCBA)
    }
}

/// Instrument-transformer ratio a raw secondary-side value is multiplied by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ratio {
    /// Currents: × CT ratio.
    Ct,
    /// Voltages: × PT ratio.
    Pt,
    /// Powers and energies: × PT × CT.
    PtCt,
}

const RATIOS: &[(&str, Ratio)] = &[("ct", Ratio::Ct), ("pt", Ratio::Pt), ("pt_ct", Ratio::PtCt)];
named::deserialize_by_name!(Ratio, RATIOS);

/// One point of a register map.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PointConfig {
    /// Field name in the output, with its unit: `outlet_pressure_mpa`.
    pub name: String,
    /// Engineering unit, for people (status page, reports).
    #[serde(default)]
    pub unit: Option<String>,
    /// Modbus function code 1–4.
    pub fc: u8,
    /// 0-based PDU address as documented by the map (before `address_offset`).
    pub address: u16,
    #[serde(rename = "type")]
    pub kind: PointType,
    #[serde(default)]
    pub order: WordOrder,
    /// Bit number 0–15 for `type = "bit"`.
    #[serde(default)]
    pub bit: Option<u8>,
    /// Register count for `type = "string"`.
    #[serde(default)]
    pub length: Option<u16>,
    #[serde(default = "default_scale")]
    pub scale: f64,
    #[serde(default)]
    pub offset: f64,
    #[serde(default)]
    pub ratio: Option<Ratio>,
    /// Poll this point less often than the device: a whole multiple of the device interval.
    #[serde(default)]
    pub interval: Option<ConfigDuration>,
}

fn default_scale() -> f64 {
    1.0
}
