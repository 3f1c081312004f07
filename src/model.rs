//! The types that cross stage boundaries: a [`Sample`] is one device's answer to one poll, already
//! decoded into engineering units and tagged for the time-series schema of DESIGN.md.
//!
//! Samples are immutable once built; every stage after the source only reads them.

use std::sync::Arc;

/// One decoded field value. Integers stay integers so status words keep their bits and InfluxDB
/// keeps one field type per field; anything scaled becomes a float.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Float(f64),
    Int(i64),
    UInt(u64),
    Bool(bool),
    Text(String),
}

impl Value {
    /// The value as a number, for comparisons and rules; text has none.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Float(v) => Some(*v),
            Value::Int(v) => Some(*v as f64),
            Value::UInt(v) => Some(*v as f64),
            Value::Bool(v) => Some(if *v { 1.0 } else { 0.0 }),
            Value::Text(_) => None,
        }
    }
}

/// The gateway's own measurement, written by self-monitoring, and its
/// fields (the rules engine binds the `gateway` rule pack to them).
pub const GATEWAY_MEASUREMENT: &str = "gateway";
pub const GATEWAY_FIELDS: [&str; 14] = [
    "log_bytes",
    "log_fill_pct",
    "log_pending",
    "oldest_unsent_s",
    "dropped_records",
    "influx_unauthorized",
    "influx_not_acknowledged",
    "dead_lettered_lines",
    "disk_low",
    "devices_total",
    "devices_online",
    "uptime_s",
    "clock_jump_s",
    "clock_synchronised",
];

/// A named field of a sample, e.g. `outlet_pressure_mpa = 0.471`.
#[derive(Debug, PartialEq)]
pub struct Field {
    pub name: Arc<str>,
    pub value: Value,
}

impl Clone for Field {
    fn clone(&self) -> Field {
        Field {
            name: Arc::clone(&self.name),
            value: self.value.clone(),
        }
    }

    fn clone_from(&mut self, source: &Field) {
        share_from(&mut self.name, &source.name);
        self.value.clone_from(&source.value);
    }
}

/// Points `slot` where `source` points, leaving both counts alone when it already does: a
/// device's samples share their names and tags, and every count changed is an atomic write.
fn share_from<T: ?Sized>(slot: &mut Arc<T>, source: &Arc<T>) {
    if !Arc::ptr_eq(slot, source) {
        *slot = Arc::clone(source);
    }
}

/// The tag set of one device: `site`, `gateway`, `device` plus profile and device tags, sorted by
/// key so the line-protocol encoder can write them as they are. Shared by every sample of a device.
pub type TagSet = Arc<[(String, String)]>;

/// One device's answer to one poll.
#[derive(Debug, PartialEq)]
pub struct Sample {
    /// The device kind, which is the InfluxDB measurement (`pump_station`, `power_meter`, …).
    pub measurement: Arc<str>,
    /// The configured device id; also present in `tags` as `device`.
    pub device: Arc<str>,
    pub tags: TagSet,
    pub fields: Vec<Field>,
    /// Wall clock when the device answered, nanoseconds since the Unix epoch; never rewritten.
    pub time_ns: i64,
    /// Settled by the last output stage; set only on samples a publisher waits for (MQTT).
    pub receipt: Receipt,
}

impl Clone for Sample {
    fn clone(&self) -> Sample {
        Sample {
            measurement: Arc::clone(&self.measurement),
            device: Arc::clone(&self.device),
            tags: Arc::clone(&self.tags),
            fields: self.fields.clone(),
            time_ns: self.time_ns,
            receipt: self.receipt.clone(),
        }
    }

    /// Keeps this sample's field buffer: the status page's copy of each device's latest sample
    /// is refreshed at every poll without an allocation.
    fn clone_from(&mut self, source: &Sample) {
        share_from(&mut self.measurement, &source.measurement);
        share_from(&mut self.device, &source.device);
        share_from(&mut self.tags, &source.tags);
        self.fields.clone_from(&source.fields);
        self.time_ns = source.time_ns;
        self.receipt = source.receipt.clone();
    }
}

/// A publisher's claim on a sample: settled once the sample has reached its final output
/// (appended to the telemetry log, or written to the line file), or given up if it is refused
/// or dropped on the way. The MQTT source acknowledges a QoS 1 message to the broker only once
/// its sample's receipt is settled as stored, so a message whose sample never reached the disk
/// is sent again by the broker.
///
/// A clone of a sample (the status page's copy, a second output) carries no receipt: only the
/// sample on the path to the durable output does.
#[derive(Default)]
pub struct Receipt(Option<Arc<Ticket>>);

/// The publisher's side of a [`Receipt`].
#[derive(Debug)]
pub struct Ticket {
    outcome: std::sync::atomic::AtomicU8,
    wake: Arc<tokio::sync::Notify>,
}

const PENDING: u8 = 0;
const STORED: u8 = 1;
const LOST: u8 = 2;

impl Ticket {
    /// `Some(true)` once stored, `Some(false)` once refused or dropped, `None` while on the way.
    pub fn outcome(&self) -> Option<bool> {
        match self.outcome.load(std::sync::atomic::Ordering::Acquire) {
            PENDING => None,
            state => Some(state == STORED),
        }
    }
}

impl Receipt {
    /// No publisher waits for this sample.
    pub fn none() -> Receipt {
        Receipt(None)
    }

    /// A receipt and its ticket; settling it wakes `wake`.
    pub fn issue(wake: &Arc<tokio::sync::Notify>) -> (Receipt, Arc<Ticket>) {
        let ticket = Arc::new(Ticket {
            outcome: std::sync::atomic::AtomicU8::new(PENDING),
            wake: Arc::clone(wake),
        });
        (Receipt(Some(Arc::clone(&ticket))), ticket)
    }

    /// Settles the receipt (once; later calls do nothing).
    pub fn settle(&mut self, stored: bool) {
        if let Some(ticket) = self.0.take() {
            let state = if stored { STORED } else { LOST };
            ticket
                .outcome
                .store(state, std::sync::atomic::Ordering::Release);
            ticket.wake.notify_one();
        }
    }
}

impl Drop for Receipt {
    fn drop(&mut self) {
        self.settle(false);
    }
}

impl Clone for Receipt {
    fn clone(&self) -> Receipt {
        Receipt(None)
    }
}

impl PartialEq for Receipt {
    /// Receipts say nothing about a sample's content.
    fn eq(&self, _: &Receipt) -> bool {
        true
    }
}

impl std::fmt::Debug for Receipt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Receipt(pending)"
        } else {
            "Receipt(none)"
        })
    }
}

impl Sample {
    /// The value of a field by name.
    pub fn field(&self, name: &str) -> Option<&Value> {
        self.fields
            .iter()
            .find(|f| &*f.name == name)
            .map(|f| &f.value)
    }
}

/// Nanoseconds since the Unix epoch for a wall-clock instant; a clock before 1970 reads as 0.
pub fn unix_nanos(at: std::time::SystemTime) -> i64 {
    at.duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// How urgent an alarm is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warn,
    Crit,
}

impl Severity {
    pub fn name(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warn => "warn",
            Severity::Crit => "crit",
        }
    }
}

/// An alarm being raised or cleared.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AlarmEvent {
    /// Unique per alarm instance (raise and clear share it): `<device>/<rule>/<raised ns>`.
    pub id: String,
    /// The rule's key: the DOMAIN.md id with its variant, e.g. `W12.low`.
    pub rule: Arc<str>,
    pub device: Arc<str>,
    pub severity: Severity,
    /// True when raised, false when cleared.
    pub firing: bool,
    /// Raised and cleared too often lately; held firing until it settles.
    pub flapping: bool,
    /// The value that decided, and the limit it was compared with.
    pub value: f64,
    pub limit: f64,
    /// One line for a person: what happened and the reading against its limit, with units.
    pub message: String,
    /// When the condition was decided, wall clock ns (the sample's time).
    pub time_ns: i64,
    /// The parts of a message for a person's phone (empty in events written before they
    /// existed).
    #[serde(default)]
    pub words: AlarmWords,
}

/// An alarm in words for a person, in Chinese: what happened in the plan's words, where, the
/// reading against its limit with units, what to do, and since when. Never standards or
/// internal notes: those stay in the rule packs and the report's appendix.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AlarmWords {
    /// `顶层水压不足`.
    pub title: String,
    /// `9、10号楼加压泵房（高区）`.
    pub place: String,
    /// `11层顶层剩余水压 0.094 MPa，低于 0.10 MPa` or `2号泵变频器故障`.
    pub reading: String,
    /// `检查水泵出口压力与设定值；…`.
    pub action: String,
    /// When the alarm was raised, wall clock ns.
    pub since_ns: i64,
}

#[cfg(test)]
impl AlarmEvent {
    /// A raised W13 (pump fault) on booster-1 at `time_ns`, for tests.
    pub(crate) fn pump_fault(time_ns: i64, message: &str) -> AlarmEvent {
        AlarmEvent {
            id: format!("booster-1/W13/{time_ns}"),
            rule: Arc::from("W13"),
            device: Arc::from("booster-1"),
            severity: Severity::Crit,
            firing: true,
            flapping: false,
            value: 1.0,
            limit: 7.0,
            message: message.to_string(),
            time_ns,
            words: AlarmWords::default(),
        }
    }
}
