//! What makes the gateway unhealthy right now, as reported by the stage that sees it: the
//! telemetry log refusing writes, InfluxDB failing or refusing the credentials, the MQTT broker
//! out of reach. Each stage sets and clears its own entry; `/health` and the status API read
//! them (with the polling check, which is computed from the device states).

use std::collections::BTreeMap;
use std::sync::Mutex;

/// Current problems by the part of the gateway they concern.
#[derive(Debug, Default)]
pub struct Health {
    problems: Mutex<BTreeMap<&'static str, String>>,
}

impl Health {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<&'static str, String>> {
        self.problems
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// `part` (`telemetry_log`, `influxdb`, `mqtt_source`) has a problem.
    pub fn set(&self, part: &'static str, problem: impl Into<String>) {
        self.lock().insert(part, problem.into());
    }

    /// `part` works again.
    pub fn clear(&self, part: &'static str) {
        self.lock().remove(part);
    }

    /// Every current problem as (part, problem).
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        self.lock()
            .iter()
            .map(|(part, problem)| (*part, problem.clone()))
            .collect()
    }
}
