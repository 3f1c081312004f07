//! The heating side's meters (DOMAIN.md §3.2, M-Bus / RS485-5): a loop of CJ/T 188-2004 building
//! heat meters (7-byte BCD addresses) and the primary heat meter on M-Bus (primary address 1).
//!
//! Building `n`'s meter sees the substation's secondary supply a little cooler and its return
//! a little warmer the further the building is from the substation (0.05 K and 0.03 K per
//! building: the network's losses, a few per cent); the ten buildings share the circulation
//! flow, the farther ones a little more; its power is flow × ΔT × 1.163 kWh/(m³·K). The totals (heat, volume, operating hours) grow
//! with simulated time, so they only ever rise. The primary meter reads the substation's primary
//! side. Faults on a meter id: `battery_low` (ST bit 2 / M-Bus status bit 2), `low_delta_t`
//! (supply − return = 2 K), and the line faults of every meter.

use meter_frames::cjt188::{self, HeatReading};
use meter_frames::to_bcd_le;

use crate::faults::FaultKind;
use crate::world::World;

/// Where the totals start counting: 2026-01-01 00:00 Beijing time.
const TOTALS_EPOCH_UNIX_S: f64 = 1_767_196_800.0;

use crate::devices::heating::{CIRCULATION_M3H, WATER_KWH_PER_M3K};

/// Buildings on the secondary loop, sharing its circulation.
pub const BUILDINGS: u32 = 10;

/// How a heat meter is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeatMeterAddress {
    Cjt188([u8; 7]),
    Mbus(u8),
}

/// A heat meter: its id (for faults), address and place.
#[derive(Debug, Clone)]
pub struct HeatMeter {
    pub id: String,
    pub address: HeatMeterAddress,
    /// Building number on the secondary loop; 0 for the primary meter.
    pub building: u32,
}

/// `count` building heat meters `heat-01` … at CJ/T 188 addresses 00000000200101,
/// 00000000200201 … (building n).
pub fn building_meters(count: u32) -> Vec<HeatMeter> {
    (1..=count)
        .map(|n| {
            let digits = format!("0000000020{n:02}01");
            let address = meter_frames::address_bytes(&digits, 7).unwrap_or([0; 7].to_vec());
            HeatMeter {
                id: format!("heat-{n:02}"),
                address: HeatMeterAddress::Cjt188(address.try_into().unwrap_or([0; 7])),
                building: n,
            }
        })
        .collect()
}

/// The primary heat meter `heat-primary` at M-Bus primary address 1.
pub fn primary_meter() -> HeatMeter {
    HeatMeter {
        id: "heat-primary".into(),
        address: HeatMeterAddress::Mbus(1),
        building: 0,
    }
}

fn round(value: f64, decimals: i32) -> f64 {
    let factor = 10f64.powi(decimals);
    (value * factor).round() / factor
}

/// What `meter` shows now, at the resolution it sends.
pub fn values(world: &World, meter: &HeatMeter) -> Option<HeatReading> {
    // No substation, no heat: the meters need its temperatures and flow.
    world.register_value("heating-plc", "t1_supply_c")?;
    let get = |name: &str| world.register_value("heating-plc", name).unwrap_or(0.0);
    let hours = ((world.now_unix_s() - TOTALS_EPOCH_UNIX_S) / 3600.0).max(0.0);
    let n = f64::from(meter.building);
    let (supply, mut ret, flow) = if meter.building == 0 {
        (
            get("t1_supply_c"),
            get("t1_return_c"),
            get("flow_primary_m3h"),
        )
    } else {
        // Shares 1 ± 0.04 × (n − 5.5) of an even split: they add up to the circulation.
        let share = 1.0 + 0.04 * (n - (f64::from(BUILDINGS) + 1.0) / 2.0);
        (
            get("t2_supply_c") - 0.05 * n,
            get("t2_return_c") + 0.03 * n,
            CIRCULATION_M3H / f64::from(BUILDINGS) * share,
        )
    };
    if world.has_fault(FaultKind::LowDeltaT, &meter.id) {
        ret = supply - 2.0;
    }
    // The M-Bus meter sends temperatures in 0.1 °C, CJ/T 188 meters in 0.01 °C.
    let decimals = if meter.building == 0 { 1 } else { 2 };
    let (supply, ret) = (round(supply, decimals), round(ret, decimals));
    let flow = round(flow, 3);
    let heat_kwh = round(10_000.0 + 1_000.0 * n + 20.0 * hours, 0);
    Some(HeatReading {
        // The total at the settlement day (the start of the month), here 2 % behind.
        settlement_heat_kwh: (heat_kwh * 0.98).floor(),
        heat_kwh,
        power_kw: round(flow * (supply - ret) * WATER_KWH_PER_M3K, 1),
        flow_m3h: flow,
        volume_m3: round(2_000.0 + 100.0 * n + 2.0 * hours, 2),
        supply_c: supply,
        return_c: ret,
        operating_h: hours.floor(),
        status: if world.has_fault(FaultKind::BatteryLow, &meter.id) {
            0x0004
        } else {
            0
        },
    })
}

/// A CJ/T 188 reply to a 901F read with sequence number `ser`: the current data, or the error
/// reply when `refuse` (error byte 0x01).
pub fn cjt188_reply(values: &HeatReading, address: [u8; 7], ser: u8, refuse: bool) -> Vec<u8> {
    let [di0, di1] = cjt188::CURRENT_DATA.to_le_bytes();
    let mut data = vec![di0, di1, ser];
    if refuse {
        data.push(0x01);
        return encode(address, 0xC1, data);
    }
    let mut field = |value: f64, decimals: i32, len: usize, unit: Option<u8>| {
        let scaled = (value.abs() * 10f64.powi(decimals)).round() as u64;
        data.extend(to_bcd_le(scaled, len));
        data.extend(unit);
    };
    field(values.settlement_heat_kwh, 2, 4, Some(0x05));
    field(values.heat_kwh, 2, 4, Some(0x05));
    field(values.power_kw, 2, 4, Some(0x17));
    field(values.flow_m3h, 4, 4, Some(0x35));
    field(values.volume_m3, 2, 4, Some(0x2C));
    field(values.supply_c, 2, 3, None);
    field(values.return_c, 2, 3, None);
    field(values.operating_h, 0, 3, None);
    // Real time: not read by the gateway.
    data.extend([0x00, 0x00, 0x00, 0x01, 0x01, 0x26, 0x20]);
    data.extend(values.status.to_le_bytes());
    encode(address, 0x81, data)
}

fn encode(address: [u8; 7], control: u8, data: Vec<u8>) -> Vec<u8> {
    cjt188::encode(&cjt188::Frame {
        meter_type: cjt188::HEAT_METER,
        address,
        control,
        data,
    })
}

/// An M-Bus RSP_UD (CI 0x72) with the meter's current data as BCD records.
pub fn mbus_reply(values: &HeatReading, address: u8) -> Vec<u8> {
    let mut body = vec![0x08, address, 0x72];
    // Header: identification 20260001, manufacturer, version, medium 04 (heat), access number,
    // status (bit 2: power low), signature.
    let status = if values.status & 0x0004 != 0 {
        0x04
    } else {
        0x00
    };
    body.extend([
        0x01, 0x00, 0x26, 0x20, 0x2D, 0x2C, 0x01, 0x04, 0x01, status, 0x00, 0x00,
    ]);
    let mut record = |dif: u8, vif: u8, value: f64, decimals: i32| {
        let len = match dif {
            0x0A => 2,
            0x0B => 3,
            _ => 4,
        };
        body.extend([dif, vif]);
        body.extend(to_bcd_le(
            (value.abs() * 10f64.powi(decimals)).round() as u64,
            len,
        ));
    };
    record(0x0C, 0x06, values.heat_kwh, 0); // kWh
    record(0x0C, 0x14, values.volume_m3, 2); // 0.01 m³
    record(0x0C, 0x2D, values.power_kw, 1); // 100 W
    record(0x0C, 0x3B, values.flow_m3h, 3); // 0.001 m³/h
    record(0x0A, 0x5A, values.supply_c, 1); // 0.1 °C
    record(0x0A, 0x5E, values.return_c, 1); // 0.1 °C
    record(0x0B, 0x22, values.operating_h, 0); // hours
    let len = body.len() as u8;
    let mut frame = vec![0x68, len, len, 0x68];
    frame.extend(&body);
    frame.push(meter_frames::checksum(&body));
    frame.push(0x16);
    frame
}
