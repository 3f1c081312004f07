//! Where samples come from. Each source turns field traffic into [`crate::model::Sample`]s and
//! sends them down a bounded channel; no source ever waits on the uplink.

pub mod meters;
pub mod modbus;
pub mod mqtt;
pub mod scheduler;
pub mod wire;

use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::{BusConfig, LoadedConfig, WireProtocol};
use crate::model::Sample;
use modbus::status::StatusBoard;

/// Spawns the task that polls `bus` (Modbus, or meters) until `shutdown`.
pub fn spawn_bus(
    config: &LoadedConfig,
    bus: &BusConfig,
    samples: mpsc::Sender<Sample>,
    status: Arc<StatusBoard>,
    shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let meters = config
        .gateway
        .device
        .iter()
        .filter(|d| d.bus == bus.id)
        .filter_map(|d| config.profile_of(d))
        .any(|p| p.protocol != WireProtocol::Modbus);
    if meters {
        let task = meters::bus::scheduler(config, bus, samples, status);
        tokio::spawn(task.run(shutdown))
    } else {
        let task = modbus::bus::scheduler(config, bus, samples, status);
        tokio::spawn(task.run(shutdown))
    }
}

/// Waits until `at`, and not at all when `at` has passed. A tokio timer for a moment already
/// past is not free: it is filed against the time the runtime's driver last looked, so it wakes
/// the runtime through its event fd, one extra system call and wake-up per poll on a busy bus.
pub async fn wait_until(at: Instant) {
    if at > Instant::now() {
        tokio::time::sleep_until(at).await;
    }
}
