//! Commissioning: what an installer asks a device at the cabinet, before trusting the config.
//!
//! `read` polls one configured device once, as the gateway would, and prints every point with
//! its value, unit and (Modbus) the raw registers it came from, with the time each request took
//! and any refusal by name: a wrong word order, a 1-based register map or a wrong unit id shows
//! here at once, which is what Modbus Poll or `telegraf --test` are otherwise used for. The text
//! is in Chinese, for the installer.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_modbus::ExceptionCode;

use crate::config::{BusConfig, DeviceConfig, LoadedConfig, MeterType, Profile, WireProtocol};
use crate::model::Value;
use crate::sources::meters::bus::MeterBus;
use crate::sources::modbus::link::{Link, Reply};
use crate::sources::modbus::plan::{DevicePlan, PlanLimits};
use crate::sources::scheduler::Protocol as _;

/// What `read` found: the text to print, and how many of the device's points it read.
pub struct Reading {
    pub text: String,
    pub read: usize,
    pub points: usize,
}

impl Reading {
    /// Every point was read.
    pub fn complete(&self) -> bool {
        self.read == self.points
    }
}

/// Modbus exception codes by name, as a device manual names them.
pub fn exception_name(code: ExceptionCode) -> String {
    let number = u8::from(code);
    let name = match number {
        0x01 => "非法功能 Illegal function",
        0x02 => "非法数据地址 Illegal data address",
        0x03 => "非法数据值 Illegal data value",
        0x04 => "从站设备故障 Server device failure",
        0x05 => "已确认 Acknowledge",
        0x06 => "从站设备忙 Server device busy",
        0x08 => "存储奇偶错 Memory parity error",
        0x0A => "网关路径不可用 Gateway path unavailable",
        0x0B => "网关目标设备无响应 Gateway target device failed to respond",
        _ => "未定义 Undefined",
    };
    format!("异常 {number:02X}（{name}）")
}

fn value_text(value: &Value) -> String {
    match value {
        Value::Float(v) => format!("{v}"),
        Value::Int(v) => v.to_string(),
        Value::UInt(v) => v.to_string(),
        Value::Bool(v) => v.to_string(),
        Value::Text(v) => format!("{v:?}"),
    }
}

fn millis(elapsed: Duration) -> String {
    format!("{:.0} ms", elapsed.as_secs_f64() * 1000.0)
}

/// Polls `device` of `config` once and describes what it answered; `raw` adds each Modbus
/// reply's registers in full.
pub async fn read(config: &LoadedConfig, device: &str, raw: bool) -> anyhow::Result<Reading> {
    let Some(device) = config.gateway.device.iter().find(|d| d.id == device) else {
        let known: Vec<&str> = config
            .gateway
            .device
            .iter()
            .map(|d| d.id.as_str())
            .collect();
        anyhow::bail!("没有设备 {device:?}（配置里的设备：{}）", known.join(", "));
    };
    let bus = config
        .gateway
        .bus
        .iter()
        .find(|b| b.id == device.bus)
        .ok_or_else(|| anyhow::anyhow!("{}: 没有总线 {:?}", device.id, device.bus))?;
    let profile = config
        .profile_of(device)
        .ok_or_else(|| anyhow::anyhow!("{}: 没有型号 {:?}", device.id, device.profile))?;
    let mut text = String::new();
    let _ = writeln!(
        text,
        "设备 {}{} · 总线 {}（{} {}）· 型号 {}",
        device.id,
        device
            .name
            .as_deref()
            .map(|n| format!("（{n}）"))
            .unwrap_or_default(),
        bus.id,
        bus.transport.name(),
        bus.endpoint(),
        device.profile,
    );
    let started = Instant::now();
    let (read, points) = if profile.protocol == WireProtocol::Modbus {
        read_modbus(bus, device, profile, raw, &mut text).await
    } else {
        read_meter(bus, device, profile, &mut text).await
    };
    let _ = writeln!(
        text,
        "读到 {read}/{points} 个点，总用时 {}",
        millis(started.elapsed())
    );
    Ok(Reading { text, read, points })
}

/// Every point of a Modbus device, read by the plan's requests of its first cycle; (points
/// read, points).
async fn read_modbus(
    bus: &BusConfig,
    device: &DeviceConfig,
    profile: &Profile,
    raw: bool,
    text: &mut String,
) -> (usize, usize) {
    let points = profile.points.len();
    let Some(unit) = device.unit.and_then(|u| u8::try_from(u).ok()) else {
        let _ = writeln!(text, "没有站号（unit）");
        return (0, points);
    };
    let unit_of = |name: &str| {
        profile
            .points
            .iter()
            .find(|p| p.name == name)
            .and_then(|p| p.unit.clone())
            .unwrap_or_default()
    };
    let mut plan = DevicePlan::new(device, profile, PlanLimits::of(bus));
    let mut link = Link::new(bus);
    let mut read = 0;
    for request in plan.requests(0).iter() {
        let asked = Instant::now();
        let answer = link.read(unit, request).await;
        let _ = writeln!(
            text,
            "\n站号 {unit} 功能码 {} 起始 {} 数量 {}：{}",
            request.function.code(),
            request.start,
            request.count,
            millis(asked.elapsed())
        );
        let reply = match answer {
            Ok(Ok(reply)) => reply,
            Ok(Err(code)) => {
                let names: Vec<&str> = request
                    .points
                    .iter()
                    .map(|&p| &*plan.points[p].name)
                    .collect();
                let _ = writeln!(
                    text,
                    "  {}；未读到：{}",
                    exception_name(code),
                    names.join("、")
                );
                continue;
            }
            Err(e) => {
                let _ = writeln!(text, "  通信失败：{e}（检查接线、波特率、站号和地址）");
                return (read, points);
            }
        };
        if raw {
            let _ = writeln!(text, "  原始回复：{}", reply_text(&reply));
        }
        for &p in &request.points {
            let point = &plan.points[p];
            let at = usize::from(point.address - request.start);
            let (value, registers) = match &reply {
                Reply::Words(words) => (
                    point.decoder.decode_words(words, at),
                    words
                        .get(at..at + usize::from(point.width))
                        .map(|w| {
                            w.iter()
                                .map(|w| format!("{w:04X}"))
                                .collect::<Vec<_>>()
                                .join(" ")
                        })
                        .unwrap_or_default(),
                ),
                Reply::Bits(bits) => (
                    point.decoder.decode_bits(bits, at),
                    bits.get(at)
                        .map(|b| u8::from(*b).to_string())
                        .unwrap_or_default(),
                ),
            };
            let shown = match value {
                Ok(v) => {
                    read += 1;
                    format!("{} {}", value_text(&v), unit_of(&point.name))
                }
                Err(e) => format!("无法解码：{e}"),
            };
            let _ = writeln!(
                text,
                "  {:<24} {:<20} 寄存器 {} [{}]",
                point.name,
                shown.trim_end(),
                point.address,
                registers
            );
        }
    }
    (read, points)
}

/// Every reading of a meter, asked as one poll asks it; (readings read, readings).
async fn read_meter(
    bus: &BusConfig,
    device: &DeviceConfig,
    profile: &Profile,
    text: &mut String,
) -> (usize, usize) {
    let points = profile.readings.len();
    let Some(mut plan) = crate::sources::meters::bus::plan(device, profile) else {
        let _ = writeln!(text, "没有可用的表地址（meter_address）");
        return (0, points);
    };
    let mut meters = MeterBus::new(bus);
    let outcome = meters.poll(&mut plan, &device.id, 0).await;
    let _ = writeln!(
        text,
        "\n表地址 {}：应答 {} 帧，拒绝 {} 次",
        device.meter_address.as_deref().unwrap_or("?"),
        outcome.transactions,
        outcome.refusals
    );
    let fields: Vec<(Arc<str>, Value)> = outcome
        .fields
        .into_iter()
        .map(|f| (f.name, f.value))
        .collect();
    for reading in &profile.readings {
        let shown = fields
            .iter()
            .find(|(name, _)| **name == *reading.name)
            .map(|(_, v)| {
                format!(
                    "{} {}",
                    value_text(v),
                    reading.unit.as_deref().unwrap_or("")
                )
            })
            .unwrap_or_else(|| "未读到".into());
        let _ = writeln!(text, "  {:<24} {}", reading.name, shown.trim_end());
    }
    if let Some(failure) = &outcome.link_failure {
        let _ = writeln!(
            text,
            "  通信失败：{}（检查接线、波特率和表地址）",
            failure.reason
        );
    }
    (fields.len(), points)
}

fn reply_text(reply: &Reply) -> String {
    match reply {
        Reply::Words(words) => words
            .iter()
            .map(|w| format!("{w:04X}"))
            .collect::<Vec<_>>()
            .join(" "),
        Reply::Bits(bits) => bits.iter().map(|b| if *b { '1' } else { '0' }).collect(),
    }
}

/// `check-config --connect`: every bus opened and every device read once, the buses side by
/// side; one line per device (✓ or ✗, points read, the first problem), and whether all were
/// read completely.
pub async fn connect_all(config: &LoadedConfig) -> (String, bool) {
    let config = Arc::new(config.clone());
    let mut buses = tokio::task::JoinSet::new();
    for (index, bus) in config.gateway.bus.iter().enumerate() {
        let config = Arc::clone(&config);
        let bus = bus.id.clone();
        buses.spawn(async move {
            let mut lines = String::new();
            let mut complete = true;
            for device in config.gateway.device.iter().filter(|d| d.bus == bus) {
                let line = match read(&config, &device.id, false).await {
                    Ok(reading) => {
                        complete &= reading.complete();
                        // The gravest problem first: the line, a refusal, then a value.
                        let problem = ["通信失败", "没有", "异常", "无法解码", "未读到"]
                            .iter()
                            .find_map(|word| {
                                reading
                                    .text
                                    .lines()
                                    .map(str::trim)
                                    .find(|l| l.contains(word))
                            })
                            .map(|l| format!("：{l}"))
                            .unwrap_or_default();
                        let mark = if reading.complete() { "✓" } else { "✗" };
                        format!(
                            "  {mark} {:<14} {}/{} 个点{problem}",
                            device.id, reading.read, reading.points
                        )
                    }
                    Err(e) => {
                        complete = false;
                        format!("  ✗ {:<14} {e}", device.id)
                    }
                };
                lines.push_str(&line);
                lines.push('\n');
            }
            (index, bus, lines, complete)
        });
    }
    let mut results = Vec::new();
    while let Some(joined) = buses.join_next().await {
        if let Ok(result) = joined {
            results.push(result);
        }
    }
    results.sort_by_key(|(index, ..)| *index);
    let mut text = String::new();
    let mut all = results.len() == config.gateway.bus.len();
    for (_, bus, lines, complete) in results {
        all &= complete;
        let _ = writeln!(text, "总线 {bus}：");
        text.push_str(&lines);
    }
    (text, all)
}

/// Unit ids from `1-247`, `1,2,10-20` and the like (each 1–250: Modbus assigns 1–247, M-Bus
/// primary addresses run to 250).
pub fn parse_units(text: &str) -> Result<Vec<u8>, String> {
    let mut units = std::collections::BTreeSet::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (low, high) = part.split_once('-').unwrap_or((part, part));
        let parse = |n: &str| {
            n.trim()
                .parse::<u8>()
                .ok()
                .filter(|u| (1..=250).contains(u))
                .ok_or_else(|| format!("{n:?} is not a unit id (expected 1 to 250)"))
        };
        let (low, high) = (parse(low)?, parse(high)?);
        if low > high {
            return Err(format!("{part:?} runs backwards (expected low-high)"));
        }
        units.extend(low..=high);
    }
    if units.is_empty() {
        return Err("no unit id (expected a list such as 1-247 or 1,2,10-20)".into());
    }
    Ok(units.into_iter().collect())
}

/// What answered a scan.
pub struct Scan {
    pub text: String,
    /// The unit ids that answered (with data or an exception); on a meter line, none.
    pub answered: Vec<u8>,
    /// On a meter line, the addresses found, as the config writes them.
    pub meters: Vec<String>,
}

/// `scan`: asks each unit id of `units` on Modbus bus `bus` for holding register 0 and lists
/// those that answer (with data or an exception: either way a device is there), next to the
/// devices the config puts there.
pub async fn scan(
    config: &LoadedConfig,
    bus: &str,
    units: &[u8],
    timeout: Option<Duration>,
) -> anyhow::Result<Scan> {
    let Some(bus) = config.gateway.bus.iter().find(|b| b.id == bus) else {
        let known: Vec<&str> = config.gateway.bus.iter().map(|b| b.id.as_str()).collect();
        anyhow::bail!("没有总线 {bus:?}（配置里的总线：{}）", known.join(", "));
    };
    let on_bus: Vec<&DeviceConfig> = config
        .gateway
        .device
        .iter()
        .filter(|d| d.bus == bus.id)
        .collect();
    let mut probing = bus.clone();
    if let Some(timeout) = timeout {
        probing.timeout = crate::config::ConfigDuration(timeout);
    }
    let mut protocols: Vec<(WireProtocol, Option<MeterType>)> = Vec::new();
    for profile in on_bus.iter().filter_map(|d| config.profile_of(d)) {
        let kind = (profile.protocol, profile.meter_type);
        if profile.protocol != WireProtocol::Modbus && !protocols.contains(&kind) {
            protocols.push(kind);
        }
    }
    if !protocols.is_empty() {
        return scan_meters(&probing, &on_bus, &protocols, units).await;
    }
    let configured = |unit: u8| {
        on_bus
            .iter()
            .find(|d| d.unit == Some(u16::from(unit)))
            .map(|d| d.id.as_str())
    };
    let probe = crate::sources::modbus::plan::ReadRequest {
        function: crate::config::Function::ReadHoldingRegisters,
        start: 0,
        count: 1,
        points: Vec::new(),
    };
    let mut link = Link::new(&probing);
    let mut text = String::new();
    let mut answered = Vec::new();
    let started = Instant::now();
    for &unit in units {
        let answer = link.read(unit, &probe).await;
        let what = match &answer {
            Ok(Ok(_)) => Some("有应答".to_string()),
            Ok(Err(code)) => Some(format!("有应答（{}）", exception_name(*code))),
            Err(crate::sources::modbus::link::LinkError::Connect(reason)) => {
                anyhow::bail!("打不开总线 {}：{reason}", bus.id)
            }
            Err(crate::sources::modbus::link::LinkError::Timeout(_)) => None,
            Err(e) => Some(format!(
                "回复无法解析：{e}（波特率、校验位不对，或多台设备同一站号？）"
            )),
        };
        match (what, configured(unit)) {
            (Some(what), device) => {
                answered.push(unit);
                let device = device.map_or("未配置".to_string(), |d| format!("配置：{d}"));
                let _ = writeln!(text, "站号 {unit:>3}  {what}  {device}");
            }
            (None, Some(device)) => {
                let _ = writeln!(text, "站号 {unit:>3}  无应答  配置：{device}");
            }
            (None, None) => {}
        }
    }
    let _ = writeln!(
        text,
        "总线 {}：扫描 {} 个站号，{} 个有应答，用时 {}",
        bus.id,
        units.len(),
        answered.len(),
        millis(started.elapsed())
    );
    Ok(Scan {
        text,
        answered,
        meters: Vec::new(),
    })
}

/// A meter line: each protocol its devices speak searched in turn (DL/T 645 and CJ/T 188 by
/// wildcard address, M-Bus over the primary addresses `units`).
async fn scan_meters(
    bus: &BusConfig,
    on_bus: &[&DeviceConfig],
    protocols: &[(WireProtocol, Option<MeterType>)],
    units: &[u8],
) -> anyhow::Result<Scan> {
    use crate::sources::meters::search;
    let mut line = MeterBus::new(bus);
    let mut text = String::new();
    let mut meters = Vec::new();
    let started = Instant::now();
    for (protocol, meter_type) in protocols {
        let (name, found) = match (protocol, meter_type) {
            (WireProtocol::Dlt645, _) => ("DL/T 645", search::dlt645(&mut line).await),
            (WireProtocol::Cjt188, Some(MeterType::Water)) => (
                "CJ/T 188 水表",
                search::cjt188(&mut line, crate::sources::meters::cjt188::COLD_WATER_METER).await,
            ),
            (WireProtocol::Cjt188, _) => (
                "CJ/T 188 热量表",
                search::cjt188(&mut line, crate::sources::meters::cjt188::HEAT_METER).await,
            ),
            (WireProtocol::Mbus, _) => ("M-Bus 一次地址", search::mbus(&mut line, units).await),
            (WireProtocol::Modbus, _) => continue,
        };
        let found = found.map_err(|reason| anyhow::anyhow!("打不开总线 {}：{reason}", bus.id))?;
        let _ = writeln!(text, "{name}：发出 {} 个请求", found.requests);
        let configured = |address: &str| {
            on_bus
                .iter()
                .find(|d| d.meter_address.as_deref() == Some(address))
                .map_or("未配置".to_string(), |d| format!("配置：{}", d.id))
        };
        for address in &found.meters {
            let _ = writeln!(text, "  表地址 {address}  有应答  {}", configured(address));
        }
        for address in &found.collisions {
            let _ = writeln!(text, "  表地址 {address}  多块表同一地址，回复相互冲突");
        }
        meters.extend(found.meters);
    }
    for device in on_bus {
        if let Some(address) = &device.meter_address {
            if !meters.contains(address) {
                let _ = writeln!(text, "  表地址 {address}  没有找到  配置：{}", device.id);
            }
        }
    }
    let _ = writeln!(
        text,
        "总线 {}：找到 {} 块表，用时 {}",
        bus.id,
        meters.len(),
        millis(started.elapsed())
    );
    Ok(Scan {
        text,
        answered: Vec::new(),
        meters,
    })
}
