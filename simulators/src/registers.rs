//! Register images: how a simulated device lays its engineering values into Modbus registers,
//! the way its firmware would (the inverse of what the gateway decodes), and the engineering value
//! a reader of those registers should recover.

use std::collections::{BTreeMap, HashMap};

/// Word order of multi-register values on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// High word first.
    Abcd,
    /// Low word first.
    Cdab,
}

/// Which register table a value lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Table {
    /// FC3.
    Holding,
    /// FC4.
    Input,
}

/// How one value is encoded.
#[derive(Debug, Clone, Copy)]
pub enum Encoding {
    U16,
    I16,
    U32(Order),
    I32(Order),
    /// A float register: the raw value is stored as f32, rounded to `decimals` first.
    F32 {
        order: Order,
        decimals: i32,
    },
    /// Bit `bit` of the integer value `word` (another entry); writes no register of its own.
    Bit {
        word: &'static str,
        bit: u8,
    },
}

/// One entry of a device's register map: `raw = value / (scale × ratio)`.
#[derive(Debug, Clone, Copy)]
pub struct Reg {
    pub name: &'static str,
    pub table: Table,
    pub address: u16,
    pub encoding: Encoding,
    /// Engineering units per raw unit, as the device manual states it (0.01 for "×0.01").
    pub scale: f64,
    /// Instrument-transformer ratio the device leaves to the reader (1 when none).
    pub ratio: f64,
}

impl Reg {
    pub const fn new(name: &'static str, address: u16, encoding: Encoding) -> Reg {
        Reg {
            name,
            table: Table::Holding,
            address,
            encoding,
            scale: 1.0,
            ratio: 1.0,
        }
    }

    /// A float register rounded to `decimals` of its raw value.
    pub const fn float(name: &'static str, address: u16, order: Order, decimals: i32) -> Reg {
        Reg::new(name, address, Encoding::F32 { order, decimals })
    }

    pub const fn scaled(mut self, scale: f64) -> Reg {
        self.scale = scale;
        self
    }

    pub const fn input(mut self) -> Reg {
        self.table = Table::Input;
        self
    }

    pub const fn ratio(mut self, ratio: f64) -> Reg {
        self.ratio = ratio;
        self
    }
}

/// Registers as served, and the engineering values they carry.
#[derive(Debug, Clone, Default)]
pub struct RegisterImage {
    pub words: HashMap<(Table, u16), u16>,
    /// Highest address in use per table, to answer reads past the map with an exception.
    pub top: HashMap<Table, u16>,
    /// What a correct reader recovers from `words`, by register-map name.
    pub truth: BTreeMap<&'static str, f64>,
}

impl RegisterImage {
    /// Encodes `values` (engineering units, by name) through `map`. Missing values encode as 0.
    pub fn encode(map: &[Reg], values: &BTreeMap<&'static str, f64>) -> RegisterImage {
        let mut image = RegisterImage::default();
        for reg in map {
            let value = values.get(reg.name).copied().unwrap_or(0.0);
            let raw = value / (reg.scale * reg.ratio);
            let (words, raw_served): (Vec<u16>, f64) = match reg.encoding {
                Encoding::U16 => {
                    let r = raw.round().clamp(0.0, 65_535.0) as u16;
                    (vec![r], f64::from(r))
                }
                Encoding::I16 => {
                    let r = raw.round().clamp(-32_768.0, 32_767.0) as i16;
                    (vec![r as u16], f64::from(r))
                }
                Encoding::U32(order) => {
                    let r = raw.round().clamp(0.0, f64::from(u32::MAX)) as u32;
                    (split(r.to_be_bytes(), order), f64::from(r))
                }
                Encoding::I32(order) => {
                    let r = raw.round().clamp(f64::from(i32::MIN), f64::from(i32::MAX)) as i32;
                    (split(r.to_be_bytes(), order), f64::from(r))
                }
                Encoding::F32 { order, decimals } => {
                    let p = 10f64.powi(decimals);
                    let r = ((raw * p).round() / p) as f32;
                    let served: f64 = r.to_string().parse().unwrap_or(f64::from(r));
                    (split(r.to_be_bytes(), order), served)
                }
                Encoding::Bit { word, bit } => {
                    let w = values.get(word).copied().unwrap_or(0.0) as u64;
                    image.truth.insert(reg.name, ((w >> bit) & 1) as f64);
                    continue;
                }
            };
            for (i, w) in words.iter().enumerate() {
                let address = reg.address + i as u16;
                image.words.insert((reg.table, address), *w);
                let top = image.top.entry(reg.table).or_insert(0);
                *top = (*top).max(address);
            }
            image
                .truth
                .insert(reg.name, engineering(raw_served, reg.scale, reg.ratio));
        }
        image
    }

    /// Words `start..start+count` of a table; `None` past the device's map (illegal address).
    pub fn read(&self, table: Table, start: u16, count: u16) -> Option<Vec<u16>> {
        let top = *self.top.get(&table)?;
        let end = u32::from(start) + u32::from(count);
        // Devices answer reads a little past their last register with zeros, but not far past.
        if end > u32::from(top) + 17 {
            return None;
        }
        Some(
            (0..count)
                .map(|i| {
                    self.words
                        .get(&(table, start.wrapping_add(i)))
                        .copied()
                        .unwrap_or(0)
                })
                .collect(),
        )
    }
}

/// Raw × scale × ratio, computed as a meter's documentation reads ("÷100" for ×0.01).
fn engineering(raw: f64, scale: f64, ratio: f64) -> f64 {
    let per_raw = if scale < 1.0 {
        let divisor = (1.0 / scale).round();
        raw / divisor
    } else {
        raw * scale
    };
    per_raw * ratio
}

fn split<const N: usize>(bytes: [u8; N], order: Order) -> Vec<u16> {
    let mut words: Vec<u16> = bytes
        .chunks(2)
        .map(|pair| u16::from_be_bytes([pair[0], pair[1]]))
        .collect();
    if order == Order::Cdab {
        words.reverse();
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_floats_word_swapped_and_integers_scaled() {
        let map = [
            Reg::new(
                "p",
                0,
                Encoding::F32 {
                    order: Order::Cdab,
                    decimals: 4,
                },
            ),
            Reg::new("i", 2, Encoding::U16).scaled(0.01).ratio(300.0),
        ];
        let values = BTreeMap::from([("p", 0.47), ("i", 867.0)]);
        let image = RegisterImage::encode(&map, &values);
        // 0.47f32 = 0x3EF0A3D7, low word first.
        assert_eq!(image.read(Table::Holding, 0, 2), Some(vec![0xA3D7, 0x3EF0]));
        assert_eq!(image.read(Table::Holding, 2, 1), Some(vec![289]));
        assert_eq!(image.truth["i"], 867.0);
        assert_eq!(image.read(Table::Holding, 100, 1), None);
        assert_eq!(image.read(Table::Input, 0, 1), None);
    }
}
