//! Fault injection: what can go wrong in the simulated community, and scenario files that switch
//! faults on and off on a timeline.
//!
//! Scenario file: one fault per line, `START_S DURATION_S FAULT [DEVICE]`, times in seconds from
//! the simulator's start, `#` starts a comment. Example: `30 60 pump_trip` or `10 40 silent dma-flow`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Kinds of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// A DMA main burst: +6 m³/h inflow, PRV outlet pressure 0.03 MPa lower.
    Leak,
    /// The community's mains as before renovation (DOMAIN.md §4.2): background leakage of
    /// 1.69 m³/h instead of 0.5, a loss rate near 20 %.
    LeakyNetwork,
    /// Duty pump 1's VFD trips; the standby pump takes over.
    PumpTrip,
    /// Water on the pump-room floor.
    PumpRoomFlooding,
    /// Supply at 84 % of its usual level (193 V where 230 V is usual): below E1's 198 V,
    /// above E4's 187 V.
    VoltageSag,
    /// Phase C lost on the LV side of TX1.
    PhaseLoss,
    /// TX1 windings above the alarm set-point.
    TransformerOvertemp,
    /// Heating make-up at 3 % of circulation (a secondary-network leak).
    HeatingMakeupSurge,
    /// A device that stops answering (needs a device).
    Silent,
    /// A device that answers every read with exception 0x04 (needs a device).
    Exception,
    /// A device that answers 300 ms late (needs a device).
    SlowReplies,
    /// Gas leaking into a regulator box: the detector reading rises 5 %LEL/s up to 60 %LEL.
    GasLeak,
    /// Regulator outlet pressure at 1.2 kPa (below its 2.2–2.8 kPa band and the appliances'
    /// 1.5 kPa).
    GasPressureLow,
    /// Regulator outlet pressure at 3.3 kPa (above 3.0, below the shut-off).
    GasPressureHigh,
    /// The slam-shut valve has tripped: outlet pressure gone.
    SlamShut,
    /// Water in a valve well.
    WellFlooding,
    /// A valve-well cover lifted: 25° tilt.
    CoverOpened,
    /// A sample flat at 16.8 °C (below the 18 °C the heating must keep).
    ColdFlat,
    /// A meter that answers with a wrong checksum (needs a device).
    BadChecksum,
    /// A meter that answers with line noise instead of a frame (needs a device).
    Garbled,
    /// A meter's battery is low: status word 1 bit 2 (DL/T 645), ST bit 2 (CJ/T 188) or the
    /// M-Bus status "power low" bit 2 (needs a device).
    BatteryLow,
    /// A building's heat meter sees 2 K between supply and return, below the 3 K a class 2
    /// meter needs (a bypass left open; needs a device).
    LowDeltaT,
}

impl FaultKind {
    pub const ALL: [FaultKind; 22] = [
        FaultKind::Leak,
        FaultKind::LeakyNetwork,
        FaultKind::PumpTrip,
        FaultKind::PumpRoomFlooding,
        FaultKind::VoltageSag,
        FaultKind::PhaseLoss,
        FaultKind::TransformerOvertemp,
        FaultKind::HeatingMakeupSurge,
        FaultKind::Silent,
        FaultKind::Exception,
        FaultKind::SlowReplies,
        FaultKind::GasLeak,
        FaultKind::GasPressureLow,
        FaultKind::GasPressureHigh,
        FaultKind::SlamShut,
        FaultKind::WellFlooding,
        FaultKind::CoverOpened,
        FaultKind::ColdFlat,
        FaultKind::BadChecksum,
        FaultKind::Garbled,
        FaultKind::BatteryLow,
        FaultKind::LowDeltaT,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Leak => "leak",
            FaultKind::LeakyNetwork => "leaky_network",
            FaultKind::PumpTrip => "pump_trip",
            FaultKind::PumpRoomFlooding => "pump_room_flooding",
            FaultKind::VoltageSag => "voltage_sag",
            FaultKind::PhaseLoss => "phase_loss",
            FaultKind::TransformerOvertemp => "transformer_overtemp",
            FaultKind::HeatingMakeupSurge => "heating_makeup_surge",
            FaultKind::Silent => "silent",
            FaultKind::Exception => "exception",
            FaultKind::SlowReplies => "slow_replies",
            FaultKind::GasLeak => "gas_leak",
            FaultKind::GasPressureLow => "gas_pressure_low",
            FaultKind::GasPressureHigh => "gas_pressure_high",
            FaultKind::SlamShut => "slam_shut",
            FaultKind::WellFlooding => "well_flooding",
            FaultKind::CoverOpened => "cover_opened",
            FaultKind::ColdFlat => "cold_flat",
            FaultKind::BadChecksum => "bad_checksum",
            FaultKind::Garbled => "garbled",
            FaultKind::BatteryLow => "battery_low",
            FaultKind::LowDeltaT => "low_delta_t",
        }
    }

    /// Whether the fault is about one device (its communication or its own state) rather than
    /// the physical plant.
    pub fn needs_device(self) -> bool {
        matches!(
            self,
            FaultKind::Silent
                | FaultKind::Exception
                | FaultKind::SlowReplies
                | FaultKind::BadChecksum
                | FaultKind::Garbled
                | FaultKind::BatteryLow
                | FaultKind::LowDeltaT
        )
    }
}

impl FromStr for FaultKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        FaultKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = FaultKind::ALL.iter().map(|k| k.name()).collect();
                format!("unknown fault {s:?} (expected one of {names:?})")
            })
    }
}

/// An active fault, on one device or on the plant (for the faults of publishing devices: on
/// every device of the kind).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Fault {
    pub kind: FaultKind,
    pub device: Option<String>,
}

impl Fault {
    pub fn plant(kind: FaultKind) -> Fault {
        Fault { kind, device: None }
    }

    pub fn on(kind: FaultKind, device: &str) -> Fault {
        Fault {
            kind,
            device: Some(device.to_string()),
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.device {
            Some(device) => write!(f, "{} on {device}", self.kind.name()),
            None => f.write_str(self.kind.name()),
        }
    }
}

/// One line of a scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct ScenarioStep {
    pub start: Duration,
    pub duration: Duration,
    pub fault: Fault,
}

/// Parses a scenario file's text.
pub fn parse_scenario(text: &str) -> Result<Vec<ScenarioStep>, String> {
    let mut steps = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let at = |e: String| format!("line {}: {e}", n + 1);
        let words: Vec<&str> = line.split_whitespace().collect();
        let [start, duration, kind, rest @ ..] = words.as_slice() else {
            return Err(at("expected START_S DURATION_S FAULT [DEVICE]".into()));
        };
        let seconds = |w: &str| {
            w.parse::<u64>()
                .map(Duration::from_secs)
                .map_err(|_| at(format!("{w:?} is not a whole number of seconds")))
        };
        let kind: FaultKind = kind.parse().map_err(at)?;
        let device = match (rest, kind.needs_device()) {
            ([], true) => return Err(at(format!("{} needs a device id", kind.name()))),
            ([device], _) => Some(device.to_string()),
            ([], false) => None,
            _ => return Err(at("too many words".into())),
        };
        steps.push(ScenarioStep {
            start: seconds(start)?,
            duration: seconds(duration)?,
            fault: Fault { kind, device },
        });
    }
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plant_and_device_faults_with_comments() {
        let steps =
            parse_scenario("# demo\n30 60 pump_trip\n\n10 40 silent dma-flow # comm\n").unwrap();
        assert_eq!(steps.len(), 2);
        assert_eq!(steps[0].fault, Fault::plant(FaultKind::PumpTrip));
        assert_eq!(steps[1].fault, Fault::on(FaultKind::Silent, "dma-flow"));
        assert_eq!(steps[1].start, Duration::from_secs(10));
    }

    #[test]
    fn reports_the_line_of_a_bad_step() {
        let err = parse_scenario("1 2 leak\n5 x leak\n").unwrap_err();
        assert!(err.starts_with("line 2:"), "{err}");
        assert!(parse_scenario("1 2 silent")
            .unwrap_err()
            .contains("needs a device"));
        assert!(parse_scenario("1 2 meteor")
            .unwrap_err()
            .contains("unknown fault"));
    }
}
