//! The low zone's building water meters (CJ/T 188-2004, type 0x10, 7-byte BCD addresses): the
//! customer side of the water balance (W17). Together they register exactly the community's
//! household use, which the DMA flowmeter sees plus the mains' background leakage and any
//! burst; so the balance's loss is the leakage. `battery_low` on a meter sets ST bit 2.

use meter_frames::{cjt188, to_bcd_le};

use crate::devices::METERED_USE;
use crate::faults::FaultKind;
use crate::world::World;

/// A building water meter: its id (for faults), address and share of the household use.
#[derive(Debug, Clone)]
pub struct WaterMeter {
    pub id: String,
    pub address: [u8; 7],
    pub share: f64,
    /// Its reading when the simulation started, m³.
    pub base_m3: f64,
}

/// Four building meters `water-01` … at addresses 00000000100101 … whose shares add up to 1.
pub fn building_water_meters() -> Vec<WaterMeter> {
    [0.30, 0.25, 0.25, 0.20]
        .into_iter()
        .enumerate()
        .map(|(i, share)| {
            let n = i + 1;
            let digits = format!("0000000010{n:02}01");
            let address = meter_frames::address_bytes(&digits, 7).unwrap_or([0; 7].to_vec());
            WaterMeter {
                id: format!("water-{n:02}"),
                address: address.try_into().unwrap_or([0; 7]),
                share,
                base_m3: 10_000.0 * n as f64,
            }
        })
        .collect()
}

/// The meter's reading (m³, at its 0.01 m³ resolution) and status word now.
pub fn values(world: &World, meter: &WaterMeter) -> Option<(f64, u16)> {
    let used = world.value("dma-flow", METERED_USE)?;
    let volume = ((meter.base_m3 + meter.share * used) * 100.0).floor() / 100.0;
    let status = if world.has_fault(FaultKind::BatteryLow, &meter.id) {
        0x0004
    } else {
        0
    };
    Some((volume, status))
}

/// The reply to a 901F read with sequence number `ser`: the current data, or the error reply
/// when `refuse`.
pub fn reply(world: &World, meter: &WaterMeter, ser: u8, refuse: bool) -> Option<Vec<u8>> {
    let [di0, di1] = cjt188::CURRENT_DATA.to_le_bytes();
    let mut data = vec![di0, di1, ser];
    let control = if refuse {
        data.push(0x01);
        0xC1
    } else {
        let (volume, status) = values(world, meter)?;
        let bcd = |v: f64| to_bcd_le((v * 100.0).round() as u64, 4);
        data.extend(bcd(volume));
        data.push(0x2C);
        // Settlement day: the reading at the start of the month, here 3 % behind.
        data.extend(bcd((volume * 0.97).floor()));
        data.push(0x2C);
        data.extend([0x00, 0x00, 0x00, 0x01, 0x01, 0x26, 0x20]);
        data.extend(status.to_le_bytes());
        0x81
    };
    Some(cjt188::encode(&cjt188::Frame {
        meter_type: cjt188::COLD_WATER_METER,
        address: meter.address,
        control,
        data,
    }))
}
