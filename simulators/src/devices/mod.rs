//! The simulated device kinds: each has a register map (as its manual would document it) and a
//! model that moves its engineering values with the community's demand, load and weather.

pub(crate) mod heating;
mod power;
pub mod published;
mod water;

pub use water::METERED_USE;

use std::collections::BTreeMap;

use crate::faults::{Fault, FaultKind};
use crate::noise::Noise;
use crate::registers::Reg;

/// The register a device counts its answered reads in, if its map has one.
pub const POLL_COUNTER: &str = "poll_counter";

/// Values of one device, in engineering units, by register-map name.
pub type Values = BTreeMap<&'static str, f64>;

/// What every device sees at one instant of simulated time.
pub struct Env<'a> {
    /// Local hour of day, 0–24.
    pub hour: f64,
    /// Simulated hours since the previous update (integrates totalisers).
    pub dt_h: f64,
    /// Household water use of the whole community, m³/h (420 households).
    pub household_use_m3h: f64,
    /// Transformer load as a fraction of rating.
    pub load: f64,
    /// Outdoor air temperature, °C.
    pub outdoor_c: f64,
    pub faults: &'a [Fault],
}

impl Env<'_> {
    /// Whether a plant fault is active.
    pub fn has(&self, kind: FaultKind) -> bool {
        self.faults.iter().any(|f| f.kind == kind)
    }

    /// Whether a fault is active on `device`, or on every device (no device named).
    pub fn on(&self, kind: FaultKind, device: &str) -> bool {
        self.faults
            .iter()
            .any(|f| f.kind == kind && f.device.as_deref().is_none_or(|d| d == device))
    }
}

/// The community's daily water-use shape: morning, noon and evening peaks over a night floor of
/// 12 % of the mean, normalised to a mean of 1.0 (DOMAIN.md §4.2 example site).
pub fn water_use_shape(hour: f64) -> f64 {
    fn peak(hour: f64, centre: f64, width: f64) -> f64 {
        let d = (hour - centre + 12.0).rem_euclid(24.0) - 12.0;
        (-0.5 * (d / width).powi(2)).exp()
    }
    fn raw(h: f64) -> f64 {
        peak(h, 7.5, 1.2) + 0.6 * peak(h, 12.0, 1.5) + 1.1 * peak(h, 20.0, 1.8)
    }
    // Mean of `raw` over a day, by the trapezoid rule on minutes: worked out once (it was 4 320
    // exponentials on every call, most of a replayed month's time).
    static MEAN: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    let mean =
        *MEAN.get_or_init(|| (0..1440).map(|m| raw(f64::from(m) / 60.0)).sum::<f64>() / 1440.0);
    0.12 + 0.88 * raw(hour) / mean
}

/// Residential electrical load shape, fraction of transformer rating: 0.25 at night, 0.75 at
/// the evening peak.
pub fn electrical_load_shape(hour: f64) -> f64 {
    let evening = (-0.5 * ((hour - 20.5) / 2.0).powi(2)).exp();
    let day = (-0.5 * ((hour - 12.0) / 3.5).powi(2)).exp();
    0.25 + 0.5 * evening + 0.15 * day
}

/// A device kind with its own parameters.
#[derive(Debug, Clone)]
pub enum Kind {
    BoosterPump,
    PressureTransmitter(water::PressurePoint),
    LevelTransmitter,
    EmFlowmeter,
    AcrelMeter(power::Feed),
    Dtsu666(power::Feed),
    DryTransformer(power::Transformer),
    HeatingPlc,
}

pub use power::{Feed, Transformer};
pub use water::PressurePoint;

impl Kind {
    /// The device's register map, built once per device.
    pub fn map(&self) -> Vec<Reg> {
        match self {
            Kind::BoosterPump => water::BOOSTER_MAP.to_vec(),
            Kind::PressureTransmitter(_) => water::PRESSURE_TRANSMITTER_MAP.to_vec(),
            Kind::LevelTransmitter => water::LEVEL_TRANSMITTER_MAP.to_vec(),
            Kind::EmFlowmeter => water::FLOWMETER_MAP.to_vec(),
            Kind::AcrelMeter(feed) => power::acrel_map(feed),
            Kind::Dtsu666(_) => power::DTSU666_MAP.to_vec(),
            Kind::DryTransformer(_) => power::TRANSFORMER_TC_MAP.to_vec(),
            Kind::HeatingPlc => heating::PLC_MAP.to_vec(),
        }
    }

    /// Moves the device's values to the state of `env`.
    pub fn update(&self, values: &mut Values, env: &Env, noise: &mut Noise) {
        match self {
            Kind::BoosterPump => water::booster(values, env, noise),
            Kind::PressureTransmitter(point) => water::pressure(point, values, env, noise),
            Kind::LevelTransmitter => water::level(values, env, noise),
            Kind::EmFlowmeter => water::flowmeter(values, env, noise),
            Kind::AcrelMeter(feed) => power::acrel(feed, values, env, noise),
            Kind::Dtsu666(feed) => power::dtsu666(feed, values, env, noise),
            Kind::DryTransformer(tx) => power::transformer(tx, values, env, noise),
            Kind::HeatingPlc => heating::plc(values, env, noise),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn water_use_shape_has_mean_one_and_a_night_floor() {
        let mean: f64 = (0..1440)
            .map(|m| water_use_shape(f64::from(m) / 60.0))
            .sum::<f64>()
            / 1440.0;
        assert!((mean - 1.0).abs() < 1e-3, "mean {mean}");
        assert!(water_use_shape(3.0) < 0.15);
        assert!(water_use_shape(20.0) > 1.5);
    }
}
