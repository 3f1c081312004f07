//! Typed configuration: the gateway file (`gateway`, `bus`, `device`, `outputs`) and the device
//! profiles it names (register maps in `<profile_dir>/<name>.toml`).
//!
//! Everything is typed once and validated fully at load ([`load`]); the rest of the program never
//! sees an unchecked value. Every struct denies unknown fields, so a misspelt key is an error and
//! not a silently ignored setting. Errors carry the file and the key path
//! (`gateway.toml: device[2].unit: …`) and all of them are reported at once.

mod duration;
mod load;
pub(crate) mod named;
mod profile;
pub mod rule_pack;
mod validate;
pub mod warnings;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

pub use duration::{parse_duration, ConfigDuration};
pub use load::{
    load, load_config, load_with, ConfigError, ConfigIssue, EnvOverlay, LoadedConfig, ReadFile,
};
pub(crate) use named::deserialize_by_name;
pub use profile::{
    Function, MeterAddress, MeterItem, MeterType, PointConfig, PointType, Profile, Ratio,
    ReadingConfig, WireProtocol, WordOrder,
};

/// The whole gateway file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    pub gateway: GatewaySection,
    #[serde(default)]
    pub bus: Vec<BusConfig>,
    #[serde(default)]
    pub device: Vec<DeviceConfig>,
    #[serde(default)]
    pub outputs: OutputsConfig,
    #[serde(default)]
    pub buffer: BufferConfig,
    #[serde(default)]
    pub alarms: AlarmsConfig,
    /// Devices that publish over MQTT (4G DTUs, battery sensors).
    #[serde(default)]
    pub mqtt_source: Option<MqttSourceConfig>,
    #[serde(default)]
    pub http: HttpConfig,
    #[serde(default)]
    pub kpi: KpiConfig,
}

/// The compliance KPIs' site parameters.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KpiConfig {
    /// Local time's offset from UTC, hours: days run from local midnight (China: 8).
    #[serde(default = "default_utc_offset_h")]
    pub utc_offset_h: f64,
    /// Households behind the DMA inflow meter; without it no leakage volume is estimated.
    #[serde(default)]
    pub households: Option<u32>,
    /// Legitimate night use per household, L/h (DOMAIN.md §4.2).
    #[serde(default = "default_night_use")]
    pub night_use_l_per_household_h: f64,
    /// Hours of night-rate leakage per day: 24 at constant pressure, fewer where the PRV lowers
    /// the day pressure (DOMAIN.md §4.2's site: 21).
    #[serde(default = "default_night_day_factor")]
    pub night_day_factor_h: f64,
    /// The heating season, `MM-DD` to `MM-DD` inclusive (Shuozhou: 10-15 to 04-15): sample-flat
    /// hours at 18 °C are only counted in it, and rules with `season = "heating"` only run in it.
    #[serde(default = "default_season_start")]
    pub heating_season_start: String,
    #[serde(default = "default_season_end")]
    pub heating_season_end: String,
}

impl KpiConfig {
    /// The heating season, when both ends are dates.
    pub fn heating_season(&self) -> Option<crate::calendar::Season> {
        Some(crate::calendar::Season {
            start: month_day(&self.heating_season_start)?,
            end: month_day(&self.heating_season_end)?,
        })
    }
}

/// `MM-DD` as (month, day), when it is a date of some year.
fn month_day(text: &str) -> Option<(u32, u32)> {
    let (m, d) = text.split_once('-')?;
    let (m, d): (u32, u32) = (m.parse().ok()?, d.parse().ok()?);
    let days = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    (text.len() == 5 && (1..=12).contains(&m) && d >= 1 && d <= days[m as usize - 1])
        .then_some((m, d))
}

fn default_season_start() -> String {
    "10-15".into()
}
fn default_season_end() -> String {
    "04-15".into()
}

impl Default for KpiConfig {
    fn default() -> Self {
        KpiConfig {
            utc_offset_h: default_utc_offset_h(),
            households: None,
            night_use_l_per_household_h: default_night_use(),
            night_day_factor_h: default_night_day_factor(),
            heating_season_start: default_season_start(),
            heating_season_end: default_season_end(),
        }
    }
}

fn default_utc_offset_h() -> f64 {
    8.0
}
fn default_night_use() -> f64 {
    1.7
}
fn default_night_day_factor() -> f64 {
    24.0
}

/// The local status page, health check, metrics and status API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Loopback by default: the page has no authentication.
    #[serde(default = "default_http_listen")]
    pub listen: String,
    /// Host names the page is opened by besides the gateway's addresses and `localhost`
    /// (`gateway.local`); a request naming another host is refused (DNS rebinding).
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            enabled: true,
            listen: default_http_listen(),
            allowed_hosts: Vec::new(),
        }
    }
}

fn yes() -> bool {
    true
}

fn default_http_listen() -> String {
    "127.0.0.1:9850".into()
}

/// A broker to subscribe to, and how its messages become samples.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttSourceConfig {
    pub host: String,
    #[serde(default = "default_mqtt_port")]
    pub port: u16,
    /// Default `rgw-<gateway id>-in`.
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    #[serde(default)]
    pub password_env: Option<String>,
    #[serde(default = "default_keep_alive")]
    pub keep_alive: ConfigDuration,
    /// TLS to the broker (then usually port 8883).
    #[serde(default)]
    pub tls: Option<MqttTls>,
    /// false (default): the broker keeps the subscriptions and queues QoS 1 messages while the
    /// gateway is away, so a restart loses nothing.
    #[serde(default)]
    pub clean_session: bool,
    /// A publishing device silent this long is forgotten: its alarms are cleared and it gets
    /// no more rules until it publishes again (a sensor taken away must not alarm forever).
    #[serde(default = "default_forget_after")]
    pub forget_after: ConfigDuration,
    #[serde(rename = "mapping")]
    pub mappings: Vec<MqttMapping>,
}

fn default_forget_after() -> ConfigDuration {
    ConfigDuration::from_millis(7 * 86_400_000)
}

impl MqttSourceConfig {
    pub fn broker(&self, gateway: &str) -> BrokerSettings<'_> {
        BrokerSettings {
            host: &self.host,
            port: self.port,
            client_id: self
                .client_id
                .clone()
                .unwrap_or_else(|| format!("rgw-{gateway}-in")),
            username: self.username.as_deref(),
            password_file: self.password_file.as_deref(),
            password_env: self.password_env.as_deref(),
            keep_alive: self.keep_alive,
            tls: self.tls.as_ref(),
        }
    }
}

/// The connection settings the MQTT source and the MQTT alarm sink share, borrowed from their
/// sections.
#[derive(Debug, Clone)]
pub struct BrokerSettings<'a> {
    pub host: &'a str,
    pub port: u16,
    pub client_id: String,
    pub username: Option<&'a str>,
    pub password_file: Option<&'a std::path::Path>,
    pub password_env: Option<&'a str>,
    pub keep_alive: ConfigDuration,
    pub tls: Option<&'a MqttTls>,
}

/// TLS settings of an MQTT connection: the broker is verified against `ca_file` (PEM) or, without
/// one, the system's roots; `client_cert_file` and `client_key_file` (PEM) authenticate the
/// gateway to brokers that ask for a client certificate.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttTls {
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub client_cert_file: Option<PathBuf>,
    #[serde(default)]
    pub client_key_file: Option<PathBuf>,
}

/// How a payload is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadFormat {
    /// A JSON object; each field is found by a JSON pointer (`/p_out_kpa`).
    Flat,
    /// EMQX Neuron's upload formats: `"values": {tag: value}` or `"tags": [{name, value}]`
    /// (either is accepted); each field names a Neuron tag; time from `timestamp` (ms); device
    /// from `node` unless the mapping says otherwise.
    Neuron,
}

const PAYLOAD_FORMATS: &[(&str, PayloadFormat)] = &[
    ("flat", PayloadFormat::Flat),
    ("neuron", PayloadFormat::Neuron),
];
named::deserialize_by_name!(PayloadFormat, PAYLOAD_FORMATS);

/// Messages on one topic filter and how they become samples of one measurement.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttMapping {
    /// Topic filter, wildcards allowed (`site/+/gas/+/telemetry`).
    pub topic: String,
    pub format: PayloadFormat,
    /// The device kind the samples belong to (`gas_regulator`, `valve_well`, `room`).
    pub measurement: String,
    /// What people call these devices (`调压箱`), in alarm messages: a device without an entry
    /// in `names` is `调压箱 GRB-01`; default: its id alone.
    #[serde(default)]
    pub label: Option<String>,
    /// Device id → what people call that device (`GRB-01 = "3号楼东侧调压箱"`).
    #[serde(default)]
    pub names: BTreeMap<String, String>,
    /// The device ids this mapping may produce, besides those `names` names: a message for any
    /// other id (or a polled device's) is refused and counted. At least one of `devices`,
    /// `device_pattern` and `names` is required.
    #[serde(default)]
    pub devices: Vec<String>,
    /// … or ids matching this pattern (`*` any run of characters, `?` one): `GRB-*`.
    #[serde(default)]
    pub device_pattern: Option<String>,
    /// The device id is this topic level (0-based) …
    #[serde(default)]
    pub device_level: Option<usize>,
    /// … or this JSON pointer into the payload (`/dev`).
    #[serde(default)]
    pub device_pointer: Option<String>,
    /// The timestamp (seconds or milliseconds since the epoch, told apart by size) is at this
    /// JSON pointer; without one (and for Neuron without `timestamp`), the arrival time.
    #[serde(default)]
    pub time_pointer: Option<String>,
    /// How often the devices report; they count as silent (X1) after three of these.
    #[serde(default = "default_report_interval")]
    pub interval: ConfigDuration,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    #[serde(rename = "field")]
    pub fields: Vec<MqttField>,
}

fn default_report_interval() -> ConfigDuration {
    ConfigDuration::from_millis(15 * 60_000)
}

/// One field of a mapping: value = raw × scale + offset.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttField {
    /// The field name written (`outlet_pressure_kpa`).
    pub name: String,
    /// Flat: a JSON pointer (`/p_out_kpa`); Neuron: the tag name.
    pub from: String,
    #[serde(default)]
    pub unit: Option<String>,
    /// What people call the value (`出口压力`), in alarm messages; default: the name.
    #[serde(default)]
    pub label: Option<String>,
    #[serde(default = "one")]
    pub scale: f64,
    #[serde(default)]
    pub offset: f64,
}

fn one() -> f64 {
    1.0
}

/// Alarm rules.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlarmsConfig {
    /// Rule pack files (`config/rules/*.toml`), relative to this file.
    #[serde(default)]
    pub rule_packs: Vec<PathBuf>,
    /// Rules switched off: a rule (`"W11"`, `"W12.low"`) everywhere, or on one device
    /// (`"booster-1:W11"`).
    #[serde(default)]
    pub disabled: Vec<String>,
    /// Group robots and HTTP endpoints that get every alarm at or above their severity.
    #[serde(default)]
    pub webhook: Vec<WebhookConfig>,
    /// An MQTT broker that gets every alarm: retained state per alarm and an event stream.
    #[serde(default)]
    pub mqtt: Option<MqttAlarmConfig>,
    /// Site- or device-specific limits and times for pack rules.
    #[serde(default, rename = "override")]
    pub overrides: Vec<RuleOverride>,
    /// How long an incident gathers its alarms before the robots are told (crit incidents
    /// sooner), and how often a growing incident may send an update.
    #[serde(default = "default_incident_settle")]
    pub incident_settle: ConfigDuration,
    #[serde(default = "default_incident_settle_crit")]
    pub incident_settle_crit: ConfigDuration,
    #[serde(default = "default_incident_update_after")]
    pub incident_update_after: ConfigDuration,
}

impl Default for AlarmsConfig {
    fn default() -> Self {
        AlarmsConfig {
            rule_packs: Vec::new(),
            disabled: Vec::new(),
            webhook: Vec::new(),
            mqtt: None,
            overrides: Vec::new(),
            incident_settle: default_incident_settle(),
            incident_settle_crit: default_incident_settle_crit(),
            incident_update_after: default_incident_update_after(),
        }
    }
}

fn default_incident_settle() -> ConfigDuration {
    ConfigDuration::from_millis(60_000)
}
fn default_incident_settle_crit() -> ConfigDuration {
    ConfigDuration::from_millis(10_000)
}
fn default_incident_update_after() -> ConfigDuration {
    ConfigDuration::from_millis(600_000)
}

/// New values for some of a rule's limits and times, on every device or on the listed ones.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleOverride {
    /// The rule's key (`W12.low`) or id (`W12`: every variant).
    pub rule: String,
    /// Only these devices (default: every device the rule watches).
    #[serde(default)]
    pub devices: Vec<String>,
    #[serde(default)]
    pub above: Option<f64>,
    #[serde(default)]
    pub below: Option<f64>,
    #[serde(default)]
    pub clear_margin: Option<f64>,
    #[serde(default)]
    pub nominal: Option<f64>,
    #[serde(default)]
    pub plus_pct: Option<f64>,
    #[serde(default)]
    pub minus_pct: Option<f64>,
    #[serde(default)]
    pub rise: Option<f64>,
    #[serde(default)]
    pub ratio: Option<f64>,
    #[serde(rename = "for", default)]
    pub hold: Option<ConfigDuration>,
    #[serde(default)]
    pub clear_for: Option<ConfigDuration>,
    #[serde(default)]
    pub after: Option<ConfigDuration>,
    #[serde(default)]
    pub window: Option<ConfigDuration>,
}

/// Alarm publishing to an MQTT 3.1.1 broker.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttAlarmConfig {
    pub host: String,
    #[serde(default = "default_mqtt_port")]
    pub port: u16,
    /// Default `rgw-<gateway id>`.
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    #[serde(default)]
    pub password_env: Option<String>,
    #[serde(default = "default_keep_alive")]
    pub keep_alive: ConfigDuration,
    /// TLS to the broker (then usually port 8883).
    #[serde(default)]
    pub tls: Option<MqttTls>,
    /// Topics are `<prefix>/<gateway>/alarm/<device>/<rule>` (retained) and
    /// `<prefix>/<gateway>/events`.
    #[serde(default = "default_topic_prefix")]
    pub topic_prefix: String,
    #[serde(default = "default_mqtt_min_severity")]
    pub min_severity: crate::model::Severity,
}

impl MqttAlarmConfig {
    pub fn broker(&self, gateway: &str) -> BrokerSettings<'_> {
        BrokerSettings {
            host: &self.host,
            port: self.port,
            client_id: self
                .client_id
                .clone()
                .unwrap_or_else(|| format!("rgw-{gateway}")),
            username: self.username.as_deref(),
            password_file: self.password_file.as_deref(),
            password_env: self.password_env.as_deref(),
            keep_alive: self.keep_alive,
            tls: self.tls.as_ref(),
        }
    }
}

fn default_mqtt_port() -> u16 {
    1883
}
fn default_keep_alive() -> ConfigDuration {
    ConfigDuration::from_millis(30_000)
}
fn default_topic_prefix() -> String {
    "rgw".into()
}
fn default_mqtt_min_severity() -> crate::model::Severity {
    crate::model::Severity::Info
}

/// Which message shape a webhook wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookKind {
    /// WeCom (企业微信) group robot, markdown message.
    WeCom,
    /// DingTalk (钉钉) group robot, markdown message, optionally signed.
    DingTalk,
    /// The alarm event as JSON.
    Generic,
}

const WEBHOOK_KINDS: &[(&str, WebhookKind)] = &[
    ("wecom", WebhookKind::WeCom),
    ("dingtalk", WebhookKind::DingTalk),
    ("generic", WebhookKind::Generic),
];
named::deserialize_by_name!(WebhookKind, WEBHOOK_KINDS);

/// One webhook. Its URL (which carries the robot's key) and signing secret are secrets.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Unique; names the webhook's outbox and log lines.
    pub name: String,
    pub kind: WebhookKind,
    #[serde(default)]
    pub url_file: Option<PathBuf>,
    #[serde(default)]
    pub url_env: Option<String>,
    /// DingTalk "加签" secret.
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    #[serde(default)]
    pub secret_env: Option<String>,
    /// Alarms below this severity are not sent here.
    #[serde(default = "default_min_severity")]
    pub min_severity: crate::model::Severity,
    /// Messages per minute at most (both robots allow 20).
    #[serde(default = "default_per_minute")]
    pub per_minute: u32,
    #[serde(default = "default_webhook_timeout")]
    pub timeout: ConfigDuration,
}

fn default_min_severity() -> crate::model::Severity {
    crate::model::Severity::Warn
}
fn default_per_minute() -> u32 {
    20
}
fn default_webhook_timeout() -> ConfigDuration {
    ConfigDuration::from_millis(10_000)
}

/// The telemetry log on disk (under `data_dir/telemetry`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BufferConfig {
    /// All segments together, MiB; beyond it the oldest segment is dropped and counted.
    #[serde(default = "default_max_size_mb")]
    pub max_size_mb: u64,
    /// One segment file, MiB.
    #[serde(default = "default_segment_size_mb")]
    pub segment_size_mb: u64,
    /// Longest time an accepted reading waits for fdatasync (what power loss can cost).
    #[serde(default = "default_sync_interval")]
    pub sync_interval: ConfigDuration,
}

impl Default for BufferConfig {
    fn default() -> Self {
        BufferConfig {
            max_size_mb: default_max_size_mb(),
            segment_size_mb: default_segment_size_mb(),
            sync_interval: default_sync_interval(),
        }
    }
}

fn default_max_size_mb() -> u64 {
    1024
}
fn default_segment_size_mb() -> u64 {
    8
}
fn default_sync_interval() -> ConfigDuration {
    ConfigDuration::from_millis(1000)
}

/// Identity of this gateway and where it keeps its files.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewaySection {
    /// Becomes the `gateway` tag of every line.
    pub id: String,
    /// Becomes the `site` tag; the community's name, UTF-8 (Chinese names are normal).
    pub site: String,
    /// Durable state (the telemetry log and alarm outbox live here).
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Where device profiles are looked up; relative paths are relative to the config file.
    #[serde(default = "default_profile_dir")]
    pub profile_dir: PathBuf,
    /// Threads that run the daemon's tasks. 1 (default): everything on one thread, which on a
    /// Pi costs the least, since devices answer in milliseconds and every hand-over between
    /// threads is a wake-up; more only for very large sites.
    #[serde(default = "default_worker_threads")]
    pub worker_threads: std::num::NonZeroUsize,
}

fn default_worker_threads() -> std::num::NonZeroUsize {
    std::num::NonZeroUsize::MIN
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("/var/lib/retrofit-gateway")
}

fn default_profile_dir() -> PathBuf {
    PathBuf::from("profiles")
}

/// How a bus reaches its devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    /// Modbus TCP (MBAP header), including DTUs in "Modbus TCP gateway" mode.
    Tcp,
    /// Modbus RTU on a local serial port.
    Rtu,
    /// Raw RTU frames through a transparent serial server or DTU.
    RtuOverTcp,
}

impl TransportKind {
    pub fn name(self) -> &'static str {
        named::name_of(TRANSPORTS, self)
    }
}

const TRANSPORTS: &[(&str, TransportKind)] = &[
    ("tcp", TransportKind::Tcp),
    ("rtu", TransportKind::Rtu),
    ("rtu_over_tcp", TransportKind::RtuOverTcp),
];
named::deserialize_by_name!(TransportKind, TRANSPORTS);

/// Serial parity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Parity {
    #[default]
    None,
    Even,
    Odd,
}

const PARITIES: &[(&str, Parity)] = &[
    ("none", Parity::None),
    ("even", Parity::Even),
    ("odd", Parity::Odd),
];
named::deserialize_by_name!(Parity, PARITIES);

/// One bus: a serial port or one TCP endpoint. One task owns it; one transaction at a time.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusConfig {
    pub id: String,
    pub transport: TransportKind,
    /// `host:port` for `tcp` and `rtu_over_tcp`.
    #[serde(default)]
    pub address: Option<String>,
    /// Serial device path for `rtu`, e.g. `/dev/ttyUSB0`.
    #[serde(default)]
    pub device: Option<PathBuf>,
    /// Serial line speed. For `tcp` it may describe the RS-485 line behind a Modbus TCP gateway,
    /// which only the bus-time estimate of `plan` uses.
    #[serde(default)]
    pub baud: Option<u32>,
    #[serde(default)]
    pub parity: Parity,
    #[serde(default = "default_data_bits")]
    pub data_bits: u8,
    #[serde(default = "default_stop_bits")]
    pub stop_bits: u8,
    /// How long one transaction may take before the link counts as failed.
    #[serde(default = "default_timeout")]
    pub timeout: ConfigDuration,
    /// Silence kept between transactions; default 3.5 character times on serial lines
    /// (1.75 ms above 19 200 baud), none on Modbus TCP.
    #[serde(default)]
    pub inter_frame_gap: Option<ConfigDuration>,
    /// Largest run of unused registers the planner reads through to save a request.
    #[serde(default = "default_max_gap")]
    pub max_gap: u16,
    /// Most registers in one read; 125 is the protocol limit, some devices accept fewer.
    #[serde(default = "default_max_registers")]
    pub max_registers: u16,
    /// Longest pause before a failing device is probed again.
    #[serde(default = "default_max_backoff")]
    pub max_backoff: ConfigDuration,
}

impl BusConfig {
    /// Where the bus is reached: the `host:port` of a serial server or DTU, or the serial port.
    pub fn endpoint(&self) -> String {
        self.address
            .clone()
            .or_else(|| self.device.as_ref().map(|d| d.display().to_string()))
            .unwrap_or_default()
    }
}

fn default_data_bits() -> u8 {
    8
}
fn default_stop_bits() -> u8 {
    1
}
fn default_timeout() -> ConfigDuration {
    ConfigDuration::from_millis(500)
}
fn default_max_gap() -> u16 {
    8
}
fn default_max_registers() -> u16 {
    125
}
fn default_max_backoff() -> ConfigDuration {
    ConfigDuration::from_millis(60_000)
}

/// One field device.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    pub id: String,
    /// What people call it (`9、10号楼加压泵房`), in alarm messages; default: the id.
    #[serde(default)]
    pub name: Option<String>,
    /// The device that feeds this one (a supply tree for power, the zone's inlet for water,
    /// the substation for heating): alarms on devices with the same root are one incident.
    #[serde(default)]
    pub upstream: Option<String>,
    pub bus: String,
    /// Modbus unit (slave) id, 1–247 (wider type so that 300 is reported as out of range).
    #[serde(default)]
    pub unit: Option<u16>,
    /// A meter's address: 12 digits (DL/T 645), 14 digits (CJ/T 188), or the M-Bus primary
    /// address 1–250.
    #[serde(default)]
    pub meter_address: Option<String>,
    /// Profile name: `<profile_dir>/<profile>.toml`.
    pub profile: String,
    /// Poll interval; points may be polled less often, in whole multiples of it.
    pub interval: ConfigDuration,
    /// Extra tags for every line of this device (zone, building …).
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Overrides the profile's `address_offset` (maps that document 1-based addresses).
    #[serde(default)]
    pub address_offset: Option<i32>,
    /// Current-transformer ratio applied to points marked `ratio = "ct"` or `"pt_ct"`.
    #[serde(default = "default_ratio")]
    pub ct_ratio: f64,
    /// Voltage-transformer ratio applied to points marked `ratio = "pt"` or `"pt_ct"`.
    #[serde(default = "default_ratio")]
    pub pt_ratio: f64,
    /// Building geometry the pressure rules need (top-floor residual pressure, floor inlets).
    #[serde(default)]
    pub site: Option<SiteGeometry>,
}

fn default_ratio() -> f64 {
    1.0
}

/// Building geometry of the zone a pressure sensor serves (DOMAIN.md §2).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteGeometry {
    pub storeys: u32,
    pub storey_height_m: f64,
    /// Sensor height relative to ground floor level (negative: below, e.g. a basement pump room).
    #[serde(default)]
    pub sensor_elevation_m: f64,
    /// Floors from the bottom whose inlets have branch PRVs (DOMAIN.md §2: floors 1–4 of an
    /// 11-storey zone at 0.47 MPa).
    #[serde(default)]
    pub branch_prv_floors: u32,
    /// The zone's design flow, m³/h; pipe losses scale with the measured flow against it.
    #[serde(default)]
    pub design_flow_m3h: Option<f64>,
    /// A heating network's circulation flow, m³/h (make-up water is judged against it).
    #[serde(default)]
    pub circulation_m3h: Option<f64>,
    /// Where the zone's flow is measured when this device does not measure it (a PRV-fed zone:
    /// the DMA flowmeter), for the pipe losses of the top-floor rule.
    #[serde(default)]
    pub flow_from: Option<FlowSource>,
}

/// Another device's flow field: `{ device = "dma-flow", field = "flow_rate_m3h" }`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowSource {
    pub device: String,
    pub field: String,
}

/// Where samples go.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputsConfig {
    #[serde(default)]
    pub line_protocol: Option<LineProtocolOutput>,
    #[serde(default)]
    pub influxdb: Option<InfluxOutput>,
}

/// Which InfluxDB write API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InfluxApi {
    /// `/api/v2/write` (InfluxDB 2.x, VictoriaMetrics): org, bucket, token.
    V2,
    /// `/write` (InfluxDB 1.x): database, retention policy, user and password.
    V1,
}

const INFLUX_APIS: &[(&str, InfluxApi)] = &[("v2", InfluxApi::V2), ("v1", InfluxApi::V1)];
named::deserialize_by_name!(InfluxApi, INFLUX_APIS);

/// The central InfluxDB. Every reading goes through the telemetry log first.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InfluxOutput {
    /// Base URL, `http://` or `https://` (TLS via rustls with the system's trust store).
    pub url: String,
    pub api: InfluxApi,
    /// v2: organisation and bucket.
    #[serde(default)]
    pub org: Option<String>,
    #[serde(default)]
    pub bucket: Option<String>,
    /// v2: the token, read from this file (first line) …
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// … or from this environment variable. Never logged.
    #[serde(default)]
    pub token_env: Option<String>,
    /// v1: database and optional retention policy.
    #[serde(default)]
    pub database: Option<String>,
    #[serde(default)]
    pub retention_policy: Option<String>,
    /// v1: user, with the password from a file or an environment variable.
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    #[serde(default)]
    pub password_env: Option<String>,
    /// Per request.
    #[serde(default = "default_influx_timeout")]
    pub timeout: ConfigDuration,
    /// Readings wait at most this long before they are sent.
    #[serde(default = "default_flush_interval")]
    pub flush_interval: ConfigDuration,
    /// Lines per request (at most 5000).
    #[serde(default = "default_batch_lines")]
    pub batch_lines: usize,
    /// Bytes of line protocol per request before compression (at most 1 MiB).
    #[serde(default = "default_batch_bytes")]
    pub batch_bytes: usize,
    #[serde(default = "default_gzip")]
    pub gzip: bool,
    /// Lines InfluxDB refused are kept in `data_dir/dead-letter.lp`, this many MiB at most
    /// (with its predecessor `dead-letter.lp.1`); older ones are rotated out and counted.
    #[serde(default = "default_dead_letter_max_mb")]
    pub dead_letter_max_mb: u64,
}

impl InfluxOutput {
    /// An output with every option at its documented default and no names or secrets set.
    pub fn new(url: impl Into<String>, api: InfluxApi) -> InfluxOutput {
        InfluxOutput {
            url: url.into(),
            api,
            org: None,
            bucket: None,
            token_file: None,
            token_env: None,
            database: None,
            retention_policy: None,
            username: None,
            password_file: None,
            password_env: None,
            timeout: default_influx_timeout(),
            flush_interval: default_flush_interval(),
            batch_lines: default_batch_lines(),
            batch_bytes: default_batch_bytes(),
            gzip: default_gzip(),
            dead_letter_max_mb: default_dead_letter_max_mb(),
        }
    }
}

fn default_influx_timeout() -> ConfigDuration {
    ConfigDuration::from_millis(10_000)
}
fn default_flush_interval() -> ConfigDuration {
    ConfigDuration::from_millis(5_000)
}
fn default_batch_lines() -> usize {
    5000
}
fn default_batch_bytes() -> usize {
    // A quarter of the 1 MiB allowed: the batch is held three times over (as read, as records,
    // as the body), and while a backlog drains that is most of the gateway's memory.
    256 << 10
}
fn default_gzip() -> bool {
    true
}
fn default_dead_letter_max_mb() -> u64 {
    16
}
fn default_line_file_max_mb() -> u64 {
    64
}

/// InfluxDB line protocol written to a file or standard output.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineProtocolOutput {
    /// A file path (appended to), or `-` for standard output.
    pub path: String,
    /// A file and its predecessor `<path>.1` together stay below this many MiB; older lines are
    /// rotated out.
    #[serde(default = "default_line_file_max_mb")]
    pub max_size_mb: u64,
}
