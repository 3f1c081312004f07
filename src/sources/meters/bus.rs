//! Meters on the bus scheduler ([`crate::sources::scheduler`]): DL/T 645 meters are read one
//! data identifier per transaction; a CJ/T 188 meter's or an M-Bus meter's current data comes
//! in one transaction and the profile's readings are taken from it.
//!
//! The line is a byte stream: a local serial port (`rtu`) or a transparent serial server
//! (`rtu_over_tcp`). An error reply ("no such data") is the meter refusing and the poll goes
//! on; a timeout, a damaged reply or a failed link ends the poll and drops the connection, so a
//! reply still on its way can never be read as the next meter's.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::config::{
    BusConfig, DeviceConfig, LoadedConfig, MeterAddress, MeterItem, MeterType, Profile,
    ReadingConfig, TransportKind,
};
use crate::model::{Field, Sample, Value};
use crate::sources::modbus::status::StatusBoard;
use crate::sources::modbus::timing::inter_frame_gap;
use crate::sources::scheduler::{ConnectGate, LinkFailure, PollOutcome, Protocol, Scheduler};
use crate::sources::wire;

use super::link::{transact, Decoder, TransactionError};
use super::{cjt188, dlt645, mbus, FrameError};

/// Meter lines run at 2400 baud unless the bus says otherwise (DOMAIN.md §3.2).
const DEFAULT_BAUD: u32 = 2400;

/// A byte stream to the meters.
trait Line: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Line for T {}

/// One reading of a CJ/T 188 or M-Bus meter's current data.
pub struct ItemReading {
    name: Arc<str>,
    item: MeterItem,
    bit: Option<u8>,
    scale: f64,
}

/// What to read from one meter.
pub enum MeterPlan {
    Dlt645 {
        address: [u8; 6],
        readings: Vec<(Arc<str>, &'static dlt645::DataId, f64)>,
    },
    Cjt188 {
        meter_type: MeterType,
        address: [u8; 7],
        readings: Vec<ItemReading>,
    },
    Mbus {
        address: u8,
        readings: Vec<ItemReading>,
    },
}

impl MeterPlan {
    fn new(
        address: MeterAddress,
        meter_type: Option<MeterType>,
        readings: &[ReadingConfig],
    ) -> Self {
        let items = || {
            readings
                .iter()
                .filter_map(|r| {
                    Some(ItemReading {
                        name: Arc::from(r.name.as_str()),
                        item: r.item?,
                        bit: r.bit,
                        scale: r.scale,
                    })
                })
                .collect()
        };
        match address {
            MeterAddress::Dlt645(address) => MeterPlan::Dlt645 {
                address,
                readings: readings
                    .iter()
                    .filter_map(|r| {
                        Some((Arc::from(r.name.as_str()), dlt645::data_id(r.di?)?, r.scale))
                    })
                    .collect(),
            },
            MeterAddress::Cjt188(address) => MeterPlan::Cjt188 {
                meter_type: meter_type.unwrap_or(MeterType::Heat),
                address,
                readings: items(),
            },
            MeterAddress::Mbus(address) => MeterPlan::Mbus {
                address,
                readings: items(),
            },
        }
    }
}

/// The meter side of a bus: its line, connect backoff and timing.
pub struct MeterBus {
    transport: TransportKind,
    address: Option<String>,
    serial: Option<tokio_serial::SerialPortBuilder>,
    line: Option<Box<dyn Line>>,
    gate: ConnectGate,
    timeout: Duration,
    gap: Duration,
    quiet_since: Option<Instant>,
    /// CJ/T 188 sequence number, one per request.
    ser: u8,
}

/// The task that polls a bus of meters.
pub fn scheduler(
    config: &LoadedConfig,
    bus: &BusConfig,
    samples: mpsc::Sender<Sample>,
    status: Arc<StatusBoard>,
) -> Scheduler<MeterBus> {
    Scheduler::new(config, bus, MeterBus::new(bus), plan, (samples, status))
}

/// What to ask a validated meter for; `None` without a usable meter address.
pub fn plan(device: &DeviceConfig, profile: &Profile) -> Option<MeterPlan> {
    let address = profile
        .protocol
        .meter_address(device.meter_address.as_deref()?)
        .ok()?;
    Some(MeterPlan::new(
        address,
        profile.meter_type,
        &profile.readings,
    ))
}

impl MeterBus {
    /// The meter side of `bus`, not connected yet.
    pub fn new(bus: &BusConfig) -> MeterBus {
        MeterBus {
            transport: bus.transport,
            address: bus.address.clone(),
            serial: wire::serial_port(bus, DEFAULT_BAUD),
            line: None,
            gate: ConnectGate::new(&bus.id, bus.max_backoff.get()),
            timeout: bus.timeout.get(),
            gap: inter_frame_gap(bus),
            quiet_since: None,
            ser: 0,
        }
    }
}

/// Why a transaction gave no usable frame.
pub(super) enum Failure {
    /// The meter answered with an error reply (its byte).
    Refused(u8),
    /// The link failed; the poll ends.
    Link(LinkFailure),
}

impl Protocol for MeterBus {
    type Plan = MeterPlan;

    async fn poll(&mut self, plan: &mut MeterPlan, id: &str, _cycle: u64) -> PollOutcome {
        let mut outcome = PollOutcome::default();
        match plan {
            MeterPlan::Dlt645 { address, readings } => {
                for (name, format, scale) in readings.iter() {
                    let request = dlt645::read_request(*address, format.di);
                    let reply = self.exchange(&request, dlt645::decode).await;
                    let value = reply.and_then(|frame| {
                        if frame.address != *address {
                            return Err(Failure::Link(damaged("a reply from another meter")));
                        }
                        dlt645::reply_value(&frame, format).map_err(refused_or_damaged)
                    });
                    if !note(&mut outcome, id, name, value.map(|v| v * scale)) {
                        break;
                    }
                }
            }
            MeterPlan::Cjt188 {
                meter_type,
                address,
                readings,
            } => {
                self.ser = self.ser.wrapping_add(1);
                let t = match meter_type {
                    MeterType::Heat => cjt188::HEAT_METER,
                    MeterType::Water => cjt188::COLD_WATER_METER,
                };
                let request = cjt188::read_request(t, *address, self.ser);
                let reply = self.exchange(&request, cjt188::decode).await;
                let data = reply.and_then(|frame| {
                    if frame.address != *address {
                        return Err(Failure::Link(damaged("a reply from another meter")));
                    }
                    current_data(*meter_type, &frame).map_err(refused_or_damaged)
                });
                take_items(&mut outcome, id, readings, data);
            }
            MeterPlan::Mbus { address, readings } => {
                let reply = self.exchange(&mbus::req_ud2(*address), mbus::decode).await;
                let data = reply.and_then(|response| {
                    if response.address != *address {
                        return Err(Failure::Link(damaged("a reply from another meter")));
                    }
                    Ok(CurrentData::Mbus(response))
                });
                take_items(&mut outcome, id, readings, data);
            }
        }
        outcome
    }
}

impl MeterBus {
    /// One request and its reply, honouring the bus-wide reconnect backoff and the quiet time
    /// between frames. Any failure but an error reply drops the connection.
    pub(super) async fn exchange<T>(
        &mut self,
        request: &[u8],
        decode: Decoder<T>,
    ) -> Result<T, Failure> {
        if let Some(quiet) = self.quiet_since {
            crate::sources::wait_until(quiet + self.gap).await;
        }
        let mut line = match self.line.take() {
            Some(line) => line,
            None => self.connect().await.map_err(Failure::Link)?,
        };
        let result = transact(&mut line, request, decode, self.timeout).await;
        self.quiet_since = Some(Instant::now());
        match result {
            Ok(frame) => {
                self.line = Some(line);
                Ok(frame)
            }
            Err(TransactionError::Frame(FrameError::MeterError(byte))) => {
                self.line = Some(line);
                Err(Failure::Refused(byte))
            }
            Err(e) => Err(Failure::Link(LinkFailure {
                timeout: matches!(e, TransactionError::Timeout(_)),
                reason: e.to_string(),
            })),
        }
    }

    /// Whether the last connect failed (the bus is backing off): the line itself is out of reach.
    pub(super) fn unreachable(&self) -> bool {
        self.gate.closed().is_some()
    }

    async fn connect(&mut self) -> Result<Box<dyn Line>, LinkFailure> {
        if let Some(reason) = self.gate.closed() {
            return Err(link_failure(reason));
        }
        let opened: Result<Box<dyn Line>, String> = match self.transport {
            TransportKind::Rtu => wire::open_serial(self.serial.as_ref()).map(|p| Box::new(p) as _),
            // Validation allows meters only on byte streams; `tcp` never gets here.
            TransportKind::RtuOverTcp | TransportKind::Tcp => {
                wire::connect_tcp(self.address.as_deref().unwrap_or_default())
                    .await
                    .map(|s| Box::new(s) as _)
            }
        };
        match opened {
            Ok(line) => {
                self.gate.succeeded();
                Ok(line)
            }
            Err(reason) => {
                self.gate.failed(&reason);
                Err(link_failure(&format!("cannot connect: {reason}")))
            }
        }
    }
}

fn link_failure(reason: &str) -> LinkFailure {
    LinkFailure {
        timeout: false,
        reason: reason.to_string(),
    }
}

fn damaged(reason: &str) -> LinkFailure {
    link_failure(&format!("bad reply: {reason}"))
}

/// An error reply is the meter refusing; anything else wrong with a frame is damage on the line.
fn refused_or_damaged(e: FrameError) -> Failure {
    match e {
        FrameError::MeterError(byte) => Failure::Refused(byte),
        other => Failure::Link(damaged(&other.to_string())),
    }
}

/// Adds one value (or what went wrong) to the poll; false when the poll must end.
fn note(outcome: &mut PollOutcome, id: &str, name: &Arc<str>, value: Result<f64, Failure>) -> bool {
    match value {
        Ok(v) => {
            outcome.transactions += 1;
            outcome.answered();
            outcome.fields.push(Field {
                name: Arc::clone(name),
                value: Value::Float(v),
            });
            true
        }
        Err(Failure::Refused(byte)) => {
            outcome.refusals += 1;
            outcome.answered();
            tracing::debug!(device = %id, reading = %name, error = byte, "Meter answered with an error reply");
            true
        }
        Err(Failure::Link(failure)) => {
            outcome.link_failure = Some(failure);
            false
        }
    }
}

/// A CJ/T 188 or M-Bus meter's current data.
enum CurrentData {
    Heat(cjt188::HeatReading),
    Water(cjt188::WaterReading),
    Mbus(mbus::Response),
}

fn current_data(meter_type: MeterType, frame: &cjt188::Frame) -> Result<CurrentData, FrameError> {
    match meter_type {
        MeterType::Heat => cjt188::heat_reading(frame).map(CurrentData::Heat),
        MeterType::Water => cjt188::water_reading(frame).map(CurrentData::Water),
    }
}

impl CurrentData {
    /// The value of `item`, or `None` when this meter's data has no such item.
    fn item(&self, item: MeterItem, bit: Option<u8>) -> Option<f64> {
        match self {
            CurrentData::Heat(h) => Some(match item {
                MeterItem::Heat => h.heat_kwh,
                MeterItem::SettlementHeat => h.settlement_heat_kwh,
                MeterItem::Power => h.power_kw,
                MeterItem::Flow => h.flow_m3h,
                MeterItem::Volume => h.volume_m3,
                MeterItem::SupplyTemperature => h.supply_c,
                MeterItem::ReturnTemperature => h.return_c,
                MeterItem::OperatingHours => h.operating_h,
                MeterItem::Status => status(h.status, bit),
                MeterItem::SettlementVolume | MeterItem::TemperatureDifference => return None,
            }),
            CurrentData::Water(w) => Some(match item {
                MeterItem::Volume => w.volume_m3,
                MeterItem::SettlementVolume => w.settlement_volume_m3,
                MeterItem::Status => status(w.status, bit),
                _ => return None,
            }),
            CurrentData::Mbus(response) if item == MeterItem::Status => {
                Some(status(u16::from(response.status), bit))
            }
            CurrentData::Mbus(response) => response.current(match item {
                MeterItem::Heat => mbus::Quantity::EnergyKwh,
                MeterItem::Volume => mbus::Quantity::VolumeM3,
                MeterItem::Power => mbus::Quantity::PowerKw,
                MeterItem::Flow => mbus::Quantity::FlowM3h,
                MeterItem::SupplyTemperature => mbus::Quantity::FlowTempC,
                MeterItem::ReturnTemperature => mbus::Quantity::ReturnTempC,
                MeterItem::TemperatureDifference => mbus::Quantity::TempDiffK,
                MeterItem::OperatingHours => mbus::Quantity::OperatingH,
                MeterItem::SettlementHeat | MeterItem::SettlementVolume | MeterItem::Status => {
                    return None
                }
            }),
        }
    }
}

/// The status word, or one bit of it as 0/1.
fn status(word: u16, bit: Option<u8>) -> f64 {
    match bit {
        Some(bit) => f64::from((word >> (bit & 15)) & 1),
        None => f64::from(word),
    }
}

/// Takes the readings from one transaction's current data.
fn take_items(
    outcome: &mut PollOutcome,
    id: &str,
    readings: &[ItemReading],
    data: Result<CurrentData, Failure>,
) {
    let data = match data {
        Ok(data) => data,
        Err(failure) => {
            let name: Arc<str> = Arc::from("current data");
            note(outcome, id, &name, Err(failure));
            return;
        }
    };
    outcome.transactions += 1;
    outcome.answered();
    for reading in readings {
        match data.item(reading.item, reading.bit) {
            Some(v) => outcome.fields.push(Field {
                name: Arc::clone(&reading.name),
                value: Value::Float(v * reading.scale),
            }),
            None => {
                outcome.decode_errors += 1;
                tracing::debug!(device = %id, reading = %reading.name, item = reading.item.name(), "The meter's data has no such item");
            }
        }
    }
}
