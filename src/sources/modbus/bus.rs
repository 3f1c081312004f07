//! Modbus on the bus scheduler ([`crate::sources::scheduler`]): a poll issues the device plan's
//! reads for its cycle, one transaction at a time, and decodes each reply's points. Exceptions
//! ("the device said no") are counted and the poll goes on; a read refused with exception 2 is
//! split until the refused registers are isolated ([`super::adapt`]). The first link failure
//! ends a poll and drops the connection.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_modbus::ExceptionCode;

use crate::config::{BusConfig, DeviceConfig, LoadedConfig, Profile};
use crate::model::{Field, Sample, Value};
use crate::sources::scheduler::{ConnectGate, LinkFailure, PollOutcome, Protocol, Scheduler};

use super::adapt;
use super::decode::DecodeError;
use super::link::{Link, LinkError, Reply};
use super::plan::{DevicePlan, PlanLimits, ReadRequest, SharedPoints};
use super::status::StatusBoard;

/// One Modbus device: its unit id and read plan.
pub struct ModbusDevice {
    unit: u8,
    plan: DevicePlan,
}

/// The Modbus side of a bus: its link and connect backoff.
pub struct ModbusBus {
    link: Link,
    gate: ConnectGate,
    /// Where what a device's plan learned is shown.
    status: Arc<StatusBoard>,
    /// What the bus's devices taught their plans, kept on the card.
    kept: adapt::LessonFile,
    kept_at: std::path::PathBuf,
}

/// The task that polls a Modbus bus.
pub fn scheduler(
    config: &LoadedConfig,
    bus: &BusConfig,
    samples: mpsc::Sender<Sample>,
    status: Arc<StatusBoard>,
) -> Scheduler<ModbusBus> {
    let kept_at = adapt::lesson_path(&config.gateway.gateway.data_dir, &bus.id);
    let kept = adapt::LessonFile::read(&kept_at);
    let mut shared = SharedPoints::default();
    let (known, shown) = (kept.clone(), Arc::clone(&status));
    let plan = move |device: &DeviceConfig, profile: &Profile| {
        let mut plan = shared.plan(device, profile, PlanLimits::of(bus));
        plan.lessons = known.lessons(&device.id, &plan.points);
        let summary = plan.lessons.summary(&plan.points);
        shown.update(&device.id, |s| s.adapted = summary);
        Some(ModbusDevice {
            unit: u8::try_from(device.unit?).ok()?,
            plan,
        })
    };
    let protocol = ModbusBus {
        link: Link::new(bus),
        gate: ConnectGate::new(&bus.id, bus.max_backoff.get()),
        status: Arc::clone(&status),
        kept,
        kept_at,
    };
    Scheduler::new(config, bus, protocol, plan, (samples, status))
}

impl Protocol for ModbusBus {
    type Plan = ModbusDevice;

    async fn poll(&mut self, device: &mut ModbusDevice, id: &str, cycle: u64) -> PollOutcome {
        if device.plan.lessons.expire(tokio::time::Instant::now()) {
            device.plan.replan();
            self.status.update(id, |s| s.adapted = None);
            self.keep(device, id);
        }
        let requests = device.plan.requests(cycle);
        let mut outcome = PollOutcome::default();
        // One allocation for the sample's fields, not one per doubling.
        let points: usize = requests.iter().map(|r| r.points.len()).sum();
        outcome.fields.reserve_exact(points);
        for request in requests.iter() {
            match self.transact(device.unit, request).await {
                Ok(Ok(reply)) => {
                    outcome.transactions += 1;
                    outcome.answered();
                    outcome.decode_errors +=
                        decode(&device.plan, id, request, &reply, &mut outcome.fields);
                }
                Ok(Err(ExceptionCode::IllegalDataAddress)) => {
                    outcome.refusals += 1;
                    outcome.answered();
                    if let Err(failure) = self.isolate(device, id, request, &mut outcome).await {
                        outcome.link_failure = Some(failure);
                        break;
                    }
                }
                Ok(Err(code)) => {
                    outcome.refusals += 1;
                    outcome.answered();
                    tracing::debug!(
                        device = %id,
                        function = request.function.code(),
                        start = request.start,
                        count = request.count,
                        exception = %code,
                        "Device answered with an exception"
                    );
                }
                Err(e) => {
                    outcome.link_failure = Some(link_failure(&e));
                    break;
                }
            }
        }
        outcome
    }
}

fn link_failure(e: &LinkError) -> LinkFailure {
    LinkFailure {
        timeout: matches!(e, LinkError::Timeout(_)),
        reason: e.to_string(),
    }
}

impl ModbusBus {
    /// Splits a read the device refused with exception 2 until each part is answered or is a
    /// point refused on its own; decodes what is answered into `outcome`, and replans the
    /// device with what was learned, reporting it once.
    async fn isolate(
        &mut self,
        device: &mut ModbusDevice,
        id: &str,
        refused: &ReadRequest,
        outcome: &mut PollOutcome,
    ) -> Result<(), LinkFailure> {
        let mut refused_reads = vec![refused.clone()];
        while let Some(read) = refused_reads.pop() {
            let Some((left, right)) = adapt::split(&device.plan.points, &read) else {
                device.plan.lessons.refuse(&read);
                continue;
            };
            let mut both_answered = true;
            for half in [&left, &right] {
                match self.transact(device.unit, half).await {
                    Ok(Ok(reply)) => {
                        outcome.transactions += 1;
                        outcome.decode_errors +=
                            decode(&device.plan, id, half, &reply, &mut outcome.fields);
                    }
                    Ok(Err(code)) => {
                        outcome.refusals += 1;
                        both_answered = false;
                        if code == ExceptionCode::IllegalDataAddress {
                            refused_reads.push(half.clone());
                        }
                    }
                    Err(e) => return Err(link_failure(&e)),
                }
            }
            if both_answered {
                device.plan.lessons.bar_between(&left, &right);
            }
        }
        device.plan.replan();
        if let Some(news) = device.plan.lessons.news(&device.plan.points) {
            tracing::warn!(
                device = %id,
                learned = %news,
                "The device refuses part of its register map (exception 2); reads now avoid it (re-probed every 6 hours)"
            );
        }
        let summary = device.plan.lessons.summary(&device.plan.points);
        self.status.update(id, |s| s.adapted = summary);
        self.keep(device, id);
        Ok(())
    }

    /// Writes the bus's lessons with `device`'s as they are now, on a blocking thread (rare:
    /// when a device teaches something, and when its lessons expire).
    fn keep(&mut self, device: &ModbusDevice, id: &str) {
        self.kept
            .keep(id, &device.plan.lessons, &device.plan.points);
        let Ok(bytes) = serde_json::to_vec_pretty(&self.kept) else {
            return;
        };
        let path = self.kept_at.clone();
        tokio::task::spawn_blocking(move || {
            let written = path
                .parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|()| {
                    crate::buffer::disk::replace_file(&crate::buffer::disk::OsDisk, &path, &bytes)
                });
            if let Err(e) = written {
                tracing::warn!(path = %path.display(), error = %e, "Cannot keep the adaptive-read lessons; they are learned again after a restart");
            }
        });
    }

    /// One transaction, honouring the bus-wide reconnect backoff.
    async fn transact(
        &mut self,
        unit: u8,
        request: &ReadRequest,
    ) -> Result<Result<Reply, ExceptionCode>, LinkError> {
        if !self.link.is_connected() {
            if let Some(reason) = self.gate.closed() {
                return Err(LinkError::Connect(reason.into()));
            }
        }
        let result = self.link.read(unit, request).await;
        match &result {
            Err(LinkError::Connect(reason)) => self.gate.failed(reason),
            Err(_) => self.link.disconnect(),
            Ok(_) => self.gate.succeeded(),
        }
        result
    }
}

/// Decodes the points a reply serves into `fields`; returns how many failed.
fn decode(
    plan: &DevicePlan,
    id: &str,
    request: &ReadRequest,
    reply: &Reply,
    fields: &mut Vec<Field>,
) -> u64 {
    let mut failed = 0;
    for &p in &request.points {
        let point = &plan.points[p];
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
                tracing::debug!(device = %id, point = %point.name, error = %e, "Point not decoded");
            }
        }
    }
    failed
}
