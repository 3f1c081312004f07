//! Substation devices (DOMAIN.md §3.7): Acrel-style integer meters that serve secondary-side
//! values (the reader applies PT and CT ratios), CHINT DTSU666 float meters that serve primary
//! values, and dry-type transformer temperature controllers.

use super::{Env, Values};
use crate::faults::FaultKind;
use crate::noise::Noise;
use crate::registers::{Encoding, Order, Reg};

/// What a meter measures: a feed of a given nominal phase voltage and rated current.
#[derive(Debug, Clone, Copy)]
pub struct Feed {
    /// PT ratio (1 on LV).
    pub pt: f64,
    /// CT ratio (300 for 1500/5 A).
    pub ct: f64,
    /// Nominal phase voltage, V.
    pub nominal_phase_v: f64,
    /// Current at full load, A.
    pub rated_a: f64,
    /// Share of the community load this feed carries at full transformer load.
    pub load_share: f64,
    /// Whether this feed is on TX1's LV side (where the phase-loss fault happens).
    pub on_tx1_lv: bool,
}

/// Acrel DTSD1352-style integer map; ratios belong to the reader, so they are part of the map.
pub fn acrel_map(feed: &Feed) -> Vec<Reg> {
    let (pt, ct) = (feed.pt, feed.ct);
    let i32r = |name, address| Reg::new(name, address, Encoding::I32(Order::Abcd));
    vec![
        i32r("import_energy_kwh", 0x0A).scaled(0.01).ratio(pt * ct),
        i32r("export_energy_kwh", 0x14).scaled(0.01).ratio(pt * ct),
        Reg::new("ua_v", 0x61, Encoding::U16).scaled(0.1).ratio(pt),
        Reg::new("ub_v", 0x62, Encoding::U16).scaled(0.1).ratio(pt),
        Reg::new("uc_v", 0x63, Encoding::U16).scaled(0.1).ratio(pt),
        Reg::new("ia_a", 0x64, Encoding::U16).scaled(0.01).ratio(ct),
        Reg::new("ib_a", 0x65, Encoding::U16).scaled(0.01).ratio(ct),
        Reg::new("ic_a", 0x66, Encoding::U16).scaled(0.01).ratio(ct),
        Reg::new("frequency_hz", 0x77, Encoding::U16).scaled(0.01),
        Reg::new("uab_v", 0x78, Encoding::U16).scaled(0.1).ratio(pt),
        Reg::new("ubc_v", 0x79, Encoding::U16).scaled(0.1).ratio(pt),
        Reg::new("uca_v", 0x7A, Encoding::U16).scaled(0.1).ratio(pt),
        i32r("pa_kw", 0x164).scaled(0.001).ratio(pt * ct),
        i32r("pb_kw", 0x166).scaled(0.001).ratio(pt * ct),
        i32r("pc_kw", 0x168).scaled(0.001).ratio(pt * ct),
        i32r("p_kw", 0x16A).scaled(0.001).ratio(pt * ct),
        i32r("q_kvar", 0x172).scaled(0.001).ratio(pt * ct),
        i32r("s_kva", 0x17A).scaled(0.001).ratio(pt * ct),
        Reg::new("pf", 0x17F, Encoding::I16).scaled(0.001),
    ]
}

const fn float(name: &'static str, address: u16, scale: f64) -> Reg {
    Reg::float(name, address, Order::Abcd, 0).scaled(scale)
}

/// CHINT DTSU666: ABCD floats in 0.1 V, 0.001 A, 0.1 W units; energies in kWh.
pub const DTSU666_MAP: &[Reg] = &[
    Reg::float("import_energy_kwh", 0x101E, Order::Abcd, 2),
    Reg::float("export_energy_kwh", 0x1028, Order::Abcd, 2),
    float("uab_v", 0x2000, 0.1),
    float("ubc_v", 0x2002, 0.1),
    float("uca_v", 0x2004, 0.1),
    float("ua_v", 0x2006, 0.1),
    float("ub_v", 0x2008, 0.1),
    float("uc_v", 0x200A, 0.1),
    float("ia_a", 0x200C, 0.001),
    float("ib_a", 0x200E, 0.001),
    float("ic_a", 0x2010, 0.001),
    float("p_kw", 0x2012, 0.0001),
    float("pa_kw", 0x2014, 0.0001),
    float("pb_kw", 0x2016, 0.0001),
    float("pc_kw", 0x2018, 0.0001),
    float("q_kvar", 0x201A, 0.0001),
    float("pf", 0x202A, 0.001),
    float("frequency_hz", 0x2044, 0.01),
];

/// Phase quantities of one feed at this instant.
fn three_phase(feed: &Feed, values: &mut Values, env: &Env, noise: &mut Noise) {
    let sag = if env.has(FaultKind::VoltageSag) {
        0.84
    } else {
        1.0
    };
    let lost_c = feed.on_tx1_lv && env.has(FaultKind::PhaseLoss);
    let mut u =
        [1.0, 0.997, 1.003].map(|k| feed.nominal_phase_v * k * sag * (1.0 + noise.gauss(0.001)));
    let mut i = [1.0, 1.04, 0.96]
        .map(|k| feed.rated_a * feed.load_share * env.load * k * (1.0 + noise.gauss(0.005)));
    if lost_c {
        u[2] = 0.0;
        i[2] = 0.0;
    }
    let line = |a: f64, b: f64| (a * a + b * b + a * b).sqrt();
    let pf = (0.93 + noise.gauss(0.003)).clamp(0.5, 1.0);
    let tan_phi = (1.0 - pf * pf).sqrt() / pf;
    let p: Vec<f64> = u.iter().zip(&i).map(|(u, i)| u * i * pf / 1000.0).collect();
    let p_total: f64 = p.iter().sum();
    let q_total = p_total * tan_phi;
    for (name, v) in ["ua_v", "ub_v", "uc_v"].into_iter().zip(u) {
        values.insert(name, v);
    }
    for (name, v) in ["ia_a", "ib_a", "ic_a"].into_iter().zip(i) {
        values.insert(name, v);
    }
    for (name, v) in ["pa_kw", "pb_kw", "pc_kw"].into_iter().zip(&p) {
        values.insert(name, *v);
    }
    values.insert("uab_v", line(u[0], u[1]));
    values.insert("ubc_v", line(u[1], u[2]));
    values.insert("uca_v", line(u[2], u[0]));
    values.insert("p_kw", p_total);
    values.insert("q_kvar", q_total);
    values.insert("s_kva", (p_total * p_total + q_total * q_total).sqrt());
    values.insert("pf", pf);
    values.insert("frequency_hz", 50.0 + noise.gauss(0.01));
    let import = values
        .get("import_energy_kwh")
        .copied()
        .unwrap_or(48_231.57);
    values.insert("import_energy_kwh", import + p_total * env.dt_h);
    values.insert("export_energy_kwh", 0.0);
}

pub fn acrel(feed: &Feed, values: &mut Values, env: &Env, noise: &mut Noise) {
    three_phase(feed, values, env, noise);
}

pub fn dtsu666(feed: &Feed, values: &mut Values, env: &Env, noise: &mut Noise) {
    three_phase(feed, values, env, noise);
    values.remove("s_kva");
}

/// A dry-type transformer and its temperature controller.
#[derive(Debug, Clone, Copy)]
pub struct Transformer {
    /// 1 or 2; the over-temperature fault is injected on TX1.
    pub number: u8,
    /// Load relative to the community load shape (TX2 carries a little less).
    pub load_factor: f64,
}

/// Temperature controller, FC3: windings and core in 0.1 °C, a status word and set-points.
pub const TRANSFORMER_TC_MAP: &[Reg] = &[
    Reg::new("winding_a_c", 0x00, Encoding::I16).scaled(0.1),
    Reg::new("winding_b_c", 0x01, Encoding::I16).scaled(0.1),
    Reg::new("winding_c_c", 0x02, Encoding::I16).scaled(0.1),
    Reg::new("core_c", 0x03, Encoding::I16).scaled(0.1),
    Reg::new("status", 0x04, Encoding::U16),
    Reg::new(
        "fan_running",
        0,
        Encoding::Bit {
            word: "status",
            bit: 0,
        },
    ),
    Reg::new(
        "overtemp_alarm",
        0,
        Encoding::Bit {
            word: "status",
            bit: 1,
        },
    ),
    Reg::new(
        "trip",
        0,
        Encoding::Bit {
            word: "status",
            bit: 2,
        },
    ),
    Reg::new(
        "sensor_fault",
        0,
        Encoding::Bit {
            word: "status",
            bit: 3,
        },
    ),
    Reg::new("fan_on_setpoint_c", 0x10, Encoding::I16).scaled(0.1),
    Reg::new("fan_off_setpoint_c", 0x11, Encoding::I16).scaled(0.1),
    Reg::new("alarm_setpoint_c", 0x12, Encoding::I16).scaled(0.1),
    Reg::new("trip_setpoint_c", 0x13, Encoding::I16).scaled(0.1),
];

/// Controller set-points (DOMAIN.md E12): fan on 110, off 90, alarm 155, trip 170 °C.
const SETPOINTS: [(&str, f64); 4] = [
    ("fan_on_setpoint_c", 110.0),
    ("fan_off_setpoint_c", 90.0),
    ("alarm_setpoint_c", 155.0),
    ("trip_setpoint_c", 170.0),
];

pub fn transformer(tx: &Transformer, values: &mut Values, env: &Env, noise: &mut Noise) {
    let overheated = tx.number == 1 && env.has(FaultKind::TransformerOvertemp);
    let load = env.load * tx.load_factor;
    let base = if overheated {
        158.0
    } else {
        28.0 + 75.0 * load.powf(1.6)
    };
    let windings = [0.0, 1.5, -1.0].map(|d| base + d + noise.gauss(0.2));
    for (name, t) in ["winding_a_c", "winding_b_c", "winding_c_c"]
        .into_iter()
        .zip(windings)
    {
        values.insert(name, t);
    }
    values.insert("core_c", base - 12.0 + noise.gauss(0.2));
    for (name, t) in SETPOINTS {
        values.insert(name, t);
    }
    let hottest = windings.into_iter().fold(f64::MIN, f64::max);
    let previous = values.get("status").copied().unwrap_or(0.0) as u32;
    let fan_was_on = previous & 1 == 1;
    let fan = hottest >= 110.0 || (fan_was_on && hottest > 90.0);
    let mut status = u32::from(fan);
    if hottest >= 155.0 {
        status |= 1 << 1;
    }
    if hottest >= 170.0 {
        status |= 1 << 2;
    }
    values.insert("status", f64::from(status));
}
