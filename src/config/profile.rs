//! Device profiles. A profile names the device kind (the measurement) and its protocol. A Modbus
//! profile lists its points with function code, 0-based PDU address, data type, word order,
//! scale and offset; a meter profile (DL/T 645, CJ/T 188, M-Bus) lists its readings.

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
    /// How the device is read (Modbus unless the profile says otherwise).
    #[serde(default)]
    pub protocol: WireProtocol,
    /// CJ/T 188: the meter type the requests address (`heat` or `water`).
    #[serde(default)]
    pub meter_type: Option<MeterType>,
    /// Modbus register map.
    #[serde(rename = "point", default)]
    pub points: Vec<PointConfig>,
    /// Meter readings (DL/T 645, CJ/T 188, M-Bus).
    #[serde(rename = "reading", default)]
    pub readings: Vec<ReadingConfig>,
}

impl Profile {
    /// The names of the fields the device's samples carry.
    pub fn field_names(&self) -> impl Iterator<Item = &str> {
        let points = self.points.iter().map(|p| p.name.as_str());
        points.chain(self.readings.iter().map(|r| r.name.as_str()))
    }

    pub fn has_field(&self, name: &str) -> bool {
        self.field_names().any(|f| f == name)
    }

    /// Each field's label and unit for people, as (name, label, unit).
    pub fn field_words(&self) -> impl Iterator<Item = (&str, Option<&str>, Option<&str>)> {
        let points = self
            .points
            .iter()
            .map(|p| (p.name.as_str(), p.label.as_deref(), p.unit.as_deref()));
        points.chain(
            self.readings
                .iter()
                .map(|r| (r.name.as_str(), r.label.as_deref(), r.unit.as_deref())),
        )
    }
}

/// The protocol a device speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum WireProtocol {
    #[default]
    Modbus,
    /// DL/T 645-2007 electricity meters.
    Dlt645,
    /// CJ/T 188-2004 heat and water meters.
    Cjt188,
    /// EN 13757-3 M-Bus (primary address).
    Mbus,
}

const WIRE_PROTOCOLS: &[(&str, WireProtocol)] = &[
    ("modbus", WireProtocol::Modbus),
    ("dlt645", WireProtocol::Dlt645),
    ("cjt188", WireProtocol::Cjt188),
    ("mbus", WireProtocol::Mbus),
];
named::deserialize_by_name!(WireProtocol, WIRE_PROTOCOLS);

impl WireProtocol {
    pub fn name(self) -> &'static str {
        named::name_of(WIRE_PROTOCOLS, self)
    }

    /// A device's `meter_address` as this protocol puts it on the wire, or what is wrong with it.
    pub fn meter_address(self, text: &str) -> Result<MeterAddress, String> {
        let bcd = |len: usize| {
            meter_frames::address_bytes(text, len)
                .ok_or_else(|| format!("{text:?} (expected {} decimal digits)", 2 * len))
        };
        match self {
            WireProtocol::Modbus => Err("only meters have a meter_address (expected unit)".into()),
            WireProtocol::Dlt645 => {
                bcd(6).map(|b| MeterAddress::Dlt645(b.try_into().unwrap_or_default()))
            }
            WireProtocol::Cjt188 => {
                bcd(7).map(|b| MeterAddress::Cjt188(b.try_into().unwrap_or_default()))
            }
            WireProtocol::Mbus => match text.parse::<u8>() {
                Ok(a @ 1..=250) => Ok(MeterAddress::Mbus(a)),
                _ => Err(format!(
                    "{text:?} (expected an M-Bus primary address 1–250)"
                )),
            },
        }
    }
}

/// A meter's address on the wire (BCD bytes least significant first, or the M-Bus primary
/// address).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MeterAddress {
    Dlt645([u8; 6]),
    Cjt188([u8; 7]),
    Mbus(u8),
}

/// CJ/T 188 meter types (the T byte of a frame).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MeterType {
    Heat,
    Water,
}

const METER_TYPES: &[(&str, MeterType)] = &[("heat", MeterType::Heat), ("water", MeterType::Water)];
named::deserialize_by_name!(MeterType, METER_TYPES);

/// What a CJ/T 188 or M-Bus reading takes from the meter's current data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MeterItem {
    /// Accumulated heat, kWh.
    Heat,
    /// Heat at the last settlement day, kWh (CJ/T 188 heat meters).
    SettlementHeat,
    /// Heat power, kW.
    Power,
    /// Flow, m³/h.
    Flow,
    /// Accumulated volume, m³.
    Volume,
    /// Volume at the last settlement day, m³ (CJ/T 188 water meters).
    SettlementVolume,
    /// Supply (flow) temperature, °C.
    SupplyTemperature,
    /// Return temperature, °C.
    ReturnTemperature,
    /// Supply minus return, K (M-Bus meters that send it).
    TemperatureDifference,
    /// Operating hours.
    OperatingHours,
    /// The status word ST (CJ/T 188) or the header's status byte (M-Bus): all of it, or one
    /// `bit` as 0/1.
    Status,
}

const METER_ITEMS: &[(&str, MeterItem)] = &[
    ("heat", MeterItem::Heat),
    ("settlement_heat", MeterItem::SettlementHeat),
    ("power", MeterItem::Power),
    ("flow", MeterItem::Flow),
    ("volume", MeterItem::Volume),
    ("settlement_volume", MeterItem::SettlementVolume),
    ("supply_temperature", MeterItem::SupplyTemperature),
    ("return_temperature", MeterItem::ReturnTemperature),
    ("temperature_difference", MeterItem::TemperatureDifference),
    ("operating_hours", MeterItem::OperatingHours),
    ("status", MeterItem::Status),
];
named::deserialize_by_name!(MeterItem, METER_ITEMS);

impl MeterItem {
    pub fn name(self) -> &'static str {
        named::name_of(METER_ITEMS, self)
    }
}

/// One reading of a meter profile: a DL/T 645 data identifier, or an item of a CJ/T 188 or
/// M-Bus meter's current data. Value = decoded × scale.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadingConfig {
    /// Field name in the output, with its unit: `ua_v`, `supply_c`.
    pub name: String,
    #[serde(default)]
    pub unit: Option<String>,
    /// What people call the value (`A相电压`), in alarm messages; default: the name.
    #[serde(default)]
    pub label: Option<String>,
    /// DL/T 645: the data identifier (`0x02010100` phase A voltage).
    #[serde(default)]
    pub di: Option<u32>,
    /// CJ/T 188 and M-Bus: the item.
    #[serde(default)]
    pub item: Option<MeterItem>,
    /// With `item = "status"`: this bit (0–15, bit 0 of the first ST byte) as 0/1. Vendors
    /// place battery-low, fault and valve bits differently; the profile says where.
    #[serde(default)]
    pub bit: Option<u8>,
    #[serde(default = "default_scale")]
    pub scale: f64,
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
    /// Engineering unit, for people (status page, reports, alarm messages).
    #[serde(default)]
    pub unit: Option<String>,
    /// What people call the value (`出口压力`), in alarm messages; default: the name.
    #[serde(default)]
    pub label: Option<String>,
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
