//! The heating substation PLC (DOMAIN.md §3.8.3): Modbus TCP, ABCD floats, secondary supply on a
//! weather curve, make-up water as the leak signal.
//!
//! The heat budget balances: constant circulation (120 m³/h) with the secondary ΔT at 25 K × load
//! (75/50 °C at the design −20 °C) carries 120 × 25 × 1.163 = 3.49 MW at design; the primary side
//! delivers that and 1 % lost in the exchangers; the building meters share the circulation and
//! see the supply a little cooler and the return a little warmer than the substation (the
//! network's few per cent of losses, [`crate::meters::heat`]).

use super::{Env, Values};
use crate::faults::FaultKind;
use crate::noise::Noise;
use crate::registers::{Encoding, Order, Reg};

/// Secondary circulation flow, m³/h (constant: quality regulation).
pub const CIRCULATION_M3H: f64 = 120.0;
/// Secondary ΔT at design load, K (75/50 °C).
const DESIGN_DELTA_T_K: f64 = 25.0;
/// Heat carried per m³ of water and kelvin, kWh.
pub const WATER_KWH_PER_M3K: f64 = 1.163;
/// Share of the primary heat lost in the plate heat exchangers.
const EXCHANGER_LOSS: f64 = 0.01;
/// Design outdoor temperature for the weather curve, °C.
const DESIGN_OUTDOOR_C: f64 = -20.0;

const fn float(name: &'static str, address: u16) -> Reg {
    Reg::float(name, address, Order::Abcd, 3)
}

pub const PLC_MAP: &[Reg] = &[
    float("t1_supply_c", 0),
    float("t1_return_c", 2),
    float("p1_supply_mpa", 4),
    float("p1_return_mpa", 6),
    float("t2_supply_c", 8),
    float("t2_return_c", 10),
    float("p2_supply_mpa", 12),
    float("p2_return_mpa", 14),
    float("flow_primary_m3h", 16),
    float("heat_power_kw", 18),
    float("valve_position_pct", 20),
    float("outdoor_temp_c", 22),
    float("makeup_flow_m3h", 24),
    float("makeup_total_m3", 26),
    float("softened_tank_level_m", 28),
    Reg::new("circ_pump1_freq_hz", 30, Encoding::U16).scaled(0.01),
    Reg::new("circ_pump2_freq_hz", 31, Encoding::U16).scaled(0.01),
    Reg::new("status", 32, Encoding::U16),
    float("t2_supply_setpoint_c", 40),
];

pub fn plc(values: &mut Values, env: &Env, noise: &mut Noise) {
    let load = ((18.0 - env.outdoor_c) / (18.0 - DESIGN_OUTDOOR_C)).clamp(0.0, 1.0);
    let setpoint = 20.0 + 55.0 * load.powf(1.0 / 1.3);
    let t2_supply = setpoint + noise.gauss(0.2);
    let t1_supply = 65.0 + 45.0 * load + noise.gauss(0.3);
    let t1_return = 40.0 + 20.0 * load + noise.gauss(0.3);
    let delta_t2 = DESIGN_DELTA_T_K * load;
    let secondary_kw = CIRCULATION_M3H * delta_t2 * WATER_KWH_PER_M3K;
    let heat_kw = (secondary_kw * (1.0 + EXCHANGER_LOSS) + noise.gauss(10.0)).max(0.0);
    let surge = env.has(FaultKind::HeatingMakeupSurge);
    let makeup = if surge { 0.03 } else { 0.003 } * CIRCULATION_M3H + noise.gauss(0.02);
    let makeup = makeup.max(0.0);
    let p2_return = 0.36 - if surge { 0.02 } else { 0.0 } + noise.gauss(0.002);
    values.insert("t1_supply_c", t1_supply);
    values.insert("t1_return_c", t1_return);
    values.insert("p1_supply_mpa", 0.85 + noise.gauss(0.003));
    values.insert("p1_return_mpa", 0.55 + noise.gauss(0.003));
    values.insert("t2_supply_c", t2_supply);
    values.insert("t2_return_c", t2_supply - delta_t2 + noise.gauss(0.2));
    values.insert("p2_supply_mpa", p2_return + 0.14);
    values.insert("p2_return_mpa", p2_return);
    // kW / (4.186 kJ/(kg·K) × ΔT) = kg/s; × 3.6 = m³/h of water.
    values.insert(
        "flow_primary_m3h",
        heat_kw / (4.186 * (t1_supply - t1_return).max(1.0)) * 3.6,
    );
    values.insert("heat_power_kw", heat_kw);
    values.insert("valve_position_pct", 30.0 + 60.0 * load);
    values.insert("outdoor_temp_c", env.outdoor_c);
    values.insert("makeup_flow_m3h", makeup);
    let total = values.get("makeup_total_m3").copied().unwrap_or(1_284.5) + makeup * env.dt_h;
    values.insert("makeup_total_m3", total);
    values.insert("softened_tank_level_m", 1.5 + noise.gauss(0.005));
    values.insert("circ_pump1_freq_hz", 42.0 + noise.gauss(0.05));
    values.insert("circ_pump2_freq_hz", 0.0);
    // bit0 circulation pump 1, bit2 make-up pump 1, bit4 auto, bit9 low pressure.
    let mut status = 1 | (1 << 2) | (1 << 4);
    if p2_return < 0.35 {
        status |= 1 << 9;
    }
    values.insert("status", f64::from(status));
    values.insert("t2_supply_setpoint_c", setpoint);
}
