//! A stairwell of DL/T 645-2007 single-phase household meters (DOMAIN.md §3.2, RS485-4).
//!
//! Each meter answers reads of the identifiers it has: voltage and current of phase A, active
//! power, power factor, frequency, the energy totals and status word 1. A single-phase meter has
//! no phases B and C: reads of them get the error reply "no data" (0x02), as real meters do.
//! The voltage follows the LV feeder (`feeder-1`), a little lower per floor; the load follows
//! the residential load shape. `battery_low` on a meter sets status word 1's clock-battery bit.

use meter_frames::dlt645::{self, Frame};

use crate::faults::FaultKind;
use crate::world::World;

/// One household meter: its id (for faults) and its 12-digit address.
#[derive(Debug, Clone)]
pub struct HouseholdMeter {
    pub id: String,
    pub address: [u8; 6],
    /// Floor of the flat (the voltage drops a little per floor up the riser).
    pub floor: u32,
}

/// `count` meters `meter-01` … at addresses 000000110101, 000000110201 … (building 11, unit 1,
/// one flat per floor).
pub fn stairwell(count: u32) -> Vec<HouseholdMeter> {
    (1..=count)
        .map(|floor| {
            let digits = format!("0000001101{floor:02}");
            let address = meter_frames::address_bytes(&digits, 6).unwrap_or([0; 6].to_vec());
            HouseholdMeter {
                id: format!("meter-{floor:02}"),
                address: address.try_into().unwrap_or([0; 6]),
                floor,
            }
        })
        .collect()
}

/// Error byte of DL/T 645 error replies: no such data.
pub const NO_DATA: u8 = 0x02;

/// The value a meter reports for `di`, or `None` when it has no such data.
pub fn value(world: &World, meter: &HouseholdMeter, di: u32) -> Option<f64> {
    // The stairwell hangs off feeder 1: no feeder, no readings.
    let feeder = |name: &str| world.register_value("feeder-1", name);
    let ua = feeder("ua_v")? - 0.3 * f64::from(meter.floor);
    let ia = feeder("ia_a").unwrap_or(300.0) / 120.0 + 0.05 * f64::from(meter.floor);
    let pf = 0.95;
    let p_kw = ua * ia * pf / 1000.0;
    Some(match di {
        0x0201_0100 => (ua * 10.0).round() / 10.0,
        0x0202_0100 => (ia * 1000.0).round() / 1000.0,
        0x0203_0000 => (p_kw * 10_000.0).round() / 10_000.0,
        0x0206_0000 => pf,
        0x0280_0002 => feeder("frequency_hz").unwrap_or(50.0),
        0x0000_0000 | 0x0001_0000 => 8_000.0 + 100.0 * f64::from(meter.floor),
        0x0002_0000 => 0.0,
        // Status word 1, bit 2: clock battery under-voltage.
        0x0400_0501 => {
            if world.has_fault(FaultKind::BatteryLow, &meter.id) {
                4.0
            } else {
                0.0
            }
        }
        _ => return None,
    })
}

/// The reply frame to a read of `di` (normal or error).
pub fn reply(world: &World, meter: &HouseholdMeter, di: u32) -> Frame {
    let format = dlt645::data_id(di);
    match (value(world, meter, di), format) {
        (Some(v), Some(format)) => {
            let mut data = di.to_le_bytes().to_vec();
            data.extend(dlt645::encode_value(v, format));
            Frame {
                address: meter.address,
                control: 0x91,
                data,
            }
        }
        _ => Frame {
            address: meter.address,
            control: 0xD1,
            data: vec![NO_DATA],
        },
    }
}

/// The error reply "other error" (0x04) a meter gives under the `exception` fault.
pub fn refusal(meter: &HouseholdMeter) -> Frame {
    Frame {
        address: meter.address,
        control: 0xD1,
        data: vec![0x04],
    }
}
