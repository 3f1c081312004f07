//! The acquisition stage: one task per bus, and the MQTT source when one is configured, all
//! feeding the pipeline's bounded sample channel. Each source has its own stop switch so that a
//! reload ([`Acquisition::reload`]) restarts only what changed; [`Acquisition::stop`] stops them
//! all, waits up to a deadline, then aborts what is left.

use std::collections::BTreeMap;
use std::hash::Hasher;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::config::LoadedConfig;
use crate::health::Health;
use crate::model::Sample;
use crate::sources::modbus::status::StatusBoard;
use crate::sources::mqtt::{IngestStats, MqttSource};

/// The running sources: one task per bus and one for the MQTT source.
pub struct Acquisition {
    sources: BTreeMap<String, Source>,
    samples: mpsc::Sender<Sample>,
    pub status: Arc<StatusBoard>,
    /// What the MQTT source received, when there is one (kept across reloads).
    pub mqtt: Option<Arc<IngestStats>>,
    /// The MQTT source's problems (broker out of reach).
    pub health: Arc<Health>,
}

/// A running source and what it was started from.
struct Source {
    task: JoinHandle<()>,
    stop: watch::Sender<bool>,
    /// The configuration it runs (its bus, devices and their profiles, or the MQTT source).
    fingerprint: Fingerprint,
}

/// What a reload did, by source (`bus:<id>`, `mqtt`).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reloaded {
    pub started: Vec<String>,
    pub restarted: Vec<String>,
    pub stopped: Vec<String>,
    pub unchanged: Vec<String>,
}

/// A digest of everything a source depends on, as its `Debug` text. Only the digest is kept:
/// the text of a bus with a hundred devices and their profiles is about a megabyte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fingerprint(u64);

impl Fingerprint {
    fn of(identity: &impl std::fmt::Debug) -> Fingerprint {
        struct Digest(std::hash::DefaultHasher);
        impl std::fmt::Write for Digest {
            fn write_str(&mut self, text: &str) -> std::fmt::Result {
                self.0.write(text.as_bytes());
                Ok(())
            }
        }
        let mut digest = Digest(std::hash::DefaultHasher::new());
        // Writing into a hasher cannot fail; a `Debug` impl that fails leaves a partial digest,
        // which only makes a reload restart that source.
        let _ = std::fmt::write(&mut digest, format_args!("{identity:?}"));
        Fingerprint(digest.0.finish())
    }
}

/// Each source of `config` with the digest of everything it depends on.
fn fingerprints(config: &LoadedConfig) -> BTreeMap<String, Fingerprint> {
    let mut sources = BTreeMap::new();
    for bus in &config.gateway.bus {
        let devices: Vec<_> = config
            .gateway
            .device
            .iter()
            .filter(|d| d.bus == bus.id)
            .map(|d| (d, config.profile_of(d)))
            .collect();
        let identity = (&config.gateway.gateway, bus, devices);
        sources.insert(format!("bus:{}", bus.id), Fingerprint::of(&identity));
    }
    if let Some(mqtt) = &config.gateway.mqtt_source {
        let identity = (&config.gateway.gateway, mqtt);
        sources.insert("mqtt".to_string(), Fingerprint::of(&identity));
    }
    sources
}

impl Acquisition {
    /// Starts polling every bus of `config` and subscribing to its MQTT source into `samples`.
    /// Fails only when the MQTT password or TLS files cannot be read. Must run inside a tokio runtime.
    pub fn start(
        config: &LoadedConfig,
        samples: mpsc::Sender<Sample>,
    ) -> Result<Acquisition, crate::mqtt::BrokerError> {
        let mut acquisition = Acquisition {
            sources: BTreeMap::new(),
            samples,
            status: Arc::new(StatusBoard::default()),
            mqtt: None,
            health: Arc::new(Health::default()),
        };
        for (name, fingerprint) in fingerprints(config) {
            acquisition.launch(config, name, fingerprint)?;
        }
        Ok(acquisition)
    }

    /// Starts the source `name` of `config`.
    fn launch(
        &mut self,
        config: &LoadedConfig,
        name: String,
        fingerprint: Fingerprint,
    ) -> Result<(), crate::mqtt::BrokerError> {
        let (stop, stopped) = watch::channel(false);
        let task = match name.strip_prefix("bus:") {
            Some(bus_id) => {
                let Some(bus) = config.gateway.bus.iter().find(|b| b.id == bus_id) else {
                    return Ok(());
                };
                crate::sources::spawn_bus(
                    config,
                    bus,
                    self.samples.clone(),
                    Arc::clone(&self.status),
                    stopped,
                )
            }
            None => {
                let Some(source) = &config.gateway.mqtt_source else {
                    return Ok(());
                };
                let stats = Arc::clone(self.mqtt.get_or_insert_with(Default::default));
                let task = MqttSource::new(config, source, self.samples.clone(), stats)?
                    .reporting_to(Arc::clone(&self.health));
                tokio::spawn(task.run(stopped))
            }
        };
        self.sources.insert(
            name,
            Source {
                task,
                stop,
                fingerprint,
            },
        );
        Ok(())
    }

    /// Applies a new configuration: sources whose bus, devices, profiles or MQTT settings
    /// changed are stopped and started again, new ones started, removed ones stopped; the rest
    /// keep running untouched. Samples already passed on are never affected: the outputs and
    /// the telemetry log are not part of a reload.
    pub async fn reload(
        &mut self,
        config: &LoadedConfig,
        deadline: Duration,
    ) -> Result<Reloaded, crate::mqtt::BrokerError> {
        let wanted = fingerprints(config);
        let mut done = Reloaded::default();
        let names: Vec<String> = self.sources.keys().cloned().collect();
        for name in names {
            match wanted.get(&name) {
                Some(fingerprint) if *fingerprint == self.sources[&name].fingerprint => {
                    done.unchanged.push(name);
                }
                other => {
                    if let Some(source) = self.sources.remove(&name) {
                        stop_all(vec![source], deadline).await;
                    }
                    if other.is_some() {
                        done.restarted.push(name);
                    } else {
                        done.stopped.push(name);
                    }
                }
            }
        }
        let configured: Vec<&str> = config
            .gateway
            .device
            .iter()
            .map(|d| d.id.as_str())
            .collect();
        self.status.retain(&configured);
        for (name, fingerprint) in wanted {
            if self.sources.contains_key(&name) {
                continue;
            }
            if !done.restarted.contains(&name) {
                done.started.push(name.clone());
            }
            self.launch(config, name, fingerprint)?;
        }
        Ok(done)
    }

    /// Stops polling: signals every task and waits for them up to `deadline`.
    pub async fn stop(self, deadline: Duration) {
        stop_all(self.sources.into_values().collect(), deadline).await;
    }
}

/// Signals `sources` to stop and waits for them up to `deadline`, then aborts what is left.
async fn stop_all(sources: Vec<Source>, deadline: Duration) {
    let mut tasks = Vec::new();
    for source in sources {
        let _ = source.stop.send(true);
        tasks.push(source.task);
    }
    let aborts: Vec<_> = tasks.iter().map(JoinHandle::abort_handle).collect();
    if tokio::time::timeout(deadline, join_all(tasks))
        .await
        .is_err()
    {
        tracing::warn!(
            ?deadline,
            "Source tasks did not stop in time; aborting them"
        );
        for abort in aborts {
            abort.abort();
        }
    }
}

pub(super) async fn join_all<T>(tasks: Vec<JoinHandle<T>>) {
    for task in tasks {
        let _ = task.await;
    }
}
