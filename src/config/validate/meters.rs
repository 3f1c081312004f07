//! Checks of meter profiles (DL/T 645, CJ/T 188, M-Bus) and of the devices and buses that use
//! them: every reading names something the protocol can read, every meter has an address its
//! protocol accepts and that is unique on its bus, and a bus carries either Modbus devices or
//! meters (of any of the three protocols), meters only over a byte stream.

use std::collections::{HashMap, HashSet};

use meter_frames::dlt645;

use super::{is_identifier, Issues};
use crate::config::{
    DeviceConfig, MeterAddress, MeterItem, MeterType, Profile, TransportKind, WireProtocol,
};

/// The items a CJ/T 188 heat meter's current data holds.
const CJT188_HEAT: &[MeterItem] = &[
    MeterItem::Heat,
    MeterItem::SettlementHeat,
    MeterItem::Power,
    MeterItem::Flow,
    MeterItem::Volume,
    MeterItem::SupplyTemperature,
    MeterItem::ReturnTemperature,
    MeterItem::OperatingHours,
    MeterItem::Status,
];

/// The items a CJ/T 188 water meter's current data holds.
const CJT188_WATER: &[MeterItem] = &[
    MeterItem::Volume,
    MeterItem::SettlementVolume,
    MeterItem::Status,
];

/// The items the M-Bus decoder names (status: the header's status byte).
const MBUS: &[MeterItem] = &[
    MeterItem::Heat,
    MeterItem::Volume,
    MeterItem::Power,
    MeterItem::Flow,
    MeterItem::SupplyTemperature,
    MeterItem::ReturnTemperature,
    MeterItem::TemperatureDifference,
    MeterItem::OperatingHours,
    MeterItem::Status,
];

/// Checks a meter profile's readings.
pub(super) fn profile(issues: &mut Issues<'_>, profile: &Profile) {
    let protocol = profile.protocol;
    if !profile.points.is_empty() {
        issues.add(
            "point".into(),
            format!(
                "Modbus points in a {} profile (expected [[reading]])",
                protocol.name()
            ),
        );
    }
    let items: &[MeterItem] = match (protocol, profile.meter_type) {
        (WireProtocol::Cjt188, Some(MeterType::Heat)) => CJT188_HEAT,
        (WireProtocol::Cjt188, Some(MeterType::Water)) => CJT188_WATER,
        (WireProtocol::Cjt188, None) => {
            issues.add(
                "meter_type".into(),
                "missing for protocol \"cjt188\" (expected \"heat\" or \"water\")",
            );
            &[]
        }
        (WireProtocol::Mbus, _) => MBUS,
        _ => &[],
    };
    if profile.meter_type.is_some() && protocol != WireProtocol::Cjt188 {
        issues.add("meter_type".into(), "only applies to protocol \"cjt188\"");
    }
    if profile.readings.is_empty() {
        issues.add(
            "reading".into(),
            "no readings (expected at least one [[reading]])",
        );
    }
    let mut names = HashSet::new();
    for (i, reading) in profile.readings.iter().enumerate() {
        let at = |key: &str| format!("reading[{i}].{key}");
        issues.not_reserved(at("name"), &reading.name, "field");
        if !is_identifier(&reading.name) {
            issues.add(
                at("name"),
                format!(
                    "{:?} is not a field name (expected lower-case letters, digits and '_', e.g. \"ua_v\")",
                    reading.name
                ),
            );
        } else if !names.insert(reading.name.as_str()) {
            issues.add(
                at("name"),
                format!(
                    "{:?} is used twice (expected unique reading names)",
                    reading.name
                ),
            );
        }
        if !reading.scale.is_finite() || reading.scale == 0.0 {
            issues.add(
                at("scale"),
                format!(
                    "{} is not usable (expected a finite non-zero number)",
                    reading.scale
                ),
            );
        }
        if protocol == WireProtocol::Dlt645 {
            match reading.di {
                None => issues.add(
                    at("di"),
                    "missing (expected a DL/T 645-2007 data identifier such as 0x02010100)",
                ),
                Some(di) if dlt645::data_id(di).is_none() => {
                    let known: Vec<String> = dlt645::DATA_IDS
                        .iter()
                        .map(|d| format!("{:08X} {}", d.di, d.name))
                        .collect();
                    issues.add(
                        at("di"),
                        format!(
                            "{di:#010X} is not one the gateway decodes (expected one of: {})",
                            known.join(", ")
                        ),
                    );
                }
                Some(_) => {}
            }
            for (key, present) in [
                ("item", reading.item.is_some()),
                ("bit", reading.bit.is_some()),
            ] {
                if present {
                    issues.add(
                        at(key),
                        "does not apply to protocol \"dlt645\" (expected di)",
                    );
                }
            }
            continue;
        }
        if reading.di.is_some() {
            issues.add(
                at("di"),
                "only applies to protocol \"dlt645\" (expected item)",
            );
        }
        match reading.item {
            None => issues.add(
                at("item"),
                format!("missing (expected one of {})", listed(items)),
            ),
            Some(item) if !items.is_empty() && !items.contains(&item) => issues.add(
                at("item"),
                format!(
                    "{:?} is not in this meter's data (expected one of {})",
                    item.name(),
                    listed(items)
                ),
            ),
            Some(_) => {}
        }
        match (reading.item, reading.bit) {
            (Some(MeterItem::Status), Some(bit)) if bit > 15 => {
                issues.add(at("bit"), format!("{bit} is out of range (expected 0–15)"))
            }
            (Some(MeterItem::Status), _) | (_, None) => {}
            (_, Some(_)) => issues.add(at("bit"), "only applies to item \"status\""),
        }
    }
}

fn listed(items: &[MeterItem]) -> String {
    let names: Vec<String> = items.iter().map(|i| format!("{:?}", i.name())).collect();
    names.join(", ")
}

/// Checks a meter device's address: present, valid for its protocol, unique on its bus.
pub(super) fn device<'a>(
    issues: &mut Issues<'_>,
    at: &dyn Fn(&str) -> String,
    device: &'a DeviceConfig,
    protocol: WireProtocol,
    seen: &mut HashSet<(&'a str, MeterAddress)>,
) {
    if device.unit.is_some() {
        issues.add(
            at("unit"),
            format!(
                "does not apply to protocol {:?} (expected meter_address)",
                protocol.name()
            ),
        );
    }
    let Some(text) = &device.meter_address else {
        issues.add(
            at("meter_address"),
            format!(
                "missing for protocol {:?} (expected the meter's address)",
                protocol.name()
            ),
        );
        return;
    };
    match protocol.meter_address(text) {
        Err(problem) => issues.add(at("meter_address"), problem),
        Ok(address) => {
            if !seen.insert((device.bus.as_str(), address)) {
                issues.add(
                    at("meter_address"),
                    format!(
                        "{text:?} is already used on bus {:?} (expected one meter per address)",
                        device.bus
                    ),
                );
            }
        }
    }
}

/// Checks that a bus carries Modbus devices or meters, not both, and meters over a byte stream.
pub(super) fn bus_protocol<'a>(
    issues: &mut Issues<'_>,
    at: &dyn Fn(&str) -> String,
    device: &'a DeviceConfig,
    protocol: WireProtocol,
    transport: TransportKind,
    first: &mut HashMap<&'a str, (WireProtocol, &'a str)>,
) {
    let (bus_protocol, first_device) = *first
        .entry(device.bus.as_str())
        .or_insert((protocol, device.id.as_str()));
    // Meters of the three protocols may share a line; Modbus and meters may not (one task
    // reads the line either way, and their framing cannot be told apart on it).
    let modbus = |p: WireProtocol| p == WireProtocol::Modbus;
    if modbus(bus_protocol) != modbus(protocol) {
        issues.add(
            at("profile"),
            format!(
                "speaks {:?} but bus {:?} already carries {:?} ({first_device}) (expected Modbus devices and meters on separate buses)",
                protocol.name(),
                device.bus,
                bus_protocol.name()
            ),
        );
    }
    if protocol != WireProtocol::Modbus && transport == TransportKind::Tcp {
        issues.add(
            at("bus"),
            format!(
                "{:?} uses transport \"tcp\" (Modbus TCP), which cannot carry {:?} (expected \"rtu\" for a serial port or \"rtu_over_tcp\" for a transparent serial server)",
                device.bus,
                protocol.name()
            ),
        );
    }
}
