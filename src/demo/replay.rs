//! The simulated community replayed through simulated time without sockets: at each step every
//! configured device's values (as a correct reader decodes them from the world) and every
//! publishing device's message (decoded through the config's MQTT mappings by the gateway's
//! payload decoder) become samples at the step's time. Used for the fault-free day test and
//! for the simulated month behind the example report.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use retrofit_sim::clock::SimClock;
use retrofit_sim::layout::Layout;
use retrofit_sim::world::World;

use crate::config::LoadedConfig;
use crate::model::{Field, Sample, Value};
use crate::sources::mqtt::{payload, topic};

/// A replay of the example community.
pub struct Replay<'a> {
    config: &'a LoadedConfig,
    pub world: World,
    /// The topic prefix the publishing devices use.
    prefix: &'a str,
}

impl<'a> Replay<'a> {
    /// The example community at `start_unix_s` with noise `seed`, read through `config` (whose
    /// devices and MQTT mappings must be the example's, as in `config/demo.toml`).
    pub fn new(config: &'a LoadedConfig, start_unix_s: f64, seed: u64, prefix: &'a str) -> Self {
        let layout = Layout::example_site(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
        Replay {
            config,
            world: World::new(&layout, SimClock::new(start_unix_s, 0.0), seed),
            prefix,
        }
    }

    /// Moves the world to `unix_s`; every device's sample at that time.
    pub fn step(&mut self, unix_s: i64) -> Result<Vec<Sample>, String> {
        self.world.advance_to(unix_s as f64);
        let time_ns = unix_s * 1_000_000_000;
        let mut samples = Vec::new();
        for device in &self.config.gateway.device {
            let profile = self
                .config
                .profile_of(device)
                .ok_or_else(|| format!("{}: no profile", device.id))?;
            let truth = self
                .world
                .truth(&device.id)
                .ok_or_else(|| format!("{}: not simulated", device.id))?;
            let fields = profile
                .field_names()
                .filter_map(|name| {
                    truth.get(name).map(|v| Field {
                        name: Arc::from(name),
                        value: Value::Float(*v),
                    })
                })
                .collect();
            samples.push(Sample {
                measurement: Arc::from(profile.kind.as_str()),
                device: Arc::from(device.id.as_str()),
                tags: Vec::new().into(),
                fields,
                time_ns,
                receipt: crate::model::Receipt::none(),
            });
        }
        let Some(source) = &self.config.gateway.mqtt_source else {
            return Ok(samples);
        };
        for message in self.world.messages(self.prefix) {
            let mapping = source
                .mappings
                .iter()
                .find(|m| topic::matches(&m.topic, &message.topic))
                .ok_or_else(|| format!("no mapping for {}", message.topic))?;
            let decoded = payload::decode(
                mapping,
                &[],
                &message.topic,
                message.payload.as_bytes(),
                time_ns,
            )
            .map_err(|e| format!("{e}: {}", message.payload))?;
            if !decoded.problems.is_empty() {
                return Err(format!("{}: {:?}", message.topic, decoded.problems));
            }
            samples.push(decoded.sample);
        }
        Ok(samples)
    }
}
