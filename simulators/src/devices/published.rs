//! Devices that publish over MQTT instead of being polled: gas regulator box RTUs (DOMAIN.md
//! §3.9), valve-well sensors and sample-flat room thermometers (§3.10). Each has values moved by
//! the same environment and faults as the polled devices, and a payload in its vendor's JSON.

use std::fmt::Write as _;

use super::{Env, Values};
use crate::faults::FaultKind;
use crate::noise::Noise;

/// Which kind of publishing device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Regulator box RTU: pressures, slam-shut, door, combustible gas, battery.
    GasRegulator,
    /// Valve-well sensor: cover tilt and water ingress.
    ValveWell,
    /// Room thermometer in a sample flat.
    Room,
}

/// Rise of the combustible-gas reading in a closed regulator box during a leak, %LEL per
/// simulated second, and its fall once ventilated.
const LEL_RISE_PER_S: f64 = 5.0;
const LEL_FALL_PER_S: f64 = 10.0;
const LEL_MAX: f64 = 60.0;

impl Shape {
    /// The topic under `prefix` (`site/xingfu`): `gas/<id>/telemetry`, `well/status/<id>`,
    /// `room/<id>`.
    pub fn topic(self, prefix: &str, id: &str) -> String {
        match self {
            Shape::GasRegulator => format!("{prefix}/gas/{id}/telemetry"),
            Shape::ValveWell => format!("{prefix}/well/status/{id}"),
            Shape::Room => format!("{prefix}/room/{id}"),
        }
    }

    /// Moves the device's values to the state of `env` (faults named for `id`, or for every
    /// device of the kind).
    pub fn update(self, id: &str, values: &mut Values, env: &Env, noise: &mut Noise) {
        let on = |kind: FaultKind| env.on(kind, id);
        match self {
            Shape::GasRegulator => {
                let slam = on(FaultKind::SlamShut);
                let p_out = if slam {
                    0.05
                } else if on(FaultKind::GasPressureLow) {
                    1.2
                } else if on(FaultKind::GasPressureHigh) {
                    3.3
                } else {
                    2.45
                };
                let lel = values.get("lel_pct").copied().unwrap_or(0.0);
                let dt_s = env.dt_h * 3600.0;
                let lel = if on(FaultKind::GasLeak) {
                    (lel + LEL_RISE_PER_S * dt_s).min(LEL_MAX)
                } else {
                    (lel - LEL_FALL_PER_S * dt_s).max(0.0)
                };
                values.insert("p_in_mpa", round(0.186 + noise.gauss(0.001), 3));
                values.insert("p_out_kpa", round(p_out + noise.gauss(0.01), 2));
                values.insert("t_c", round(env.outdoor_c + 3.0 + noise.gauss(0.1), 1));
                values.insert("slam_shut", f64::from(u8::from(slam)));
                values.insert("relief_open", 0.0);
                values.insert("door", 0.0);
                values.insert("lel_pct", round(lel, 1));
                values.insert("batt_v", 3.58);
                values.insert("rssi", -79.0);
            }
            Shape::ValveWell => {
                let tilt = if on(FaultKind::CoverOpened) {
                    25.0
                } else {
                    0.4
                };
                values.insert("tilt", round(tilt + noise.gauss(0.05), 1));
                values.insert("water", f64::from(u8::from(on(FaultKind::WellFlooding))));
                values.insert("battery", 89.0);
            }
            Shape::Room => {
                let base = if on(FaultKind::ColdFlat) { 16.8 } else { 20.5 };
                let daily = 0.3 * (std::f64::consts::TAU * (env.hour - 15.0) / 24.0).cos();
                values.insert("t_c", round(base + daily + noise.gauss(0.05), 1));
                values.insert("rh", round(31.0 + noise.gauss(1.0), 0));
                values.insert("battery", 95.0);
            }
        }
    }

    /// The JSON payload at simulated time `unix_s`, and the timestamp it carries in ns: whole
    /// seconds for the RTU and the well sensor (`ts`), milliseconds for the room thermometer.
    pub fn payload(self, id: &str, values: &Values, unix_s: f64) -> (String, i64) {
        let v = |name: &str| values.get(name).copied().unwrap_or(0.0);
        let seconds = unix_s.floor() as i64;
        let mut json = String::new();
        match self {
            Shape::GasRegulator => {
                let _ = write!(
                    json,
                    r#"{{"ts": {seconds}, "dev": "{id}", "p_in_mpa": {}, "p_out_kpa": {}, "t_c": {}, "slam_shut": {}, "relief_open": {}, "door": {}, "lel_pct": {}, "batt_v": {}, "rssi": {}, "alarm": []}}"#,
                    v("p_in_mpa"),
                    v("p_out_kpa"),
                    v("t_c"),
                    v("slam_shut"),
                    v("relief_open"),
                    v("door"),
                    v("lel_pct"),
                    v("batt_v"),
                    v("rssi"),
                );
                (json, seconds * 1_000_000_000)
            }
            Shape::ValveWell => {
                let status = if v("water") > 0.0 || v("tilt") > 15.0 {
                    "abnormal"
                } else {
                    "normal"
                };
                let _ = write!(
                    json,
                    r#"{{"device_id": "{id}", "tilt": {}, "water": {}, "battery": {}, "status": "{status}", "ts": {seconds}}}"#,
                    v("tilt"),
                    v("water"),
                    v("battery"),
                );
                (json, seconds * 1_000_000_000)
            }
            Shape::Room => {
                let millis = (unix_s * 1000.0).floor() as i64;
                let _ = write!(
                    json,
                    r#"{{"device_id": "{id}", "t_c": {}, "rh": {}, "battery": {}, "ts": {millis}}}"#,
                    v("t_c"),
                    v("rh"),
                    v("battery"),
                );
                (json, millis * 1_000_000)
            }
        }
    }
}

/// `value` rounded to `decimals` places, as a vendor's firmware would print it.
fn round(value: f64, decimals: i32) -> f64 {
    let factor = 10f64.powi(decimals);
    (value * factor).round() / factor
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faults::Fault;

    fn env(faults: &[Fault], dt_h: f64) -> Env<'_> {
        Env {
            hour: 3.0,
            dt_h,
            household_use_m3h: 1.0,
            load: 0.3,
            outdoor_c: -8.0,
            faults,
        }
    }

    #[test]
    fn a_gas_leak_raises_the_reading_over_seconds_and_ventilation_brings_it_down() {
        let mut noise = Noise::new(1);
        let mut values = Values::new();
        let leak = [Fault::on(FaultKind::GasLeak, "GRB-01")];
        Shape::GasRegulator.update(
            "GRB-02",
            &mut values,
            &env(&leak, 10.0 / 3600.0),
            &mut noise,
        );
        assert_eq!(values["lel_pct"], 0.0, "the leak is in the other box");
        Shape::GasRegulator.update("GRB-01", &mut values, &env(&leak, 6.0 / 3600.0), &mut noise);
        assert!((values["lel_pct"] - 30.0).abs() < 1e-9);
        Shape::GasRegulator.update("GRB-01", &mut values, &env(&[], 3.0 / 3600.0), &mut noise);
        assert_eq!(values["lel_pct"], 0.0);
    }

    #[test]
    fn payloads_have_the_vendor_shapes_of_domain_md() {
        let mut values = Values::new();
        let mut noise = Noise::new(1);
        Shape::GasRegulator.update("GRB-01", &mut values, &env(&[], 0.0), &mut noise);
        let (json, time_ns) = Shape::GasRegulator.payload("GRB-01", &values, 1_764_150_000.7);
        assert_eq!(time_ns, 1_764_150_000 * 1_000_000_000);
        assert!(
            json.starts_with(r#"{"ts": 1764150000, "dev": "GRB-01", "p_in_mpa": 0.18"#),
            "{json}"
        );
        assert!(
            json.ends_with(r#""batt_v": 3.58, "rssi": -79, "alarm": []}"#),
            "{json}"
        );
        let (json, time_ns) = Shape::Room.payload("room_1", &values, 1_764_150_000.7);
        assert!(json.ends_with(r#""ts": 1764150000700}"#), "{json}");
        assert_eq!(time_ns, 1_764_150_000_700_000_000);
    }
}
