//! Cross-field validation: everything serde cannot check on its own. Each check adds an issue with
//! its key path and what was expected; nothing stops at the first problem.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use crate::line_protocol;

use super::{
    ConfigDuration, ConfigIssue, Function, GatewayConfig, PointType, Profile, TransportKind,
    WireProtocol,
};

mod meters;

/// Tags the gateway sets itself; a device or profile may not override them.
const RESERVED_TAGS: [&str; 3] = ["site", "gateway", "device"];

struct Issues<'a> {
    file: &'a str,
    list: Vec<ConfigIssue>,
}

impl<'a> Issues<'a> {
    fn new(file: &'a str) -> Issues<'a> {
        Issues {
            file,
            list: Vec::new(),
        }
    }

    fn add(&mut self, path: String, problem: impl Into<String>) {
        self.list.push(ConfigIssue {
            file: self.file.to_string(),
            path,
            problem: problem.into(),
        });
    }

    /// `value` must lie in `low..=high`.
    fn in_range<T: PartialOrd + std::fmt::Display>(
        &mut self,
        path: String,
        value: T,
        low: T,
        high: T,
    ) -> bool {
        let inside = low <= value && value <= high;
        if !inside {
            self.add(
                path,
                format!("{value} is out of range (expected {low}–{high})"),
            );
        }
        inside
    }

    fn positive(&mut self, path: String, d: ConfigDuration) {
        if d.get().is_zero() {
            self.add(
                path,
                "0s is not allowed (expected a duration greater than zero)",
            );
        }
    }

    fn text(&mut self, path: String, value: &str) {
        if value.trim().is_empty() {
            self.add(path, "is empty (expected a non-empty name)");
        } else if value.chars().any(char::is_control) {
            self.add(
                path,
                "contains a control character (expected printable text)",
            );
        }
    }

    /// Settings of an MQTT connection under `prefix`.
    fn broker(&mut self, prefix: &str, broker: &super::BrokerSettings<'_>) {
        self.text(format!("{prefix}.host"), broker.host);
        if broker.port == 0 {
            self.add(format!("{prefix}.port"), "0 (expected a TCP port)");
        }
        if broker.password_file.is_some() && broker.password_env.is_some() {
            self.add(
                format!("{prefix}.password_env"),
                "set together with password_file (expected one of them)",
            );
        }
        let keep_alive = broker.keep_alive.get();
        if keep_alive < std::time::Duration::from_secs(5)
            || keep_alive.as_secs() > u64::from(u16::MAX)
        {
            self.add(
                format!("{prefix}.keep_alive"),
                format!(
                    "{} (expected 5s to 65535s, MQTT's limit)",
                    broker.keep_alive
                ),
            );
        }
        self.text(format!("{prefix}.client_id"), &broker.client_id);
        if let Some(tls) = broker.tls {
            if tls.client_cert_file.is_some() != tls.client_key_file.is_some() {
                self.add(
                    format!("{prefix}.tls.client_key_file"),
                    "set without client_cert_file or the other way round (expected both or neither)",
                );
            }
        }
    }

    /// Text that becomes a tag value in InfluxDB.
    fn tag_value(&mut self, path: String, value: &str) {
        match line_protocol::tag_value_problem(value) {
            Some(problem) => self.add(
                path,
                format!("{problem} (expected text InfluxDB can store as a tag value)"),
            ),
            None => self.text(path, value),
        }
    }

    /// A field or tag key must not be one InfluxDB keeps for itself.
    fn not_reserved(&mut self, path: String, name: &str, what: &str) {
        if line_protocol::RESERVED_KEYS.contains(&name) {
            self.add(
                path,
                format!("{name:?} is reserved by InfluxDB (expected another {what} name)"),
            );
        }
    }

    fn tags(&mut self, prefix: &str, tags: &BTreeMap<String, String>) {
        for (key, value) in tags {
            let path = format!("{prefix}.{key}");
            if RESERVED_TAGS.contains(&key.as_str()) {
                self.add(
                    path,
                    format!("{key:?} is set by the gateway (expected another tag name)"),
                );
            } else if !is_identifier(key) {
                self.add(
                    path,
                    "is not a tag name (expected lower-case letters, digits and '_')",
                );
            } else {
                self.not_reserved(path.clone(), key, "tag");
                self.tag_value(path, value);
            }
        }
    }
}

/// Field and tag names: lower-case ASCII words, so that queries never need quoting.
fn is_identifier(name: &str) -> bool {
    name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Validates a profile on its own.
pub fn profile(file: &str, profile: &Profile) -> Vec<ConfigIssue> {
    let mut issues = Issues::new(file);
    if !is_identifier(&profile.kind) {
        issues.add(
            "kind".into(),
            format!(
                "{:?} is not a measurement name (expected lower-case letters, digits and '_', e.g. \"pump_station\")",
                profile.kind
            ),
        );
    }
    issues.tags("tags", &profile.tags);
    if profile.protocol != WireProtocol::Modbus {
        meters::profile(&mut issues, profile);
        return issues.list;
    }
    if profile.points.is_empty() {
        issues.add(
            "point".into(),
            "no points (expected at least one [[point]])",
        );
    }
    for (key, present) in [
        ("reading", !profile.readings.is_empty()),
        ("meter_type", profile.meter_type.is_some()),
    ] {
        if present {
            issues.add(
                key.into(),
                "only applies to meter profiles (expected protocol = \"dlt645\", \"cjt188\" or \"mbus\")",
            );
        }
    }
    let mut names = HashSet::new();
    for (i, point) in profile.points.iter().enumerate() {
        let at = |key: &str| format!("point[{i}].{key}");
        issues.not_reserved(at("name"), &point.name, "field");
        if !is_identifier(&point.name) {
            issues.add(
                at("name"),
                format!(
                    "{:?} is not a field name (expected lower-case letters, digits and '_', e.g. \"outlet_pressure_mpa\")",
                    point.name
                ),
            );
        } else if !names.insert(point.name.as_str()) {
            issues.add(
                at("name"),
                format!(
                    "{:?} is used twice (expected unique point names)",
                    point.name
                ),
            );
        }
        let Some(function) = Function::from_code(point.fc) else {
            issues.add(
                at("fc"),
                format!(
                    "{} is not a read function (expected 1, 2, 3 or 4)",
                    point.fc
                ),
            );
            continue;
        };
        match (point.kind, function.reads_bits()) {
            (PointType::Bool, false) => issues.add(
                at("type"),
                format!(
                    "bool needs a bit read (expected fc 1 or 2, or type \"bit\" with fc {})",
                    point.fc
                ),
            ),
            (kind, true) if kind != PointType::Bool => issues.add(
                at("type"),
                format!("fc {} reads single bits (expected type \"bool\")", point.fc),
            ),
            _ => {}
        }
        match (point.kind, point.bit) {
            (PointType::Bit, None) => {
                issues.add(at("bit"), "missing for type \"bit\" (expected 0–15)")
            }
            (PointType::Bit, Some(bit)) if bit > 15 => {
                issues.add(at("bit"), format!("{bit} is out of range (expected 0–15)"))
            }
            (kind, Some(_)) if kind != PointType::Bit => {
                issues.add(at("bit"), "only applies to type \"bit\"")
            }
            _ => {}
        }
        match (point.kind, point.length) {
            (PointType::String, None) => issues.add(
                at("length"),
                "missing for type \"string\" (expected 1–125 registers)",
            ),
            (PointType::String, Some(n)) if n == 0 || n > 125 => issues.add(
                at("length"),
                format!("{n} is out of range (expected 1–125 registers)"),
            ),
            (kind, Some(_)) if kind != PointType::String => {
                issues.add(at("length"), "only applies to type \"string\"")
            }
            _ => {}
        }
        let width = u32::from(point.kind.width(point.length));
        let start = i64::from(point.address) + i64::from(profile.address_offset);
        if start < 0 || start + i64::from(width) > 65_536 {
            issues.add(
                at("address"),
                format!(
                    "{} with address_offset {} and {} register(s) leaves the address space (expected 0–65535)",
                    point.address, profile.address_offset, width
                ),
            );
        }
        if !point.scale.is_finite() || point.scale == 0.0 {
            issues.add(
                at("scale"),
                format!(
                    "{} is not usable (expected a finite non-zero number)",
                    point.scale
                ),
            );
        }
        if !point.offset.is_finite() {
            issues.add(at("offset"), "is not finite (expected a number)");
        }
        let scaled = point.scale != 1.0 || point.offset != 0.0 || point.ratio.is_some();
        if scaled && !point.kind.is_numeric() {
            issues.add(
                at("scale"),
                "scale, offset and ratio only apply to numeric types (expected none for bool, bit and string)",
            );
        }
        if let Some(interval) = point.interval {
            issues.positive(at("interval"), interval);
        }
    }
    issues.list
}

/// Validates the gateway file against itself and its (already validated) profiles.
pub fn gateway(
    file: &str,
    config: &GatewayConfig,
    profiles: &BTreeMap<String, Arc<Profile>>,
) -> Vec<ConfigIssue> {
    let mut issues = Issues::new(file);
    issues.tag_value("gateway.id".into(), &config.gateway.id);
    issues.tag_value("gateway.site".into(), &config.gateway.site);

    let kpi = &config.kpi;
    if !(-12.0..=14.0).contains(&kpi.utc_offset_h) {
        issues.add(
            "kpi.utc_offset_h".into(),
            format!("{} (expected hours, −12 to 14)", kpi.utc_offset_h),
        );
    }
    if !(kpi.night_use_l_per_household_h >= 0.0 && kpi.night_use_l_per_household_h < 100.0) {
        issues.add(
            "kpi.night_use_l_per_household_h".into(),
            format!(
                "{} (expected litres per hour, 0–100)",
                kpi.night_use_l_per_household_h
            ),
        );
    }
    if !(kpi.night_day_factor_h > 0.0 && kpi.night_day_factor_h <= 24.0) {
        issues.add(
            "kpi.night_day_factor_h".into(),
            format!(
                "{} (expected hours, above 0 and at most 24)",
                kpi.night_day_factor_h
            ),
        );
    }

    if kpi.heating_season().is_none() {
        issues.add(
            "kpi.heating_season_start".into(),
            format!(
                "{:?} to {:?} (expected two dates as \"MM-DD\", e.g. \"10-15\" and \"04-15\")",
                kpi.heating_season_start, kpi.heating_season_end
            ),
        );
    }

    let mut buses: HashMap<&str, (TransportKind, u16)> = HashMap::new();
    for (i, bus) in config.bus.iter().enumerate() {
        let at = |key: &str| format!("bus[{i}].{key}");
        issues.text(at("id"), &bus.id);
        if buses
            .insert(bus.id.as_str(), (bus.transport, bus.max_registers))
            .is_some()
        {
            issues.add(
                at("id"),
                format!("{:?} is used twice (expected unique bus ids)", bus.id),
            );
        }
        let transport = bus.transport.name();
        match bus.transport {
            TransportKind::Tcp | TransportKind::RtuOverTcp => {
                match &bus.address {
                    None => issues.add(
                        at("address"),
                        format!("missing for transport {transport:?} (expected \"host:port\")"),
                    ),
                    Some(address) if !is_host_port(address) => issues.add(
                        at("address"),
                        format!("{address:?} is not an address (expected \"host:port\")"),
                    ),
                    Some(_) => {}
                }
                if bus.device.is_some() {
                    issues.add(
                        at("device"),
                        format!("a serial device does not apply to transport {transport:?} (expected address)"),
                    );
                }
            }
            TransportKind::Rtu => {
                if bus.device.is_none() {
                    issues.add(
                        at("device"),
                        "missing for transport \"rtu\" (expected a serial port such as \"/dev/ttyUSB0\")",
                    );
                }
                if bus.address.is_some() {
                    issues.add(
                        at("address"),
                        "a network address does not apply to transport \"rtu\" (expected device)",
                    );
                }
            }
        }
        if let Some(baud) = bus.baud {
            issues.in_range(at("baud"), baud, 300, 921_600);
        }
        if !matches!(bus.data_bits, 7 | 8) {
            issues.add(
                at("data_bits"),
                format!("{} (expected 7 or 8)", bus.data_bits),
            );
        }
        if !matches!(bus.stop_bits, 1 | 2) {
            issues.add(
                at("stop_bits"),
                format!("{} (expected 1 or 2)", bus.stop_bits),
            );
        }
        issues.positive(at("timeout"), bus.timeout);
        issues.positive(at("max_backoff"), bus.max_backoff);
        issues.in_range(at("max_registers"), bus.max_registers, 1, 125);
    }

    let mut device_ids = HashSet::new();
    let mut units: HashSet<(&str, u16)> = HashSet::new();
    let mut meter_addresses = HashSet::new();
    let mut bus_protocols = HashMap::new();
    for (i, device) in config.device.iter().enumerate() {
        let at = |key: &str| format!("device[{i}].{key}");
        issues.tag_value(at("id"), &device.id);
        if !device_ids.insert(device.id.as_str()) {
            issues.add(
                at("id"),
                format!("{:?} is used twice (expected unique device ids)", device.id),
            );
        }
        if !buses.contains_key(device.bus.as_str()) {
            let known: Vec<&str> = config.bus.iter().map(|b| b.id.as_str()).collect();
            issues.add(
                at("bus"),
                format!("no bus named {:?} (expected one of {known:?})", device.bus),
            );
        }
        let protocol = profiles
            .get(&device.profile)
            .map_or(WireProtocol::Modbus, |p| p.protocol);
        if protocol == WireProtocol::Modbus {
            if device.meter_address.is_some() {
                issues.add(
                    at("meter_address"),
                    "only applies to meters (expected unit for a Modbus device)",
                );
            }
            match device.unit {
                None => issues.add(at("unit"), "missing (expected the Modbus unit id, 1–247)"),
                Some(unit) => {
                    let unit_ok = issues.in_range(at("unit"), unit, 1, 247);
                    if unit_ok && !units.insert((device.bus.as_str(), unit)) {
                        issues.add(
                            at("unit"),
                            format!(
                                "unit {unit} is already used on bus {:?} (expected one device per unit id)",
                                device.bus
                            ),
                        );
                    }
                }
            }
        } else {
            meters::device(&mut issues, &at, device, protocol, &mut meter_addresses);
        }
        if let Some(&(transport, _)) = buses.get(device.bus.as_str()) {
            meters::bus_protocol(
                &mut issues,
                &at,
                device,
                protocol,
                transport,
                &mut bus_protocols,
            );
        }
        issues.positive(at("interval"), device.interval);
        if let Some(up) = &device.upstream {
            upstream_chain(&mut issues, at("upstream"), config, device, up);
        }
        issues.tags(&at("tags"), &device.tags);
        for (key, ratio) in [("ct_ratio", device.ct_ratio), ("pt_ratio", device.pt_ratio)] {
            if !ratio.is_finite() || ratio <= 0.0 {
                issues.add(at(key), format!("{ratio} (expected a positive number)"));
            }
        }
        if let Some(site) = &device.site {
            if site.storeys == 0 || site.storeys > 100 {
                issues.add(
                    at("site.storeys"),
                    format!("{} (expected 1–100)", site.storeys),
                );
            }
            if !(site.storey_height_m > 1.5 && site.storey_height_m < 10.0) {
                issues.add(
                    at("site.storey_height_m"),
                    format!("{} (expected metres, 1.5–10)", site.storey_height_m),
                );
            }
            if !site.sensor_elevation_m.is_finite() {
                issues.add(
                    at("site.sensor_elevation_m"),
                    "is not finite (expected metres)",
                );
            }
            if let Some(source) = &site.flow_from {
                match config.device.iter().find(|d| d.id == source.device) {
                    None => issues.add(
                        at("site.flow_from.device"),
                        format!(
                            "no device named {:?} (expected the device that measures the zone's flow)",
                            source.device
                        ),
                    ),
                    Some(meter) => {
                        if profiles
                            .get(&meter.profile)
                            .is_some_and(|p| !p.has_field(&source.field))
                        {
                            issues.add(
                                at("site.flow_from.field"),
                                format!(
                                    "{:?} (profile {:?}) has no field {:?} (expected its flow field, m³/h)",
                                    source.device, meter.profile, source.field
                                ),
                            );
                        }
                    }
                }
            }
        }
        let Some(profile) = profiles.get(&device.profile) else {
            continue;
        };
        if let Some((_, max_registers)) = buses.get(device.bus.as_str()) {
            let too_wide: Vec<String> = profile
                .points
                .iter()
                .filter(|p| p.fc >= 3 && p.kind.width(p.length) > *max_registers)
                .map(|p| format!("{} ({})", p.name, p.kind.width(p.length)))
                .collect();
            if !too_wide.is_empty() {
                issues.add(
                    at("profile"),
                    format!(
                        "points wider than bus {:?} reads at once: {} (expected at most max_registers = {max_registers} registers per point)",
                        device.bus,
                        too_wide.join(", ")
                    ),
                );
            }
        }
        let offset = device.address_offset.unwrap_or(profile.address_offset);
        let mut not_multiples: Vec<(&str, ConfigDuration)> = Vec::new();
        for point in &profile.points {
            let start = i64::from(point.address) + i64::from(offset);
            let width = i64::from(point.kind.width(point.length));
            // A profile's own offset is checked with the profile; only an override is checked here.
            if device.address_offset.is_some() && (start < 0 || start + width > 65_536) {
                issues.add(
                    at("address_offset"),
                    format!(
                        "{offset} moves point {:?} (address {}) out of the address space (expected 0–65535)",
                        point.name, point.address
                    ),
                );
            }
            if let Some(interval) = point.interval {
                if !is_whole_multiple(interval.get(), device.interval.get()) {
                    not_multiples.push((point.name.as_str(), interval));
                }
            }
        }
        if !not_multiples.is_empty() && !device.interval.get().is_zero() {
            let listed: Vec<String> = not_multiples
                .iter()
                .map(|(name, interval)| format!("{name} ({interval})"))
                .collect();
            issues.add(
                at("interval"),
                format!(
                    "{} does not divide the interval of {} (expected a device interval that divides every point interval of profile {:?})",
                    device.interval,
                    listed.join(", "),
                    device.profile
                ),
            );
        }
    }
    if let Some(influx) = &config.outputs.influxdb {
        influxdb(&mut issues, influx);
    }
    if let Some(mqtt) = &config.alarms.mqtt {
        issues.broker("alarms.mqtt", &mqtt.broker(&config.gateway.id));
        let prefix = &mqtt.topic_prefix;
        if prefix.is_empty() || prefix.contains(['#', '+']) || prefix.ends_with('/') {
            issues.add(
                "alarms.mqtt.topic_prefix".into(),
                format!("{prefix:?} (expected topic levels without wildcards or a trailing '/')"),
            );
        }
    }
    if let Some(source) = &config.mqtt_source {
        mqtt_source(&mut issues, source, config);
    }
    if config.http.listen.parse::<std::net::SocketAddr>().is_err() {
        issues.add(
            "http.listen".into(),
            format!(
                "{:?} is not an address (expected \"ip:port\", e.g. \"127.0.0.1:9850\")",
                config.http.listen
            ),
        );
    }
    let mut hook_names = HashSet::new();
    for (i, hook) in config.alarms.webhook.iter().enumerate() {
        let at = |key: &str| format!("alarms.webhook[{i}].{key}");
        let name_ok = !hook.name.is_empty()
            && hook
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !name_ok {
            issues.add(
                at("name"),
                format!("{:?} (expected letters, digits, '-' and '_')", hook.name),
            );
        } else if !hook_names.insert(hook.name.as_str()) {
            issues.add(
                at("name"),
                format!(
                    "{:?} is used twice (expected unique webhook names)",
                    hook.name
                ),
            );
        }
        if hook.url_file.is_some() == hook.url_env.is_some() {
            issues.add(at("url_file"), "set url_file or url_env, not both and not neither (expected where the URL is kept)");
        }
        let signed = hook.secret_file.is_some() || hook.secret_env.is_some();
        if signed && hook.kind != super::WebhookKind::DingTalk {
            issues.add(
                at("secret_file"),
                "only DingTalk robots are signed (expected no secret)",
            );
        }
        if hook.secret_file.is_some() && hook.secret_env.is_some() {
            issues.add(
                at("secret_env"),
                "set together with secret_file (expected one of them)",
            );
        }
        issues.in_range(at("per_minute"), hook.per_minute, 1, 600);
        issues.positive(at("timeout"), hook.timeout);
    }
    let buffer = &config.buffer;
    issues.in_range(
        "buffer.segment_size_mb".into(),
        buffer.segment_size_mb,
        1,
        256,
    );
    if buffer.max_size_mb < 2 * buffer.segment_size_mb {
        issues.add(
            "buffer.max_size_mb".into(),
            format!(
                "{} is less than two segments of {} MiB (expected at least {})",
                buffer.max_size_mb,
                buffer.segment_size_mb,
                2 * buffer.segment_size_mb
            ),
        );
    }
    issues.positive("buffer.sync_interval".into(), buffer.sync_interval);
    if let Some(output) = &config.outputs.line_protocol {
        if output.path.trim().is_empty() {
            issues.add(
                "outputs.line_protocol.path".into(),
                "is empty (expected a file path or \"-\" for standard output)",
            );
        }
    }
    issues.list
}

fn influxdb(issues: &mut Issues, influx: &super::InfluxOutput) {
    let at = |key: &str| format!("outputs.influxdb.{key}");
    if !(influx.url.starts_with("http://") || influx.url.starts_with("https://")) {
        issues.add(
            at("url"),
            format!(
                "{:?} is not an http(s) URL (expected e.g. \"https://influx.example.cn:8086\")",
                influx.url
            ),
        );
    }
    let required = |issues: &mut Issues, key: &str, value: &Option<String>, api: &str| {
        if value.as_deref().is_none_or(|v| v.trim().is_empty()) {
            issues.add(
                at(key),
                format!("missing for api = {api:?} (expected a name)"),
            );
        }
    };
    match influx.api {
        super::InfluxApi::V2 => {
            required(issues, "org", &influx.org, "v2");
            required(issues, "bucket", &influx.bucket, "v2");
        }
        super::InfluxApi::V1 => required(issues, "database", &influx.database, "v1"),
    }
    if influx.token_file.is_some() && influx.token_env.is_some() {
        issues.add(
            at("token_env"),
            "set together with token_file (expected one of them)",
        );
    }
    if influx.password_file.is_some() && influx.password_env.is_some() {
        issues.add(
            at("password_env"),
            "set together with password_file (expected one of them)",
        );
    }
    issues.positive(at("timeout"), influx.timeout);
    issues.positive(at("flush_interval"), influx.flush_interval);
    issues.in_range(at("batch_lines"), influx.batch_lines, 1, 5000);
    issues.in_range(at("batch_bytes"), influx.batch_bytes, 1024, 1 << 20);
}

fn is_whole_multiple(value: Duration, base: Duration) -> bool {
    let (value, base) = (value.as_millis(), base.as_millis());
    base > 0 && value >= base && value % base == 0
}

/// An `upstream` names a configured device, and following the links never comes back.
fn upstream_chain(
    issues: &mut Issues,
    key: String,
    config: &GatewayConfig,
    device: &crate::config::DeviceConfig,
    up: &str,
) {
    let mut seen = vec![device.id.as_str()];
    let mut next = Some(up);
    while let Some(id) = next {
        if seen.contains(&id) {
            issues.add(
                key,
                format!(
                    "{} (expected a supply tree: following upstream comes back to {id:?})",
                    seen.join(" → ")
                ),
            );
            return;
        }
        let Some(feeder) = config.device.iter().find(|d| d.id == id) else {
            issues.add(
                key,
                format!("no device named {id:?} (expected the device that feeds this one)"),
            );
            return;
        };
        seen.push(id);
        next = feeder.upstream.as_deref();
    }
}

fn is_host_port(address: &str) -> bool {
    match address.rsplit_once(':') {
        Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0),
        None => false,
    }
}

/// Validates the rules of one pack; `keys` holds the rule keys of the packs before it.
pub fn rules(
    file: &str,
    keys: &mut HashSet<String>,
    rules: &[crate::config::rule_pack::RuleConfig],
    config: &GatewayConfig,
    profiles: &BTreeMap<String, Arc<Profile>>,
) -> Vec<ConfigIssue> {
    let mut issues = Issues::new(file);
    for (i, rule) in rules.iter().enumerate() {
        let at = |key: &str| format!("rule[{i}].{key}");
        if !keys.insert(rule.key()) {
            issues.add(
                at("id"),
                format!(
                    "{:?} is already defined (expected a variant to tell the entries apart)",
                    rule.key()
                ),
            );
        }
        for (key, problem) in rule.problems() {
            issues.add(at(key), problem);
        }
        let mut check = |key: &str, devices: &[String], measurement: &str, fields: &[&str]| {
            for device in devices {
                let Some(entry) = config.device.iter().find(|d| &d.id == device) else {
                    issues.add(
                        at(key),
                        format!("no device named {device:?} (expected a configured device)"),
                    );
                    continue;
                };
                let Some(profile) = profiles.get(&entry.profile) else {
                    continue;
                };
                if profile.kind != measurement {
                    issues.add(
                        at(key),
                        format!("{device:?} is a {:?}, not a {measurement:?} (expected devices of the rule's measurement)", profile.kind),
                    );
                }
                for field in fields {
                    if !profile.has_field(field) {
                        issues.add(
                            at(key),
                            format!("{device:?} (profile {:?}) has no field {field:?} (expected the fields the rule reads)", entry.profile),
                        );
                    }
                }
            }
        };
        check("devices", &rule.devices, &rule.measurement, &rule.reads());
        if let Some(measurement) = &rule.sub_measurement {
            let fields: Vec<&str> = rule.sub_fields.iter().map(String::as_str).collect();
            check("sub_devices", &rule.sub_devices, measurement, &fields);
        }
    }
    issues.list
}

/// Overrides name rules of the loaded packs and configured devices.
pub fn overrides(
    file: &str,
    config: &GatewayConfig,
    rules: &[crate::config::rule_pack::RuleConfig],
) -> Vec<ConfigIssue> {
    let mut issues = Issues::new(file);
    for (i, entry) in config.alarms.overrides.iter().enumerate() {
        if !rules.iter().any(|r| r.is_named(&entry.rule)) {
            issues.add(
                format!("alarms.override[{i}].rule"),
                format!(
                    "no rule {:?} in the rule packs (expected a rule id or key)",
                    entry.rule
                ),
            );
        }
        for device in &entry.devices {
            if !config.device.iter().any(|d| &d.id == device) {
                issues.add(
                    format!("alarms.override[{i}].devices"),
                    format!("no device named {device:?} (expected a configured device)"),
                );
            }
        }
    }
    issues.list
}

/// Whether `filter` is a valid MQTT topic filter: `+` and `#` only as whole levels, `#` last.
fn is_topic_filter(filter: &str) -> bool {
    let levels: Vec<&str> = filter.split('/').collect();
    !filter.is_empty()
        && !filter.contains('\0')
        && levels.iter().enumerate().all(|(i, level)| {
            (*level == "#" && i == levels.len() - 1) || *level == "+" || !level.contains(['+', '#'])
        })
}

/// A JSON pointer (RFC 6901): empty, or `/`-separated tokens.
fn is_json_pointer(pointer: &str) -> bool {
    pointer.starts_with('/')
}

/// A mapping says which device ids it may produce, none of them a polled device's.
fn device_ids(
    issues: &mut Issues<'_>,
    at: &dyn Fn(&str) -> String,
    mapping: &super::MqttMapping,
    config: &GatewayConfig,
) {
    if mapping.devices.is_empty() && mapping.names.is_empty() && mapping.device_pattern.is_none() {
        issues.add(
            at("devices"),
            "missing (say which device ids this mapping may produce: devices = [\"GRB-01\", …], device_pattern = \"GRB-*\", or names = { \"GRB-01\" = \"…\" }; anyone holding the broker credential could otherwise speak for any device)",
        );
    }
    if let Some(pattern) = &mapping.device_pattern {
        if pattern.is_empty() || pattern.chars().any(|c| c.is_control() || "/+#".contains(c)) {
            issues.add(
                at("device_pattern"),
                format!("{pattern:?} is not a device id pattern (expected characters of ids, '*' for any run and '?' for one, e.g. \"GRB-*\")"),
            );
        }
    }
    for id in mapping.devices.iter().chain(mapping.names.keys()) {
        if config.device.iter().any(|d| d.id == *id) {
            issues.add(
                at("devices"),
                format!("{id:?} is the id of a polled device (a publisher cannot speak for it)"),
            );
        }
    }
}

fn mqtt_source(issues: &mut Issues<'_>, source: &super::MqttSourceConfig, config: &GatewayConfig) {
    issues.broker("mqtt_source", &source.broker(&config.gateway.id));
    issues.positive("mqtt_source.forget_after".into(), source.forget_after);
    if source.mappings.is_empty() {
        issues.add(
            "mqtt_source.mapping".into(),
            "no mapping (expected at least one [[mqtt_source.mapping]])",
        );
    }
    for (i, mapping) in source.mappings.iter().enumerate() {
        let at = |key: &str| format!("mqtt_source.mapping[{i}].{key}");
        if !is_topic_filter(&mapping.topic) {
            issues.add(
                at("topic"),
                format!("{:?} is not a topic filter (expected levels separated by '/', with '+' or a final '#' as whole levels)", mapping.topic),
            );
        }
        if !is_identifier(&mapping.measurement) {
            issues.add(
                at("measurement"),
                format!("{:?} is not a measurement name (expected lower-case letters, digits and '_', e.g. \"gas_regulator\")", mapping.measurement),
            );
        }
        let from_payload =
            mapping.device_pointer.is_some() || mapping.format == super::PayloadFormat::Neuron;
        if mapping.device_level.is_some() && mapping.device_pointer.is_some() {
            issues.add(
                at("device_pointer"),
                "set together with device_level (expected one of them)",
            );
        } else if mapping.device_level.is_none() && !from_payload {
            issues.add(
                at("device_level"),
                "missing (expected device_level, the topic level with the device id, or device_pointer)",
            );
        }
        if let Some(level) = mapping.device_level {
            let levels: Vec<&str> = mapping.topic.split('/').collect();
            match levels.get(level) {
                Some(&"+") => {}
                _ => issues.add(
                    at("device_level"),
                    format!("{level} is not a '+' level of {:?} (expected the index of the level that varies per device)", mapping.topic),
                ),
            }
        }
        for (key, pointer, example) in [
            ("device_pointer", &mapping.device_pointer, "/dev"),
            ("time_pointer", &mapping.time_pointer, "/ts"),
        ] {
            if let Some(pointer) = pointer {
                if !is_json_pointer(pointer) {
                    issues.add(
                        at(key),
                        format!("{pointer:?} is not a JSON pointer (expected e.g. {example:?})"),
                    );
                }
            }
        }
        issues.positive(at("interval"), mapping.interval);
        issues.tags(&at("tags"), &mapping.tags);
        device_ids(issues, &at, mapping, config);
        if mapping.fields.is_empty() {
            issues.add(
                at("field"),
                "no field (expected at least one [[mqtt_source.mapping.field]])",
            );
        }
        let mut names = HashSet::new();
        for (j, field) in mapping.fields.iter().enumerate() {
            let at = |key: &str| format!("mqtt_source.mapping[{i}].field[{j}].{key}");
            issues.not_reserved(at("name"), &field.name, "field");
            if !is_identifier(&field.name) {
                issues.add(
                    at("name"),
                    format!(
                        "{:?} is not a field name (expected lower-case letters, digits and '_')",
                        field.name
                    ),
                );
            } else if !names.insert(field.name.as_str()) {
                issues.add(
                    at("name"),
                    format!(
                        "{:?} is used twice (expected unique field names)",
                        field.name
                    ),
                );
            }
            if mapping.format == super::PayloadFormat::Flat && !is_json_pointer(&field.from) {
                issues.add(
                    at("from"),
                    format!(
                        "{:?} is not a JSON pointer (expected e.g. \"/p_out_kpa\")",
                        field.from
                    ),
                );
            } else {
                issues.text(at("from"), &field.from);
            }
            if !field.scale.is_finite() || field.scale == 0.0 || !field.offset.is_finite() {
                issues.add(
                    at("scale"),
                    format!(
                        "scale {} offset {} (expected a finite non-zero scale and a finite offset)",
                        field.scale, field.offset
                    ),
                );
            }
        }
    }
}
