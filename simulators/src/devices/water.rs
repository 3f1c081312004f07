//! Water devices of the example site (DOMAIN.md §3.3–3.6): the high-zone booster set, the PRV
//! station's pressure transmitters, the break-tank level transmitter and the DMA inlet
//! electromagnetic flowmeter.

use super::{Env, Values};
use crate::faults::FaultKind;
use crate::noise::Noise;
use crate::registers::{Encoding, Order, Reg};

/// Share of the community's households in the two 11-storey blocks (132 of 420).
const HIGH_ZONE_SHARE: f64 = 132.0 / 420.0;
/// Background leakage of the renovated community's mains, m³/h: 1.2 L per household and hour of
/// net night flow and about 8 % of the inflow, inside DOMAIN.md §4.2's targets (3 L, 10 %).
const BACKGROUND_LEAKAGE_M3H: f64 = 0.5;
/// The mains before renovation (the `leaky_network` scenario): DOMAIN.md §4.2's NNF of
/// 1.69 m³/h, 4.0 L per household and hour, a loss rate near 20 %.
const PRE_RENOVATION_LEAKAGE_M3H: f64 = 1.69;
/// Extra inflow while the leak fault (a main burst) is active, m³/h: above W18's 30 % of the
/// inflow even at the morning peak (about 14.6 m³/h).
const LEAK_M3H: f64 = 6.0;
const BOOSTER_SETPOINT_MPA: f64 = 0.47;
const BOOSTER_DESIGN_FLOW_M3H: f64 = 12.0;

const fn f32_cdab(name: &'static str, address: u16) -> Reg {
    Reg::float(name, address, Order::Cdab, 4)
}

const fn bit(name: &'static str, word: &'static str, bit: u8) -> Reg {
    Reg::new(name, 0, Encoding::Bit { word, bit })
}

/// Booster pump controller, unit 1, FC3, CDAB floats.
pub const BOOSTER_MAP: &[Reg] = &[
    f32_cdab("outlet_pressure_mpa", 0x00),
    f32_cdab("inlet_pressure_mpa", 0x02),
    f32_cdab("pressure_setpoint_mpa", 0x04),
    f32_cdab("tank_level_m", 0x06),
    f32_cdab("outlet_flow_m3h", 0x08),
    f32_cdab("total_power_kw", 0x0A),
    Reg::new("pump1_freq_hz", 0x10, Encoding::U16).scaled(0.01),
    Reg::new("pump2_freq_hz", 0x11, Encoding::U16).scaled(0.01),
    Reg::new("pump3_freq_hz", 0x12, Encoding::U16).scaled(0.01),
    Reg::new("pump1_current_a", 0x13, Encoding::U16).scaled(0.01),
    Reg::new("pump2_current_a", 0x14, Encoding::U16).scaled(0.01),
    Reg::new("pump3_current_a", 0x15, Encoding::U16).scaled(0.01),
    Reg::new("run_status", 0x18, Encoding::U16),
    Reg::new("fault_word", 0x19, Encoding::U16),
    Reg::new("vfd1_fault_code", 0x1A, Encoding::U16),
    // Not part of a real cabinet: counts the reads the controller has answered, so that a test
    // can see every poll (a gap in the series is a lost reading).
    Reg::new(super::POLL_COUNTER, 0x1C, Encoding::U32(Order::Cdab)),
    Reg::new("runtime_pump1_h", 0x20, Encoding::U32(Order::Cdab)),
    Reg::new("runtime_pump2_h", 0x22, Encoding::U32(Order::Cdab)),
    Reg::new("runtime_pump3_h", 0x24, Encoding::U32(Order::Cdab)),
    Reg::new("energy_total_kwh", 0x26, Encoding::U32(Order::Cdab)).scaled(0.1),
    bit("pump1_running", "run_status", 0),
    bit("pump2_running", "run_status", 1),
    bit("pump3_running", "run_status", 2),
    bit("auto_mode", "run_status", 4),
    bit("vfd1_fault", "fault_word", 0),
    bit("vfd2_fault", "fault_word", 1),
    bit("vfd3_fault", "fault_word", 2),
    bit("dry_run", "fault_word", 3),
    bit("phase_loss", "fault_word", 7),
    bit("pump_room_flooded", "fault_word", 8),
];

/// Generic RS-485 pressure transmitter: unit code 0 (MPa), 3 decimals.
pub const PRESSURE_TRANSMITTER_MAP: &[Reg] = &[
    Reg::new("slave_address", 0x00, Encoding::U16),
    Reg::new("baud_code", 0x01, Encoding::U16),
    Reg::new("unit_code", 0x02, Encoding::U16),
    Reg::new("decimals", 0x03, Encoding::U16),
    Reg::new("pressure_mpa", 0x04, Encoding::I16).scaled(0.001),
    Reg::new("range_zero", 0x05, Encoding::I16),
    Reg::new("range_full", 0x06, Encoding::I16),
    Reg::new("zero_offset", 0x0C, Encoding::I16),
];

/// The same transmitter family as a level sensor: unit code 7 (mH₂O), 2 decimals.
pub const LEVEL_TRANSMITTER_MAP: &[Reg] = &[
    Reg::new("slave_address", 0x00, Encoding::U16),
    Reg::new("baud_code", 0x01, Encoding::U16),
    Reg::new("unit_code", 0x02, Encoding::U16),
    Reg::new("decimals", 0x03, Encoding::U16),
    Reg::new("level_m", 0x04, Encoding::I16).scaled(0.01),
    Reg::new("range_zero", 0x05, Encoding::I16),
    Reg::new("range_full", 0x06, Encoding::I16),
    Reg::new("zero_offset", 0x0C, Encoding::I16),
];

const fn f32_abcd_input(name: &'static str, address: u16) -> Reg {
    Reg::float(name, address, Order::Abcd, 3).input()
}

/// DMA inlet electromagnetic flowmeter, unit 13, FC4, split integer/fraction totalisers.
pub const FLOWMETER_MAP: &[Reg] = &[
    f32_abcd_input("flow_rate_m3h", 0x00),
    f32_abcd_input("velocity_ms", 0x02),
    Reg::new("fwd_total_int_m3", 0x04, Encoding::U32(Order::Abcd)).input(),
    f32_abcd_input("fwd_total_frac_m3", 0x06),
    Reg::new("rev_total_int_m3", 0x08, Encoding::U32(Order::Abcd)).input(),
    f32_abcd_input("rev_total_frac_m3", 0x0A),
    Reg::new("alarm_word", 0x0C, Encoding::U16).input(),
    bit("empty_pipe", "alarm_word", 0),
];

/// Which pressure a PRV-station transmitter measures.
#[derive(Debug, Clone, Copy)]
pub enum PressurePoint {
    /// Municipal side, 0.40 MPa with a diurnal swing.
    PrvInlet { unit: u8 },
    /// Regulated side: 0.30 MPa by day, 0.26 MPa 00:00–05:00 (pressure management).
    PrvOutlet { unit: u8 },
}

fn accumulate(values: &mut Values, name: &'static str, initial: f64, increment: f64) {
    let total = values.get(name).copied().unwrap_or(initial) + increment;
    values.insert(name, total);
}

pub fn booster(values: &mut Values, env: &Env, noise: &mut Noise) {
    let flow = (env.household_use_m3h * HIGH_ZONE_SHARE + noise.gauss(0.05)).max(0.0);
    let tripped = env.has(FaultKind::PumpTrip);
    let no_supply = env.has(FaultKind::PhaseLoss);
    let flooded = env.has(FaultKind::PumpRoomFlooding);
    let sleeping = flow < 1.0 && !tripped;
    let frequency = if sleeping {
        0.0
    } else {
        (25.0 + 25.0 * (flow / BOOSTER_DESIGN_FLOW_M3H).sqrt()).min(50.0)
    };
    let running = if no_supply {
        [false; 3]
    } else {
        [
            !sleeping && !tripped,
            !sleeping && flow > 0.8 * BOOSTER_DESIGN_FLOW_M3H,
            tripped,
        ]
    };
    let names = [
        (
            "pump1_freq_hz",
            "pump1_current_a",
            "runtime_pump1_h",
            12_034.0,
        ),
        (
            "pump2_freq_hz",
            "pump2_current_a",
            "runtime_pump2_h",
            11_890.0,
        ),
        (
            "pump3_freq_hz",
            "pump3_current_a",
            "runtime_pump3_h",
            2_310.0,
        ),
    ];
    let mut power = 0.0;
    let mut run_status = 1 << 4; // auto mode
    for (i, (freq_name, current_name, runtime_name, runtime0)) in names.into_iter().enumerate() {
        let f = if running[i] {
            frequency + noise.gauss(0.05)
        } else {
            0.0
        };
        let load = f / 50.0;
        values.insert(freq_name, f);
        values.insert(
            current_name,
            if running[i] {
                2.0 + 9.0 * load * load
            } else {
                0.0
            },
        );
        if running[i] {
            power += 5.5 * load.powi(3);
            run_status |= 1 << i;
        }
        accumulate(
            values,
            runtime_name,
            runtime0,
            if running[i] { env.dt_h } else { 0.0 },
        );
    }
    if sleeping {
        run_status |= 1 << 6;
    }
    let mut fault_word = 0u32;
    if tripped {
        fault_word |= 1;
    }
    if no_supply {
        fault_word |= 1 << 7;
    }
    if flooded {
        fault_word |= 1 << 8;
    }
    let outlet = if no_supply {
        0.20
    } else if tripped {
        BOOSTER_SETPOINT_MPA - 0.03
    } else if sleeping {
        BOOSTER_SETPOINT_MPA - 0.005
    } else {
        BOOSTER_SETPOINT_MPA
    };
    let level = 2.2 + noise.gauss(0.01);
    values.insert("outlet_pressure_mpa", outlet + noise.gauss(0.002));
    values.insert("inlet_pressure_mpa", level * 0.0098);
    values.insert("pressure_setpoint_mpa", BOOSTER_SETPOINT_MPA);
    values.insert("tank_level_m", level);
    values.insert("outlet_flow_m3h", flow);
    values.insert("total_power_kw", power);
    values.insert("run_status", f64::from(run_status));
    values.insert("fault_word", f64::from(fault_word));
    values.insert("vfd1_fault_code", if tripped { 7.0 } else { 0.0 });
    accumulate(values, "energy_total_kwh", 183_420.5, power * env.dt_h);
}

fn transmitter_settings(values: &mut Values, unit: u8, unit_code: f64, decimals: f64) {
    values.insert("slave_address", f64::from(unit));
    values.insert("baud_code", 3.0); // 9600
    values.insert("unit_code", unit_code);
    values.insert("decimals", decimals);
    values.insert("range_zero", 0.0);
    values.insert("zero_offset", 0.0);
}

pub fn pressure(point: &PressurePoint, values: &mut Values, env: &Env, noise: &mut Noise) {
    let (unit, pressure) = match *point {
        PressurePoint::PrvInlet { unit } => {
            let demand_swing = (super::water_use_shape(env.hour) - 1.0) / 1.5;
            (unit, 0.40 - 0.02 * demand_swing + noise.gauss(0.003))
        }
        PressurePoint::PrvOutlet { unit } => {
            // Pressure management: 0.28 MPa 00:00–05:00, the least a 6-storey walk-up needs
            // at ground level (DOMAIN.md §3.1), 0.30 MPa by day.
            let setpoint = if env.hour < 5.0 { 0.28 } else { 0.30 };
            let leak_drop = if env.has(FaultKind::Leak) { 0.03 } else { 0.0 };
            (unit, setpoint - leak_drop + noise.gauss(0.002))
        }
    };
    transmitter_settings(values, unit, 0.0, 3.0);
    values.insert("range_full", 1000.0);
    values.insert("pressure_mpa", pressure);
}

pub fn level(values: &mut Values, _env: &Env, noise: &mut Noise) {
    transmitter_settings(values, 2, 7.0, 2.0);
    values.insert("range_full", 500.0);
    values.insert("level_m", 2.15 + noise.gauss(0.01));
}

/// The DMA flowmeter's record of the household use since the start (not a register): what the
/// customers' water meters add up to.
pub const METERED_USE: &str = "metered_use_m3";

pub fn flowmeter(values: &mut Values, env: &Env, noise: &mut Noise) {
    let leak = if env.has(FaultKind::Leak) {
        LEAK_M3H
    } else {
        0.0
    };
    let background = if env.has(FaultKind::LeakyNetwork) {
        PRE_RENOVATION_LEAKAGE_M3H
    } else {
        BACKGROUND_LEAKAGE_M3H
    };
    let flow = (env.household_use_m3h + background + leak + noise.gauss(0.05)).max(0.0);
    // DN150: bore area π × 0.075² m².
    let area_m2 = std::f64::consts::PI * 0.075 * 0.075;
    values.insert("flow_rate_m3h", flow);
    values.insert("velocity_ms", flow / 3600.0 / area_m2);
    let total = values.get("fwd_total_m3").copied().unwrap_or(52_341.27) + flow * env.dt_h;
    values.insert("fwd_total_m3", total);
    // What the customers' meters register: the household use alone (not the leakage).
    let metered =
        values.get(METERED_USE).copied().unwrap_or(0.0) + env.household_use_m3h * env.dt_h;
    values.insert(METERED_USE, metered);
    values.insert("fwd_total_int_m3", total.floor());
    values.insert("fwd_total_frac_m3", total - total.floor());
    values.insert("rev_total_int_m3", 0.0);
    values.insert("rev_total_frac_m3", 0.0);
    values.insert("alarm_word", 0.0);
}
