//! Wiring of stages and shutdown. [`Gateway::start`] spawns one task per bus feeding a bounded
//! sample channel; [`Gateway::stop`] broadcasts shutdown, waits for every task up to a deadline,
//! then aborts what is left. Dropping the channel's last sender ends the consumer.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::config::LoadedConfig;
use crate::model::Sample;
use crate::sources::modbus::bus::BusTask;
use crate::sources::modbus::status::StatusBoard;

/// Samples in flight between the sources and the output. When full, sources wait (polls are
/// delayed and counted as skipped if a whole interval late); nothing is dropped here.
pub const SAMPLE_CHANNEL_CAPACITY: usize = 1024;

/// A running gateway.
pub struct Gateway {
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    pub status: Arc<StatusBoard>,
}

impl Gateway {
    /// Starts polling every bus of `config` into `samples`. Must run inside a tokio runtime.
    pub fn start(config: &LoadedConfig, samples: mpsc::Sender<Sample>) -> Gateway {
        let (shutdown, watcher) = watch::channel(false);
        let status = Arc::new(StatusBoard::default());
        let tasks = config
            .gateway
            .bus
            .iter()
            .map(|bus| {
                let task = BusTask::new(config, bus, samples.clone(), Arc::clone(&status));
                tokio::spawn(task.run(watcher.clone()))
            })
            .collect();
        Gateway {
            shutdown,
            tasks,
            status,
        }
    }

    /// Stops polling: signals every task and waits for them up to `deadline`.
    pub async fn stop(self, deadline: Duration) {
        let _ = self.shutdown.send(true);
        let aborts: Vec<_> = self.tasks.iter().map(JoinHandle::abort_handle).collect();
        let all = join_all(self.tasks);
        if tokio::time::timeout(deadline, all).await.is_err() {
            tracing::warn!(?deadline, "Bus tasks did not stop in time; aborting them");
            for abort in aborts {
                abort.abort();
            }
        }
    }
}

async fn join_all(tasks: Vec<JoinHandle<()>>) {
    for task in tasks {
        let _ = task.await;
    }
}

/// Waits for SIGTERM or SIGINT.
pub async fn termination_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
