//! The bus scheduler: one task owns one bus and polls its devices, one transaction at a time.
//!
//! Each device is polled at a fixed rate (`next_due += interval`), so a late poll does not shift
//! the ones after it; a poll that could only start more than a whole interval late is skipped
//! and counted. A poll stops at its first link failure (timeout, I/O): the connection is dropped
//! and rebuilt, and the device's remaining reads are not attempted, so one silent device costs the
//! bus at most one timeout per poll. After [`OFFLINE_AFTER`] failed polls in a row the device is
//! offline and only probed after a jittered, growing pause (up to the bus's `max_backoff`), so it
//! never delays the healthy devices on the same bus. A failed connect backs off the whole bus.
//!
//! Not handled here: decoding (see `decode`), what happens to samples downstream (the channel
//! applies back-pressure; a full channel delays polling rather than dropping data).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::backoff::Backoff;
use crate::config::{BusConfig, DeviceConfig, LoadedConfig};
use crate::model::{unix_nanos, Field, Sample, TagSet, Value};

use super::decode::DecodeError;
use super::link::{Link, LinkError, Reply};
use super::plan::{DevicePlan, PlanLimits, ReadRequest};
use super::status::{CommState, StatusBoard};

/// Failed polls in a row after which a device counts as offline.
pub const OFFLINE_AFTER: u32 = 3;

/// One device as the scheduler sees it.
struct PolledDevice {
    id: Arc<str>,
    unit: u8,
    measurement: Arc<str>,
    tags: TagSet,
    plan: DevicePlan,
    interval: Duration,
    next_due: Instant,
    cycle: u64,
    failures_in_a_row: u32,
    backoff: Backoff,
    /// While offline: when to probe next.
    probe_at: Option<Instant>,
}

impl PolledDevice {
    fn due_at(&self) -> Instant {
        self.probe_at.unwrap_or(self.next_due)
    }
}

/// Builds the tag set of a device: `site`, `gateway`, `device`, then profile and device tags
/// (device tags win), sorted by key.
pub fn device_tags(config: &LoadedConfig, device: &DeviceConfig) -> TagSet {
    let mut tags = std::collections::BTreeMap::new();
    if let Some(profile) = config.profile_of(device) {
        tags.extend(profile.tags.clone());
    }
    tags.extend(device.tags.clone());
    tags.insert("site".to_string(), config.gateway.gateway.site.clone());
    tags.insert("gateway".to_string(), config.gateway.gateway.id.clone());
    tags.insert("device".to_string(), device.id.clone());
    tags.into_iter().collect::<Vec<_>>().into()
}

/// The task that owns one bus.
pub struct BusTask {
    bus: Arc<str>,
    link: Link,
    devices: Vec<PolledDevice>,
    connect_backoff: Backoff,
    /// While the bus cannot connect: no attempt before this instant.
    reconnect_at: Option<Instant>,
    samples: mpsc::Sender<Sample>,
    status: Arc<StatusBoard>,
}

impl BusTask {
    /// The task for `bus` with the devices the config puts on it.
    pub fn new(
        config: &LoadedConfig,
        bus: &BusConfig,
        samples: mpsc::Sender<Sample>,
        status: Arc<StatusBoard>,
    ) -> BusTask {
        let now = Instant::now();
        let max_backoff = bus.max_backoff.get();
        let devices = config
            .gateway
            .device
            .iter()
            .filter(|d| d.bus == bus.id)
            .filter_map(|device| {
                let profile = config.profile_of(device)?;
                let interval = device.interval.get();
                status.update(&device.id, |s| s.bus = bus.id.clone());
                Some(PolledDevice {
                    id: Arc::from(device.id.as_str()),
                    unit: u8::try_from(device.unit).unwrap_or(0),
                    measurement: Arc::from(profile.kind.as_str()),
                    tags: device_tags(config, device),
                    plan: DevicePlan::new(device, profile, PlanLimits::of(bus)),
                    interval,
                    next_due: now,
                    cycle: 0,
                    failures_in_a_row: 0,
                    backoff: Backoff::new(interval.max(Duration::from_secs(1)), max_backoff),
                    probe_at: None,
                })
            })
            .collect();
        BusTask {
            bus: Arc::from(bus.id.as_str()),
            link: Link::new(bus),
            devices,
            connect_backoff: Backoff::new(Duration::from_secs(1), max_backoff),
            reconnect_at: None,
            samples,
            status,
        }
    }

    /// Polls until `shutdown` turns true (or its sender is gone).
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        if self.devices.is_empty() {
            return;
        }
        loop {
            if *shutdown.borrow() {
                return;
            }
            let (index, due) = self
                .devices
                .iter()
                .enumerate()
                .map(|(i, d)| (i, d.due_at()))
                .min_by_key(|(_, due)| *due)
                .unwrap_or((0, Instant::now()));
            tokio::select! {
                _ = tokio::time::sleep_until(due) => {}
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        return;
                    }
                    continue;
                }
            }
            if !self.poll(index).await {
                return;
            }
        }
    }

    /// Polls one device once; false when the sample channel is closed.
    async fn poll(&mut self, index: usize) -> bool {
        let requests = {
            let device = &mut self.devices[index];
            device.plan.requests(device.cycle)
        };
        let mut fields = Vec::new();
        let mut answered_at: Option<SystemTime> = None;
        let mut link_failure: Option<LinkError> = None;
        let (mut exceptions, mut decode_errors, mut transactions) = (0u64, 0u64, 0u64);
        for request in requests.iter() {
            match self.transact(index, request).await {
                Ok(Ok(reply)) => {
                    transactions += 1;
                    answered_at.get_or_insert_with(SystemTime::now);
                    decode_errors += self.decode(index, request, &reply, &mut fields);
                }
                Ok(Err(code)) => {
                    exceptions += 1;
                    answered_at.get_or_insert_with(SystemTime::now);
                    tracing::debug!(
                        device = %self.devices[index].id,
                        function = request.function.code(),
                        start = request.start,
                        count = request.count,
                        exception = %code,
                        "Device answered with an exception"
                    );
                }
                Err(e) => {
                    link_failure = Some(e);
                    break;
                }
            }
        }
        let device = &self.devices[index];
        let (id, answered) = (Arc::clone(&device.id), answered_at.is_some());
        let produced = !fields.is_empty();
        let link_error_kind = link_failure
            .as_ref()
            .map(|e| matches!(e, LinkError::Timeout(_)));
        self.status.update(&id, |s| {
            s.transactions += transactions;
            s.exceptions += exceptions;
            s.decode_errors += decode_errors;
            match link_error_kind {
                Some(true) => s.timeouts += 1,
                Some(false) => s.link_errors += 1,
                None => {}
            }
            s.samples += u64::from(produced);
        });
        if let Some(at) = answered_at.filter(|_| produced) {
            let sample = Sample {
                measurement: Arc::clone(&device.measurement),
                device: Arc::clone(&device.id),
                tags: Arc::clone(&device.tags),
                fields,
                time_ns: unix_nanos(at),
            };
            if self.samples.send(sample).await.is_err() {
                return false;
            }
        }
        let clean = answered && exceptions == 0 && decode_errors == 0 && link_failure.is_none();
        self.settle(index, answered, clean, link_failure);
        true
    }

    /// One transaction, honouring the bus-wide reconnect backoff.
    async fn transact(
        &mut self,
        index: usize,
        request: &ReadRequest,
    ) -> Result<Result<Reply, tokio_modbus::ExceptionCode>, LinkError> {
        if !self.link.is_connected() {
            if let Some(at) = self.reconnect_at {
                if Instant::now() < at {
                    return Err(LinkError::Connect(
                        "bus is backing off after a failed connect".into(),
                    ));
                }
            }
        }
        let unit = self.devices[index].unit;
        let result = self.link.read(unit, request).await;
        match &result {
            Err(LinkError::Connect(reason)) => {
                let delay = self.connect_backoff.next_delay();
                if self.reconnect_at.is_none() {
                    tracing::warn!(bus = %self.bus, reason = %reason, retry_in = ?delay, "Bus cannot connect; backing off");
                }
                self.reconnect_at = Some(Instant::now() + delay);
            }
            Err(_) => self.link.disconnect(),
            Ok(_) => {
                if self.reconnect_at.take().is_some() {
                    tracing::info!(bus = %self.bus, "Bus connected again");
                }
                self.connect_backoff.reset();
            }
        }
        result
    }

    /// Decodes the points a reply serves into `fields`; returns how many failed.
    fn decode(
        &self,
        index: usize,
        request: &ReadRequest,
        reply: &Reply,
        fields: &mut Vec<Field>,
    ) -> u64 {
        let device = &self.devices[index];
        let mut failed = 0;
        for &p in &request.points {
            let point = &device.plan.points[p];
            let at = usize::from(point.address - request.start);
            let decoded: Result<Value, DecodeError> = match reply {
                Reply::Words(words) => point.decoder.decode_words(words, at),
                Reply::Bits(bits) => point.decoder.decode_bits(bits, at),
            };
            match decoded {
                Ok(value) => fields.push(Field {
                    name: Arc::clone(&point.name),
                    value,
                }),
                Err(e) => {
                    failed += 1;
                    tracing::debug!(device = %device.id, point = %point.name, error = %e, "Point not decoded");
                }
            }
        }
        failed
    }

    /// Updates the device's state and schedules its next poll.
    fn settle(&mut self, index: usize, answered: bool, clean: bool, failure: Option<LinkError>) {
        let now = Instant::now();
        let device = &mut self.devices[index];
        let was_offline = device.probe_at.is_some();
        let state = if answered {
            device.failures_in_a_row = 0;
            device.backoff.reset();
            device.probe_at = None;
            if was_offline {
                tracing::info!(device = %device.id, "Device answers again");
                // Resume on the device's own rhythm from now.
                device.next_due = now;
            }
            if clean {
                CommState::Online
            } else {
                CommState::Degraded
            }
        } else {
            device.failures_in_a_row += 1;
            if device.failures_in_a_row >= OFFLINE_AFTER {
                let pause = device.backoff.next_delay();
                if !was_offline {
                    tracing::warn!(
                        device = %device.id,
                        error = %failure.as_ref().map(ToString::to_string).unwrap_or_default(),
                        probe_in = ?pause,
                        "Device stopped answering; probing with backoff"
                    );
                }
                device.probe_at = Some(now + pause);
                CommState::Offline
            } else {
                CommState::Degraded
            }
        };
        let mut skipped = 0;
        if device.probe_at.is_none() {
            device.cycle += 1;
            device.next_due += device.interval;
            if device.next_due + device.interval <= now {
                let late = now.duration_since(device.next_due);
                let missed = (late.as_nanos() / device.interval.as_nanos().max(1)) as u32;
                device.next_due += device.interval * missed;
                device.cycle += u64::from(missed);
                skipped = u64::from(missed);
            }
        }
        let id = Arc::clone(&device.id);
        self.status.update(&id, |s| {
            s.state = state;
            s.skipped_polls += skipped;
        });
    }
}
