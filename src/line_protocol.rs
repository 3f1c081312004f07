//! InfluxDB line protocol: `measurement,tag=v,… field=v,… timestamp_ns`.
//!
//! Escaping follows the InfluxDB reference: in measurements, commas and spaces; in tag keys, tag
//! values and field keys, commas, equals signs and spaces; in string field values, double quotes
//! and backslashes. A backslash elsewhere is written as it is, and InfluxDB 1.x reads it back as
//! it is (checked against 1.6: `a\b` and `a\\b` come back unchanged).
//!
//! Some text cannot be carried at all, and is refused where it enters the gateway (config
//! validation names the key; the MQTT source counts the message) by [`tag_value_problem`] and
//! [`RESERVED_KEYS`]: a line break; a backslash at the end or before a character that must be
//! escaped (InfluxDB takes `\\,` as an escaped backslash followed by a separator and refuses
//! the line, or every line of the device); the key `time`, which InfluxDB 1.x refuses as a tag
//! key and drops silently as a field key. Line breaks that reach the encoder anyway are written
//! as spaces. Tags
//! with empty values are left out (the protocol has no empty tag value). Integers carry `i`
//! (unsigned ones too, as InfluxDB 1.x has no `u` by default; above i64::MAX they become floats);
//! NaN and infinities are never written: such fields are skipped and counted.

use std::fmt::Write as _;

use crate::model::{Sample, Value};

/// What encoding one sample produced.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Encoded {
    /// Fields written.
    pub fields: usize,
    /// Fields skipped because they were not finite.
    pub skipped: usize,
}

/// Appends the sample's line (with a trailing newline) to `out`. A sample without a writable
/// field writes nothing. Written straight into `out`: no allocation per sample.
pub fn encode(sample: &Sample, out: &mut String) -> Encoded {
    let mut result = Encoded::default();
    let start = out.len();
    escape_into(out, &sample.measurement, &[',', ' ']);
    // InfluxDB wants tags sorted by key; tag sets built by the gateway already are.
    if sample.tags.is_sorted_by(|a, b| a.0 <= b.0) {
        write_tags(out, sample.tags.iter());
    } else {
        let mut tags: Vec<&(String, String)> = sample.tags.iter().collect();
        tags.sort_by(|a, b| a.0.cmp(&b.0));
        write_tags(out, tags.into_iter());
    }
    let mut separator = ' ';
    for field in &sample.fields {
        if let Value::Float(v) = field.value {
            if !v.is_finite() {
                result.skipped += 1;
                continue;
            }
        }
        out.push(separator);
        separator = ',';
        escape_into(out, &field.name, &[',', '=', ' ']);
        out.push('=');
        write_value(out, &field.value);
        result.fields += 1;
    }
    if result.fields > 0 {
        out.push(' ');
        out.push_str(itoa::Buffer::new().format(sample.time_ns));
        out.push('\n');
    } else {
        out.truncate(start);
    }
    result
}

fn write_tags<'a>(line: &mut String, tags: impl Iterator<Item = &'a (String, String)>) {
    for (key, value) in tags {
        if value.is_empty() {
            continue;
        }
        line.push(',');
        escape_into(line, key, &[',', '=', ' ']);
        line.push('=');
        escape_into(line, value, &[',', '=', ' ']);
    }
}

fn write_value(line: &mut String, value: &Value) {
    match value {
        Value::Float(v) => write_float(line, *v),
        Value::Int(v) => write_int(line, *v),
        Value::UInt(v) => match i64::try_from(*v) {
            Ok(v) => write_int(line, v),
            Err(_) => write_float(line, *v as f64),
        },
        Value::Bool(v) => line.push_str(if *v { "true" } else { "false" }),
        Value::Text(text) => {
            line.push('"');
            for c in text.chars() {
                match c {
                    '"' | '\\' => {
                        line.push('\\');
                        line.push(c);
                    }
                    '\n' | '\r' => line.push(' '),
                    c => line.push(c),
                }
            }
            line.push('"');
        }
    }
}

fn write_int(line: &mut String, v: i64) {
    line.push_str(itoa::Buffer::new().format(v));
    line.push('i');
}

/// A float in the form Rust's `Display` uses (shortest digits that read back exactly, never an
/// exponent, no `.0`), with ryu's digit generation: the formatter's machinery was a tenth of the
/// telemetry stage's time. Where ryu would write an exponent, `Display` writes it.
fn write_float(line: &mut String, v: f64) {
    let mut buffer = ryu::Buffer::new();
    let short = v
        .is_finite()
        .then(|| buffer.format_finite(v))
        .filter(|text| !text.contains('e'));
    match short {
        Some(text) => line.push_str(text.strip_suffix(".0").unwrap_or(text)),
        None => {
            let _ = write!(line, "{v}");
        }
    }
}

fn escape_into(line: &mut String, text: &str, special: &[char]) {
    // Names and tags almost never need escaping: copy them whole when they do not.
    let needs = |b: u8| b == b'\n' || b == b'\r' || special.contains(&char::from(b));
    if !text.bytes().any(needs) {
        line.push_str(text);
        return;
    }
    for c in text.chars() {
        if c == '\n' || c == '\r' {
            line.push(' ');
            continue;
        }
        if special.contains(&c) {
            line.push('\\');
        }
        line.push(c);
    }
}

/// Keys InfluxDB keeps for itself: `time` (1.x refuses it as a tag key and silently drops it as
/// a field key), `_measurement` and `_field` (2.x and Flux).
pub const RESERVED_KEYS: [&str; 3] = ["time", "_measurement", "_field"];

/// Why `value` cannot be a tag value that InfluxDB reads back exactly as written, if it cannot.
pub fn tag_value_problem(value: &str) -> Option<&'static str> {
    if value.contains(['\n', '\r']) {
        return Some("contains a line break");
    }
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.peek() {
                None => return Some("ends with a backslash"),
                Some(',' | '=' | ' ') => return Some("has a backslash before ',', '=' or a space"),
                Some(_) => {}
            }
        }
    }
    None
}

/// A line read back: its measurement and each field's key with InfluxDB's name of its type
/// (`float`, `integer`, `unsigned`, `string`, `boolean`). Enough to match a field type
/// conflict to the lines that caused it; `None` for text that is not a line.
#[derive(Debug, PartialEq, Eq)]
pub struct ParsedLine {
    pub measurement: String,
    pub fields: Vec<(String, &'static str)>,
}

/// Reads the measurement and field keys of one line (the inverse of [`encode`] for them).
pub fn parse_line(line: &str) -> Option<ParsedLine> {
    let mut chars = line.chars().peekable();
    let mut measurement = String::new();
    // Measurement, then tags, up to the first unescaped space.
    let mut in_measurement = true;
    loop {
        match chars.next()? {
            '\\' => {
                let next = chars.next()?;
                if in_measurement {
                    if !matches!(next, ',' | ' ') {
                        measurement.push('\\');
                    }
                    measurement.push(next);
                }
            }
            ',' => in_measurement = false,
            ' ' => break,
            c if in_measurement => measurement.push(c),
            _ => {}
        }
    }
    let mut fields = Vec::new();
    loop {
        let mut key = String::new();
        loop {
            match chars.next()? {
                '\\' => {
                    let next = chars.next()?;
                    if !matches!(next, ',' | '=' | ' ') {
                        key.push('\\');
                    }
                    key.push(next);
                }
                '=' => break,
                c => key.push(c),
            }
        }
        let kind = if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next()? {
                    '\\' => {
                        chars.next()?;
                    }
                    '"' => break,
                    _ => {}
                }
            }
            "string"
        } else {
            let mut value = String::new();
            while let Some(c) = chars.peek().copied().filter(|c| !matches!(c, ',' | ' ')) {
                value.push(c);
                chars.next();
            }
            match value.as_str() {
                "t" | "T" | "true" | "True" | "TRUE" | "f" | "F" | "false" | "False" | "FALSE" => {
                    "boolean"
                }
                v if v.ends_with('i') => "integer",
                v if v.ends_with('u') => "unsigned",
                _ => "float",
            }
        };
        fields.push((key, kind));
        match chars.next() {
            Some(',') => continue,
            _ => break,
        }
    }
    Some(ParsedLine {
        measurement,
        fields,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::model::Field;

    fn sample(tags: &[(&str, &str)], fields: Vec<(&str, Value)>) -> Sample {
        Sample {
            measurement: Arc::from("pump_station"),
            device: Arc::from("booster-1"),
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Vec<_>>()
                .into(),
            fields: fields
                .into_iter()
                .map(|(n, value)| Field {
                    name: Arc::from(n),
                    value,
                })
                .collect(),
            time_ns: 1_764_150_000_000_000_000,
            receipt: crate::model::Receipt::none(),
        }
    }

    #[test]
    fn writes_tags_fields_and_nanosecond_timestamp() {
        let mut out = String::new();
        let s = sample(
            &[
                ("device", "booster-1"),
                ("site", "幸福小区"),
                ("zone", "high"),
            ],
            vec![
                ("outlet_pressure_mpa", Value::Float(0.471)),
                ("run_status", Value::UInt(17)),
                ("offset", Value::Int(-3)),
                ("pump1_running", Value::Bool(true)),
            ],
        );
        assert_eq!(encode(&s, &mut out).fields, 4);
        assert_eq!(
            out,
            "pump_station,device=booster-1,site=幸福小区,zone=high outlet_pressure_mpa=0.471,run_status=17i,offset=-3i,pump1_running=true 1764150000000000000\n"
        );
    }

    #[test]
    fn escapes_every_special_character_where_it_matters() {
        let mut out = String::new();
        let mut s = sample(
            &[("building", "9,10"), ("name", "a=b c")],
            vec![("label", Value::Text("say \"hi\" \\ bye".into()))],
        );
        s.measurement = Arc::from("pump station,x");
        encode(&s, &mut out);
        assert_eq!(
            out,
            "pump\\ station\\,x,building=9\\,10,name=a\\=b\\ c label=\"say \\\"hi\\\" \\\\ bye\" 1764150000000000000\n"
        );
    }

    #[test]
    fn tags_are_written_sorted_by_key_whatever_order_they_come_in() {
        let mut out = String::new();
        let s = sample(
            &[("zone", "high"), ("device", "b1"), ("site", "x")],
            vec![("a", Value::Int(1))],
        );
        encode(&s, &mut out);
        assert_eq!(
            out,
            "pump_station,device=b1,site=x,zone=high a=1i 1764150000000000000\n"
        );
    }

    #[test]
    fn floats_are_written_in_their_shortest_exact_form_without_an_exponent() {
        let mut values = vec![
            0.0, -0.0, 1.0, -1.0, 0.47, 229.9, 1e15, 1e16, 1e17, 1e-5, 1e-7,
        ];
        values.extend([
            f64::MAX,
            f64::MIN_POSITIVE,
            f64::from_bits(1),
            18_446_744_073_709_551_615.0,
        ]);
        let mut bits = 0x0123_4567_89ab_cdefu64;
        for _ in 0..200_000 {
            bits = bits
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            values.push(f64::from_bits(bits));
            values.push(f64::from(f32::from_bits(bits as u32)));
            values.push((bits % 10_000_000) as f64 / 1000.0);
        }
        let mut line = String::new();
        for v in values.into_iter().filter(|v| v.is_finite()) {
            line.clear();
            write_float(&mut line, v);
            // The same value, in as many characters as `Display` (which may pick the other of
            // two equally near shortest decimals), never with an exponent or a trailing `.0`.
            assert_eq!(line.parse::<f64>().unwrap().to_bits(), v.to_bits(), "{v}");
            assert_eq!(line.len(), v.to_string().len(), "{v}");
            assert!(!line.contains('e') && !line.ends_with(".0"), "{line}");
        }
    }

    #[test]
    fn skips_non_finite_fields_and_empty_tags() {
        let mut out = String::new();
        let s = sample(
            &[("zone", "")],
            vec![
                ("a", Value::Float(f64::NAN)),
                ("b", Value::Float(1.5)),
                ("c", Value::Float(f64::INFINITY)),
            ],
        );
        assert_eq!(
            encode(&s, &mut out),
            Encoded {
                fields: 1,
                skipped: 2
            }
        );
        assert_eq!(out, "pump_station b=1.5 1764150000000000000\n");
    }

    #[test]
    fn a_sample_with_nothing_writable_writes_no_line() {
        let mut out = String::new();
        let s = sample(&[], vec![("a", Value::Float(f64::NAN))]);
        assert_eq!(encode(&s, &mut out).fields, 0);
        assert!(out.is_empty());
    }

    #[test]
    fn huge_unsigned_values_become_floats() {
        let mut out = String::new();
        let s = sample(&[], vec![("e", Value::UInt(u64::MAX))]);
        encode(&s, &mut out);
        assert_eq!(
            out,
            "pump_station e=18446744073709552000 1764150000000000000\n"
        );
    }

    #[test]
    fn a_line_reads_back_its_measurement_and_field_types() {
        let mut out = String::new();
        let mut s = sample(
            &[("building", "9,10")],
            vec![
                ("a b", Value::Float(1.5)),
                ("n", Value::Int(-3)),
                ("t", Value::Text("x, \"y\" z".into())),
                ("ok", Value::Bool(true)),
            ],
        );
        s.measurement = Arc::from("pump station,x");
        encode(&s, &mut out);
        let parsed = parse_line(out.trim_end()).expect("parses");
        assert_eq!(parsed.measurement, "pump station,x");
        assert_eq!(
            parsed.fields,
            vec![
                ("a b".to_string(), "float"),
                ("n".to_string(), "integer"),
                ("t".to_string(), "string"),
                ("ok".to_string(), "boolean"),
            ]
        );
        assert_eq!(parse_line("no fields here"), None);
    }

    #[test]
    fn text_influxdb_cannot_read_back_is_named() {
        for bad in ["a\\", "a\\,b", "a\\ b", "x\\=y", "two\nlines", "cr\r"] {
            assert!(tag_value_problem(bad).is_some(), "{bad:?}");
        }
        for good in [
            "幸福小区",
            "a\\b",
            "a\\\\b",
            "9,10",
            "a=b c",
            "\"q\"",
            "tab\tx",
            "😀",
        ] {
            assert_eq!(tag_value_problem(good), None, "{good:?}");
        }
    }
}
