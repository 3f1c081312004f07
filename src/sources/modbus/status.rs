//! Per-device communication state and counters, shared read-only with whoever reports on them
//! (the daemon's shutdown summary now; the status page and metrics later).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Mutex;

/// Whether a device is answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CommState {
    /// Not polled yet.
    #[default]
    Unknown,
    /// Answering with data.
    Online,
    /// Answering, but with exceptions or some points undecodable, or missed fewer than
    /// [`crate::sources::scheduler::OFFLINE_AFTER`] polls in a row.
    Degraded,
    /// Not answering; probed with backoff.
    Offline,
}

impl fmt::Display for CommState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CommState::Unknown => "unknown",
            CommState::Online => "online",
            CommState::Degraded => "degraded",
            CommState::Offline => "offline",
        })
    }
}

/// Counters of one device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceStatus {
    pub bus: String,
    pub state: CommState,
    /// Reads answered with data.
    pub transactions: u64,
    /// Reads answered with a Modbus exception ("the device said no").
    pub exceptions: u64,
    /// Reads with no reply in time.
    pub timeouts: u64,
    /// Reads that failed on the link (connect, I/O, framing).
    pub link_errors: u64,
    /// Points whose reply could not be decoded (short reply, NaN).
    pub decode_errors: u64,
    /// Samples produced.
    pub samples: u64,
    /// Polls that started later than a whole interval after they were due, skipped.
    pub skipped_polls: u64,
    /// What the read plan avoids because the device refused it (adaptive reads), in Chinese.
    pub adapted: Option<String>,
}

/// All devices' status by device id (hashed: every poll updates one; a snapshot is sorted).
#[derive(Debug, Default)]
pub struct StatusBoard {
    devices: Mutex<HashMap<String, DeviceStatus>>,
}

impl StatusBoard {
    pub fn update(&self, device: &str, change: impl FnOnce(&mut DeviceStatus)) {
        let mut devices = self
            .devices
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Looked up first: the key is allocated once per device, not at every poll.
        if let Some(status) = devices.get_mut(device) {
            change(status);
        } else {
            change(devices.entry(device.to_string()).or_default());
        }
    }

    /// Forgets devices that are no longer configured (after a reload).
    pub fn retain(&self, configured: &[&str]) {
        self.devices
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .retain(|id, _| configured.contains(&id.as_str()));
    }

    pub fn snapshot(&self) -> BTreeMap<String, DeviceStatus> {
        self.devices
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
            .map(|(id, status)| (id.clone(), status.clone()))
            .collect()
    }
}
