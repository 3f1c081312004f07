//! One MQTT message → one sample, by its mapping: where the device id, the timestamp and each
//! field are found in a flat JSON object or in one of EMQX Neuron's upload formats.
//!
//! Every mapped field is written as a float (raw × scale + offset); JSON booleans become 1 and
//! 0 and numeric strings (common in DTU firmware) are parsed. So a device that changes its JSON
//! types never changes an InfluxDB field type. Unmapped keys are ignored. A field that is absent
//! is left out; a field with an unusable value is left out and reported, and the rest of the
//! message is kept. A message with nothing usable is an error. Nothing here panics on any input.

use std::sync::Arc;

use serde_json::Value as Json;

use crate::config::{MqttMapping, PayloadFormat};
use crate::line_protocol;
use crate::model::{Field, Sample, Value};

/// Largest payload decoded; larger ones are counted and dropped unread.
pub const MAX_PAYLOAD: usize = 64 * 1024;
/// Longest device id accepted.
const MAX_DEVICE_ID: usize = 64;
/// A payload timestamp further than these from the arrival time is not believed.
const MAX_AGE_NS: i64 = 7 * 86_400 * 1_000_000_000;
const MAX_AHEAD_NS: i64 = 5 * 60 * 1_000_000_000;

/// Why a message gave no sample.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PayloadError {
    #[error("payload of {0} bytes is larger than {MAX_PAYLOAD}")]
    TooLarge(usize),
    #[error("not JSON: {0}")]
    NotJson(String),
    #[error("the payload is not a JSON object")]
    NotObject,
    #[error("no usable device id: {0}")]
    NoDevice(String),
    #[error("no mapped field has a usable value ({0})")]
    NoFields(String),
}

/// A decoded message: its sample and what was wrong with parts of it.
#[derive(Debug)]
pub struct Decoded {
    pub sample: Sample,
    /// Fields left out for a bad value, or a timestamp replaced by the arrival time.
    pub problems: Vec<String>,
}

/// Decodes `payload`, received on `topic` at `arrival_ns`, by `mapping`; `base_tags` are the
/// gateway's (`site`, `gateway`) and the mapping's own tags, `device` is added here.
pub fn decode(
    mapping: &MqttMapping,
    base_tags: &[(String, String)],
    topic: &str,
    payload: &[u8],
    arrival_ns: i64,
) -> Result<Decoded, PayloadError> {
    if payload.len() > MAX_PAYLOAD {
        return Err(PayloadError::TooLarge(payload.len()));
    }
    let json: Json =
        serde_json::from_slice(payload).map_err(|e| PayloadError::NotJson(e.to_string()))?;
    if !json.is_object() {
        return Err(PayloadError::NotObject);
    }
    let device = device_id(mapping, topic, &json)?;
    let mut problems = Vec::new();
    let time_ns = match timestamp(mapping, &json) {
        None => arrival_ns,
        Some(Ok(t)) if (arrival_ns - MAX_AGE_NS..=arrival_ns + MAX_AHEAD_NS).contains(&t) => t,
        Some(Ok(t)) => {
            problems.push(format!(
                "timestamp {} s is more than 7 days before or 5 minutes after arrival; arrival time used",
                t / 1_000_000_000
            ));
            arrival_ns
        }
        Some(Err(e)) => {
            problems.push(format!("timestamp {e}; arrival time used"));
            arrival_ns
        }
    };
    let mut fields = Vec::with_capacity(mapping.fields.len());
    for field in &mapping.fields {
        let Some(raw) = locate(mapping.format, &json, &field.from) else {
            continue;
        };
        match number(raw) {
            Ok(v) => {
                let value = v * field.scale + field.offset;
                if value.is_finite() {
                    fields.push(Field {
                        name: Arc::from(field.name.as_str()),
                        value: Value::Float(value),
                    });
                } else {
                    problems.push(format!("{}: {v} scales beyond a float", field.name));
                }
            }
            Err(e) => problems.push(format!("{}: {e}", field.name)),
        }
    }
    if fields.is_empty() {
        let why = if problems.is_empty() {
            "none present".to_string()
        } else {
            problems.join("; ")
        };
        return Err(PayloadError::NoFields(why));
    }
    let mut tags: Vec<(String, String)> = base_tags.to_vec();
    tags.push(("device".into(), device.clone()));
    tags.sort();
    Ok(Decoded {
        sample: Sample {
            measurement: Arc::from(mapping.measurement.as_str()),
            device: Arc::from(device.as_str()),
            tags: tags.into(),
            fields,
            time_ns,
            receipt: crate::model::Receipt::none(),
        },
        problems,
    })
}

/// The value a field's `from` names: a JSON pointer (flat), or a Neuron tag in `values` or
/// `tags`. A Neuron tag that reports an `error` instead of a value is absent.
fn locate<'a>(format: PayloadFormat, json: &'a Json, from: &str) -> Option<&'a Json> {
    match format {
        PayloadFormat::Flat => json.pointer(from),
        PayloadFormat::Neuron => {
            if let Some(value) = json.get("values").and_then(|v| v.get(from)) {
                return Some(value);
            }
            json.get("tags")?
                .as_array()?
                .iter()
                .find(|tag| tag.get("name").and_then(Json::as_str) == Some(from))?
                .get("value")
        }
    }
}

/// A JSON value as a number: numbers, booleans (1/0) and numeric strings.
fn number(value: &Json) -> Result<f64, String> {
    let v = match value {
        Json::Number(n) => n.as_f64().ok_or_else(|| format!("{n} is not a number"))?,
        Json::Bool(b) => f64::from(u8::from(*b)),
        Json::String(s) => s
            .trim()
            .parse::<f64>()
            .map_err(|_| format!("{:?} is not a number", excerpt(s.as_bytes(), 32)))?,
        Json::Null => return Err("null".into()),
        Json::Array(_) => return Err("an array, not a number".into()),
        Json::Object(_) => return Err("an object, not a number".into()),
    };
    if v.is_finite() {
        Ok(v)
    } else {
        Err(format!("{v} is not a finite number"))
    }
}

fn device_id(mapping: &MqttMapping, topic: &str, json: &Json) -> Result<String, PayloadError> {
    let id = if let Some(level) = mapping.device_level {
        topic
            .split('/')
            .nth(level)
            .map(str::to_string)
            .ok_or_else(|| PayloadError::NoDevice(format!("topic has no level {level}")))?
    } else {
        let pointer = mapping.device_pointer.as_deref().unwrap_or("/node");
        match json.pointer(pointer) {
            Some(Json::String(s)) => s.clone(),
            Some(Json::Number(n)) => n.to_string(),
            Some(other) => {
                return Err(PayloadError::NoDevice(format!(
                    "{pointer} is {}, not a string",
                    kind(other)
                )))
            }
            None => {
                return Err(PayloadError::NoDevice(format!(
                    "no {pointer} in the payload"
                )))
            }
        }
    };
    let usable = !id.trim().is_empty()
        && id.len() <= MAX_DEVICE_ID
        && !id
            .chars()
            .any(|c| c.is_control() || matches!(c, '/' | '+' | '#'));
    if let (true, Some(problem)) = (usable, line_protocol::tag_value_problem(&id)) {
        return Err(PayloadError::NoDevice(format!(
            "{:?} {problem} (InfluxDB could not store it as written)",
            excerpt(id.as_bytes(), MAX_DEVICE_ID + 8)
        )));
    }
    if usable {
        Ok(id)
    } else {
        Err(PayloadError::NoDevice(format!(
            "{:?} (expected 1–{MAX_DEVICE_ID} printable characters without '/', '+', '#')",
            excerpt(id.as_bytes(), MAX_DEVICE_ID + 8)
        )))
    }
}

/// The payload's timestamp in ns, when the mapping has one: seconds, milliseconds,
/// microseconds or nanoseconds since the epoch, told apart by magnitude.
fn timestamp(mapping: &MqttMapping, json: &Json) -> Option<Result<i64, String>> {
    let pointer = match (&mapping.time_pointer, mapping.format) {
        (Some(p), _) => p.as_str(),
        (None, PayloadFormat::Neuron) => "/timestamp",
        (None, PayloadFormat::Flat) => return None,
    };
    let raw = json.pointer(pointer)?;
    let integer = match raw {
        Json::Number(n) => n.as_i64(),
        Json::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    };
    // Integers are scaled exactly; a float (fractional seconds) as a float.
    let ns = match integer {
        Some(v) => nanos_per_unit(v as f64).and_then(|unit| v.checked_mul(unit)),
        None => match number(raw) {
            Ok(v) => nanos_per_unit(v)
                .map(|unit| v * unit as f64)
                .filter(|ns| *ns < 9.2e18)
                .map(|ns| ns as i64),
            Err(e) => return Some(Err(e)),
        },
    };
    Some(ns.ok_or_else(|| format!("{} is not a time", excerpt(raw.to_string().as_bytes(), 32))))
}

/// Nanoseconds per unit of an epoch timestamp of this magnitude (s, ms, µs or ns); none for a
/// negative one.
fn nanos_per_unit(v: f64) -> Option<i64> {
    match v {
        v if v < 0.0 => None,
        v if v >= 1e17 => Some(1),
        v if v >= 1e14 => Some(1_000),
        v if v >= 1e11 => Some(1_000_000),
        _ => Some(1_000_000_000),
    }
}

fn kind(value: &Json) -> &'static str {
    match value {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

/// At most `max` bytes of `bytes` as text, for logs (invalid UTF-8 shown as replacement marks).
pub fn excerpt(bytes: &[u8], max: usize) -> String {
    let cut = &bytes[..bytes.len().min(max)];
    let mut text: String = String::from_utf8_lossy(cut)
        .chars()
        .map(|c| if c.is_control() { '·' } else { c })
        .collect();
    if bytes.len() > max {
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests;
