//! The payload shapes of DOMAIN.md §3.9, §3.10 and §5 decoded by hand-written mappings.

use super::*;
use crate::config::MqttField;

const S: i64 = 1_000_000_000;
/// 2025-11-26 09:40:00 UTC, the timestamp of DOMAIN.md's examples.
const TS: i64 = 1_764_150_000;

fn mapping(format: PayloadFormat, fields: &[(&str, &str, f64, f64)]) -> MqttMapping {
    MqttMapping {
        topic: "site/+/gas/+/telemetry".into(),
        format,
        measurement: "gas_regulator".into(),
        label: None,
        names: Default::default(),
        devices: Vec::new(),
        device_pattern: Some("*".into()),
        device_level: None,
        device_pointer: None,
        time_pointer: None,
        interval: crate::config::ConfigDuration::from_millis(900_000),
        tags: Default::default(),
        fields: fields
            .iter()
            .map(|(name, from, scale, offset)| MqttField {
                name: (*name).into(),
                from: (*from).into(),
                unit: None,
                label: None,
                scale: *scale,
                offset: *offset,
            })
            .collect(),
    }
}

fn gas_rtu() -> MqttMapping {
    let mut m = mapping(
        PayloadFormat::Flat,
        &[
            ("inlet_pressure_mpa", "/p_in_mpa", 1.0, 0.0),
            ("outlet_pressure_kpa", "/p_out_kpa", 1.0, 0.0),
            ("slam_shut", "/slam_shut", 1.0, 0.0),
            ("lel_pct", "/lel_pct", 1.0, 0.0),
            ("battery_v", "/batt_v", 1.0, 0.0),
        ],
    );
    m.device_pointer = Some("/dev".into());
    m.time_pointer = Some("/ts".into());
    m
}

fn field(sample: &Sample, name: &str) -> Option<f64> {
    sample.field(name).and_then(Value::as_f64)
}

const ARRIVAL: i64 = (TS + 3) * S;

#[test]
fn the_gas_rtu_example_decodes_with_its_own_timestamp() {
    let payload = br#"{"ts": 1764150000, "dev": "GRB-01", "p_in_mpa": 0.186, "p_out_kpa": 2.46, "t_c": 4.2,
        "slam_shut": 0, "relief_open": 0, "door": 0, "lel_pct": 0.0, "batt_v": 3.58, "rssi": -79, "alarm": []}"#;
    let base = [
        ("gateway".to_string(), "gw".to_string()),
        ("site".to_string(), "幸福小区".to_string()),
    ];
    let decoded = decode(
        &gas_rtu(),
        &base,
        "site/xf/gas/GRB-01/telemetry",
        payload,
        ARRIVAL,
    )
    .expect("decodes");
    let s = &decoded.sample;
    assert!(decoded.problems.is_empty(), "{:?}", decoded.problems);
    assert_eq!(&*s.device, "GRB-01");
    assert_eq!(&*s.measurement, "gas_regulator");
    assert_eq!(s.time_ns, TS * S);
    assert_eq!(field(s, "inlet_pressure_mpa"), Some(0.186));
    assert_eq!(field(s, "outlet_pressure_kpa"), Some(2.46));
    assert_eq!(field(s, "slam_shut"), Some(0.0));
    assert_eq!(field(s, "battery_v"), Some(3.58));
    assert_eq!(s.fields.len(), 5, "unmapped keys are ignored");
    let tags: Vec<(&str, &str)> = s
        .tags
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        tags,
        [
            ("device", "GRB-01"),
            ("gateway", "gw"),
            ("site", "幸福小区")
        ]
    );
}

#[test]
fn device_from_a_topic_level_booleans_numeric_strings_scale_and_offset() {
    let mut m = mapping(
        PayloadFormat::Flat,
        &[
            ("tilt_deg", "/tilt", 1.0, 0.0),
            ("water", "/water", 1.0, 0.0),
            ("battery_pct", "/battery", 1.0, 0.0),
            ("temp_c", "/raw_t", 0.1, -40.0),
        ],
    );
    m.topic = "city/shuozhou/well/status/+".into();
    m.device_level = Some(4);
    let payload =
        br#"{"tilt": "22.4", "water": true, "battery": 89, "raw_t": 612, "status": "abnormal"}"#;
    let decoded = decode(
        &m,
        &[],
        "city/shuozhou/well/status/well_07",
        payload,
        ARRIVAL,
    )
    .expect("decodes");
    let s = &decoded.sample;
    assert_eq!(&*s.device, "well_07");
    assert_eq!(s.time_ns, ARRIVAL, "no time pointer: arrival time");
    assert_eq!(field(s, "tilt_deg"), Some(22.4));
    assert_eq!(field(s, "water"), Some(1.0));
    assert_eq!(field(s, "battery_pct"), Some(89.0));
    assert!((field(s, "temp_c").expect("temp") - 21.2).abs() < 1e-9);
}

#[test]
fn neuron_values_and_tags_formats_give_the_same_sample() {
    let m = mapping(
        PayloadFormat::Neuron,
        &[
            ("outlet_pressure_mpa", "p_out", 0.001, 0.0),
            ("running", "run", 1.0, 0.0),
        ],
    );
    let values = br#"{"timestamp": 1764150000123, "node": "dtu-7", "group": "g1",
        "values": {"p_out": 471, "run": 1, "other": 5}, "errors": {"flow": 2014}}"#;
    let tags = br#"{"timestamp": 1764150000123, "node": "dtu-7", "group": "g1",
        "tags": [{"name": "p_out", "value": 471}, {"name": "run", "value": 1}, {"name": "flow", "error": 2014}]}"#;
    let a = decode(&m, &[], "/neuron/dtu-7/modbus/g1", values, ARRIVAL).expect("values format");
    let b = decode(&m, &[], "/neuron/dtu-7/modbus/g1", tags, ARRIVAL).expect("tags format");
    assert_eq!(a.sample, b.sample);
    assert_eq!(&*a.sample.device, "dtu-7");
    assert_eq!(
        a.sample.time_ns,
        TS * S + 123_000_000,
        "milliseconds told apart from seconds"
    );
    assert!((field(&a.sample, "outlet_pressure_mpa").expect("p") - 0.471).abs() < 1e-12);
    assert!(a.problems.is_empty() && b.problems.is_empty());
}

#[test]
fn a_bad_field_is_reported_and_the_rest_kept() {
    let payload = br#"{"ts": 1764150000, "dev": "GRB-01", "p_in_mpa": "high", "p_out_kpa": 2.46, "lel_pct": [1], "batt_v": null}"#;
    let decoded = decode(&gas_rtu(), &[], "t", payload, ARRIVAL).expect("decodes");
    assert_eq!(decoded.sample.fields.len(), 1);
    assert_eq!(decoded.problems.len(), 3, "{:?}", decoded.problems);
    assert!(
        decoded.problems[0].contains("\"high\" is not a number"),
        "{:?}",
        decoded.problems
    );
}

#[test]
fn timestamps_far_in_the_future_or_past_give_way_to_the_arrival_time() {
    for ts in [
        "4102444800",
        "946684800",
        "1764150000000000000000",
        "-5",
        "\"yesterday\"",
    ] {
        let payload = format!(r#"{{"ts": {ts}, "dev": "GRB-01", "p_out_kpa": 2.46}}"#);
        let decoded = decode(&gas_rtu(), &[], "t", payload.as_bytes(), ARRIVAL).expect("decodes");
        assert_eq!(decoded.sample.time_ns, ARRIVAL, "{ts}");
        assert_eq!(decoded.problems.len(), 1, "{ts}: {:?}", decoded.problems);
    }
    // Microseconds and nanoseconds are recognised too.
    for ts in [TS * 1_000_000, TS * S] {
        let payload = format!(r#"{{"ts": {ts}, "dev": "GRB-01", "p_out_kpa": 2.46}}"#);
        let decoded = decode(&gas_rtu(), &[], "t", payload.as_bytes(), ARRIVAL).expect("decodes");
        assert_eq!(decoded.sample.time_ns, TS * S, "{ts}");
    }
}

#[test]
fn messages_with_nothing_usable_are_errors_that_name_the_cause() {
    let m = gas_rtu();
    let cases: [(&[u8], PayloadError); 5] = [
        (b"[1, 2]", PayloadError::NotObject),
        (
            br#"{"dev": "GRB-01", "x": 1}"#,
            PayloadError::NoFields("none present".into()),
        ),
        (
            br#"{"dev": {"id": 1}, "p_out_kpa": 2}"#,
            PayloadError::NoDevice("/dev is an object, not a string".into()),
        ),
        (
            br#"{"dev": "a/b", "p_out_kpa": 2}"#,
            PayloadError::NoDevice(
                "\"a/b\" (expected 1–64 printable characters without '/', '+', '#')".into(),
            ),
        ),
        (
            &vec![b' '; MAX_PAYLOAD + 1],
            PayloadError::TooLarge(MAX_PAYLOAD + 1),
        ),
    ];
    for (payload, expected) in cases {
        assert_eq!(decode(&m, &[], "t", payload, ARRIVAL).err(), Some(expected));
    }
    assert!(matches!(
        decode(&m, &[], "t", b"{\"dev\":", ARRIVAL),
        Err(PayloadError::NotJson(_))
    ));
}
