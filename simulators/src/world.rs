//! The simulated community's state: every device's engineering values and register image, the
//! active faults, and the physics step that moves them with simulated time.

use std::collections::BTreeMap;

use crate::clock::SimClock;
use crate::devices::{electrical_load_shape, water_use_shape, Env, Kind, Values};
use crate::faults::{Fault, FaultKind};
use crate::layout::DeviceSpec;
use crate::noise::Noise;
use crate::registers::{Reg, RegisterImage};

/// Household water use of the 420-household site at the daily mean, m³/h.
const MEAN_HOUSEHOLD_USE_M3H: f64 = 5.9;

pub struct SimDevice {
    pub id: String,
    pub bus: String,
    pub unit: u8,
    kind: Kind,
    map: Vec<Reg>,
    values: Values,
    pub image: RegisterImage,
    /// Reads this device has answered (with data or an exception).
    pub reads: u64,
}

/// How a device answers right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    Normal,
    Silent,
    Exception,
    Slow,
}

pub struct World {
    clock: SimClock,
    last_unix_s: f64,
    noise: Noise,
    faults: Vec<Fault>,
    pub devices: Vec<SimDevice>,
    /// While frozen, values stay put (tests compare decoded values with a still target).
    pub frozen: bool,
}

impl World {
    pub fn new(specs: &[DeviceSpec], clock: SimClock, seed: u64) -> World {
        let devices = specs
            .iter()
            .map(|spec| SimDevice {
                id: spec.id.clone(),
                bus: spec.bus.clone(),
                unit: spec.unit,
                map: spec.kind.map(),
                kind: spec.kind.clone(),
                values: Values::new(),
                image: RegisterImage::default(),
                reads: 0,
            })
            .collect();
        let mut world = World {
            last_unix_s: clock.now_unix_s(),
            clock,
            noise: Noise::new(seed),
            faults: Vec::new(),
            devices,
            frozen: false,
        };
        world.step_to(world.last_unix_s, true);
        world
    }

    /// Advances to the clock's present, unless frozen.
    pub fn step(&mut self) {
        if !self.frozen {
            let now = self.clock.now_unix_s();
            self.step_to(now, false);
        }
    }

    /// Recomputes every device as of simulated time `now` (also when faults change).
    fn step_to(&mut self, now: f64, force: bool) {
        let dt_h = ((now - self.last_unix_s) / 3600.0).max(0.0);
        if dt_h == 0.0 && !force {
            return;
        }
        self.last_unix_s = now;
        let hour = SimClock::local_hour(now);
        let env = Env {
            hour,
            dt_h,
            household_use_m3h: MEAN_HOUSEHOLD_USE_M3H * water_use_shape(hour),
            load: electrical_load_shape(hour),
            outdoor_c: -6.0 + 5.0 * (std::f64::consts::TAU * (hour - 9.0) / 24.0).sin(),
            faults: &self.faults,
        };
        for device in &mut self.devices {
            device
                .kind
                .update(&mut device.values, &env, &mut self.noise);
            device.image = RegisterImage::encode(&device.map, &device.values);
        }
    }

    pub fn inject(&mut self, fault: Fault) {
        if !self.faults.contains(&fault) {
            self.faults.push(fault);
        }
        let now = self.last_unix_s;
        self.step_to(now, true);
    }

    pub fn clear(&mut self, fault: &Fault) {
        self.faults.retain(|f| f != fault);
        let now = self.last_unix_s;
        self.step_to(now, true);
    }

    pub fn faults(&self) -> &[Fault] {
        &self.faults
    }

    /// How `device` answers, given the communication faults on it.
    pub fn behaviour(&self, device: &str) -> Behaviour {
        let on = |kind: FaultKind| {
            self.faults
                .iter()
                .any(|f| f.kind == kind && f.device.as_deref() == Some(device))
        };
        if on(FaultKind::Silent) {
            Behaviour::Silent
        } else if on(FaultKind::Exception) {
            Behaviour::Exception
        } else if on(FaultKind::SlowReplies) {
            Behaviour::Slow
        } else {
            Behaviour::Normal
        }
    }

    /// The engineering values a correct reader decodes from a device's registers.
    pub fn truth(&self, device: &str) -> Option<BTreeMap<String, f64>> {
        let device = self.devices.iter().find(|d| d.id == device)?;
        Some(
            device
                .image
                .truth
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
        )
    }
}
