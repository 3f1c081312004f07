//! Malformed and hostile MQTT payloads for a gas-regulator mapping that reads `/dev`, `/ts`,
//! `/p_out_kpa` and `/lel_pct`: each must be refused or flagged, and none may panic. [`cases`]
//! adds topics and device ids, each with the outcome it must have.

/// (what it is, the payload).
pub fn payloads() -> Vec<(&'static str, Vec<u8>)> {
    let text = |s: &str| s.as_bytes().to_vec();
    let mut deep = "{\"a\":".repeat(10_000);
    deep.push('1');
    deep.push_str(&"}".repeat(10_000));
    let mut huge = b"{\"dev\":\"GRB-01\",\"p_out_kpa\":2.4,\"pad\":\"".to_vec();
    huge.resize(1 << 20, b'x');
    huge.extend_from_slice(b"\"}");
    let mut long_array = b"[".to_vec();
    long_array.extend(std::iter::repeat_n(b"1,".as_slice(), 20_000).flatten());
    long_array.extend_from_slice(b"1]");
    vec![
        ("truncated", text(r#"{"dev":"GRB-01","p_out_kpa":2."#)),
        (
            "unterminated object",
            text(r#"{"dev":"GRB-01","p_out_kpa":2.4,"#),
        ),
        ("empty", Vec::new()),
        ("null", text("null")),
        ("an array", text("[]")),
        ("a string", text("\"GRB-01\"")),
        ("a number", text("42")),
        (
            "trailing garbage",
            text(r#"{"dev":"GRB-01","p_out_kpa":1} xyz"#),
        ),
        (
            "byte order mark",
            b"\xEF\xBB\xBF{\"dev\":\"GRB-01\",\"p_out_kpa\":1}".to_vec(),
        ),
        (
            "invalid UTF-8",
            b"{\"dev\":\"\xff\xfe\",\"p_out_kpa\":1}".to_vec(),
        ),
        (
            "number beyond f64",
            text(r#"{"dev":"GRB-01","p_out_kpa":1e400}"#),
        ),
        (
            "negative number beyond f64",
            text(r#"{"dev":"GRB-01","p_out_kpa":-1e400}"#),
        ),
        ("deep nesting", deep.into_bytes()),
        ("1 MiB payload", huge),
        ("60 kB array", long_array),
        (
            "value is text",
            text(r#"{"dev":"GRB-01","p_out_kpa":"abc"}"#),
        ),
        (
            "value is null",
            text(r#"{"dev":"GRB-01","p_out_kpa":null}"#),
        ),
        (
            "value is an array",
            text(r#"{"dev":"GRB-01","p_out_kpa":[1,2]}"#),
        ),
        (
            "value is an object",
            text(r#"{"dev":"GRB-01","p_out_kpa":{"v":1}}"#),
        ),
        (
            "value is NaN text",
            text(r#"{"dev":"GRB-01","p_out_kpa":2.4,"lel_pct":"NaN"}"#),
        ),
        (
            "value is inf text",
            text(r#"{"dev":"GRB-01","p_out_kpa":"inf"}"#),
        ),
        ("no mapped field", text(r#"{"dev":"GRB-01","other":1}"#)),
        ("no device", text(r#"{"p_out_kpa":2.4}"#)),
        (
            "device is an object",
            text(r#"{"dev":{"id":1},"p_out_kpa":2.4}"#),
        ),
        ("device is empty", text(r#"{"dev":"","p_out_kpa":2.4}"#)),
        (
            "device is 100 characters",
            format!(r#"{{"dev":"{}","p_out_kpa":2.4}}"#, "x".repeat(100)).into_bytes(),
        ),
        (
            "device has a topic wildcard",
            text(r#"{"dev":"GRB/#","p_out_kpa":2.4}"#),
        ),
        (
            "device has a control character",
            text("{\"dev\":\"GRB\\u0000\",\"p_out_kpa\":2.4}"),
        ),
        (
            "timestamp in 2100",
            text(r#"{"ts":4102444800,"dev":"GRB-01","p_out_kpa":2.4}"#),
        ),
        (
            "timestamp in 2000",
            text(r#"{"ts":946684800,"dev":"GRB-01","p_out_kpa":2.4}"#),
        ),
        (
            "negative timestamp",
            text(r#"{"ts":-5,"dev":"GRB-01","p_out_kpa":2.4}"#),
        ),
        (
            "timestamp is text",
            text(r#"{"ts":"yesterday","dev":"GRB-01","p_out_kpa":2.4}"#),
        ),
        (
            "timestamp 1e30",
            text(r#"{"ts":1e30,"dev":"GRB-01","p_out_kpa":2.4}"#),
        ),
    ]
}

/// What must become of a message.
#[derive(Debug, Clone, PartialEq)]
pub enum Expect {
    /// Dropped for its payload or topic, counted as a payload error on its topic.
    Dropped,
    /// Decoded, but its device id is not the mapping's to produce (or a polled device's):
    /// refused, counted as a refusal and as a problem on its topic.
    Refused,
    /// On a topic no mapping's filter covers: the broker never hands it to the gateway.
    NotSubscribed,
    /// A sample of this device with exactly these fields; `flagged` when part of it was
    /// unusable (counted as a payload error too).
    Sample {
        device: String,
        fields: Vec<(&'static str, f64)>,
        flagged: bool,
    },
}

/// One hostile message: the topic under the test's prefix, the payload, the outcome.
pub struct Case {
    pub what: String,
    pub topic: String,
    pub payload: Vec<u8>,
    pub expect: Expect,
}

/// Over a hundred messages for the mappings of `tests/mqtt_source.rs` (gas: `GRB-*` from `/dev`;
/// wells: `well_*` from topic level 3; rooms: `room_*` from `/device_id`; Neuron: any id from
/// `/node`), with `booster-1` and `prv-outlet` polled by the gateway.
pub fn cases() -> Vec<Case> {
    let sample = |device: &str, fields: &[(&'static str, f64)], flagged: bool| Expect::Sample {
        device: device.to_string(),
        fields: fields.to_vec(),
        flagged,
    };
    let gas = "gas/x/telemetry";
    let mut cases: Vec<Case> = Vec::new();
    let mut add = |what: &str, topic: &str, payload: Vec<u8>, expect: Expect| {
        cases.push(Case {
            what: what.to_string(),
            topic: topic.to_string(),
            payload,
            expect,
        })
    };
    // The malformed payloads: flagged samples where part of them is usable, else dropped.
    for (what, payload) in payloads() {
        let expect = match what {
            "value is NaN text" => sample("GRB-01", &[("p_out_kpa", 2.4)], true),
            w if w.starts_with("timestamp") || w == "negative timestamp" => {
                sample("GRB-01", &[("p_out_kpa", 2.4)], true)
            }
            _ => Expect::Dropped,
        };
        add(what, gas, payload, expect);
    }
    let text = |s: &str| s.as_bytes().to_vec();
    let gas_of =
        |dev: &str| format!(r#"{{"dev":{},"p_out_kpa":2.4}}"#, serde_json::json!(dev)).into_bytes();
    // Who speaks for whom: polled ids, ids outside the pattern, ids that carry markup.
    for (what, dev, expect) in [
        ("a polled pump's id", "booster-1", Expect::Refused),
        (
            "a polled pressure point's id",
            "prv-outlet",
            Expect::Refused,
        ),
        ("an id outside the pattern", "GRX-01", Expect::Refused),
        ("the pattern in lower case", "grb-01", Expect::Refused),
        (
            "a markdown link",
            "[点击处理](http://example.invalid)",
            Expect::Dropped,
        ),
        (
            "a markdown link without a slash",
            "GRB-[点击处理](x)",
            sample("GRB-[点击处理](x)", &[("p_out_kpa", 2.4)], false),
        ),
        ("bold markdown", "**GRB**", Expect::Refused),
        (
            "bold inside the pattern",
            "GRB-**紧急**",
            sample("GRB-**紧急**", &[("p_out_kpa", 2.4)], false),
        ),
        (
            "a mention",
            "GRB-@所有人",
            sample("GRB-@所有人", &[("p_out_kpa", 2.4)], false),
        ),
        ("an HTML tag", "GRB-<b>x</b>", Expect::Dropped),
        (
            "a backslash and n",
            "GRB-01\\n第二行",
            sample("GRB-01\\n第二行", &[("p_out_kpa", 2.4)], false),
        ),
        ("a newline", "GRB-01\n第二行", Expect::Dropped),
        ("a carriage return", "GRB-01\r", Expect::Dropped),
        ("a tab", "GRB-\t1", Expect::Dropped),
        ("a trailing backslash", "GRB-01\\", Expect::Dropped),
        (
            "a zero-width space",
            "GRB-\u{200b}01",
            sample("GRB-\u{200b}01", &[("p_out_kpa", 2.4)], false),
        ),
        (
            "a right-to-left override",
            "GRB-\u{202e}10",
            sample("GRB-\u{202e}10", &[("p_out_kpa", 2.4)], false),
        ),
        ("a delete character", "GRB-01\u{7f}", Expect::Dropped),
        ("a leading space", " GRB-01", Expect::Refused),
        (
            "SQL",
            "GRB-01'; DROP TABLE alarm;--",
            sample("GRB-01'; DROP TABLE alarm;--", &[("p_out_kpa", 2.4)], false),
        ),
        ("a template", "${GRB}", Expect::Refused),
        ("a polled id with a space", "booster-1 ", Expect::Refused),
        ("a wildcard", "GRB-+", Expect::Dropped),
        ("a hash", "GRB-#", Expect::Dropped),
        ("an empty id", "", Expect::Dropped),
        ("only spaces", "   ", Expect::Dropped),
        (
            "64 characters",
            &format!("GRB-{}", "9".repeat(60)),
            sample(
                &format!("GRB-{}", "9".repeat(60)),
                &[("p_out_kpa", 2.4)],
                false,
            ),
        ),
        (
            "65 characters",
            &format!("GRB-{}", "9".repeat(61)),
            Expect::Dropped,
        ),
        (
            "a Chinese id in the pattern",
            "GRB-三号楼",
            sample("GRB-三号楼", &[("p_out_kpa", 2.4)], false),
        ),
        (
            "an emoji",
            "GRB-😀",
            sample("GRB-😀", &[("p_out_kpa", 2.4)], false),
        ),
        (
            "a plain good id",
            "GRB-42",
            sample("GRB-42", &[("p_out_kpa", 2.4)], false),
        ),
        (
            "a listed id outside the pattern",
            "probe",
            sample("probe", &[("p_out_kpa", 2.4)], false),
        ),
    ] {
        add(what, gas, gas_of(dev), expect);
    }
    add(
        "no field at all",
        gas,
        text(r#"{"dev":"GRB-01"}"#),
        Expect::Dropped,
    );
    add(
        "a boolean field",
        gas,
        text(r#"{"dev":"GRB-01","p_out_kpa":2.4,"lel_pct":true}"#),
        sample("GRB-01", &[("p_out_kpa", 2.4), ("lel_pct", 1.0)], false),
    );
    let mut crowded = String::from(r#"{"dev":"GRB-01","p_out_kpa":2.4"#);
    for k in 0..5000 {
        crowded.push_str(&format!(r#","k{k}":1"#));
    }
    crowded.push('}');
    add(
        "5 000 unmapped keys",
        gas,
        crowded.into_bytes(),
        sample("GRB-01", &[("p_out_kpa", 2.4)], false),
    );
    // Duplicate keys: the last one counts, as in every JSON parser that keeps one.
    add(
        "a duplicate value",
        gas,
        text(r#"{"dev":"GRB-01","p_out_kpa":1,"p_out_kpa":2}"#),
        sample("GRB-01", &[("p_out_kpa", 2.0)], false),
    );
    add(
        "a polled id, then a good one",
        gas,
        text(r#"{"dev":"booster-1","dev":"GRB-01","p_out_kpa":2.4}"#),
        sample("GRB-01", &[("p_out_kpa", 2.4)], false),
    );
    add(
        "a good id, then a polled one",
        gas,
        text(r#"{"dev":"GRB-01","dev":"booster-1","p_out_kpa":2.4}"#),
        Expect::Refused,
    );
    // Numbers at the edges.
    for (what, raw, expect) in [
        (
            "the largest float",
            "1.7976931348623157e308",
            Some(f64::MAX),
        ),
        ("the smallest subnormal", "5e-324", Some(5e-324)),
        ("negative zero", "-0", Some(0.0)),
        (
            "a huge integer",
            "123456789012345678901234567890",
            Some(1.2345678901234568e29),
        ),
        ("a numeric string with spaces", "\"  2.5 \"", Some(2.5)),
        ("true", "true", Some(1.0)),
        ("false", "false", Some(0.0)),
        ("hexadecimal text", "\"0x10\"", None),
        ("infinity text", "\"Infinity\"", None),
        ("negative infinity text", "\"-inf\"", None),
        ("NaN text alone", "\"NaN\"", None),
        ("a number in an array", "[2.4]", None),
        ("an empty string", "\"\"", None),
        ("a comma decimal", "\"2,4\"", None),
    ] {
        let payload = format!(r#"{{"dev":"GRB-01","p_out_kpa":{raw}}}"#).into_bytes();
        let expect = match expect {
            Some(v) => sample("GRB-01", &[("p_out_kpa", v)], false),
            None => Expect::Dropped,
        };
        add(what, gas, payload, expect);
    }
    // Wells: the id is the topic's level.
    for (what, id, expect) in [
        (
            "a well",
            "well_07",
            sample("well_07", &[("water", 0.0), ("tilt_deg", 1.5)], false),
        ),
        ("a polled id as a topic level", "booster-1", Expect::Refused),
        ("a stranger's well", "evil_01", Expect::Refused),
        (
            "a markdown topic level",
            "well_[x](y)",
            sample("well_[x](y)", &[("water", 0.0), ("tilt_deg", 1.5)], false),
        ),
        (
            "a Chinese topic level",
            "well_井盖",
            sample("well_井盖", &[("water", 0.0), ("tilt_deg", 1.5)], false),
        ),
        ("a trailing backslash level", "well_07\\", Expect::Dropped),
    ] {
        add(
            what,
            &format!("well/status/{id}"),
            text(r#"{"water":0,"tilt":1.5}"#),
            expect,
        );
    }
    // Rooms: the id from /device_id.
    add(
        "a room",
        "room/a",
        text(r#"{"device_id":"room_1-1-0101","t_c":20.5}"#),
        sample("room_1-1-0101", &[("t_c", 20.5)], false),
    );
    add(
        "a polled id in a room message",
        "room/a",
        text(r#"{"device_id":"prv-outlet","t_c":20.5}"#),
        Expect::Refused,
    );
    add(
        "a numeric room id",
        "room/a",
        text(r#"{"device_id":1234,"t_c":20.5}"#),
        Expect::Refused,
    );
    add(
        "a room id that is an array",
        "room/a",
        text(r#"{"device_id":["room_1"],"t_c":20.5}"#),
        Expect::Dropped,
    );
    // Neuron: the node is the device.
    add(
        "a Neuron node",
        "neuron/n/modbus/g",
        text(r#"{"node":"dtu-7","group":"g","timestamp":0,"values":{"t_supply":700}}"#),
        sample("dtu-7", &[("supply_temp_c", 70.0)], true),
    );
    add(
        "a Neuron node with a polled id",
        "neuron/n/modbus/g",
        text(r#"{"node":"booster-1","values":{"t_supply":700}}"#),
        Expect::Refused,
    );
    add(
        "a Neuron tag with an error",
        "neuron/n/modbus/g",
        text(r#"{"node":"dtu-7","tags":[{"name":"t_supply","error":2014}]}"#),
        Expect::Dropped,
    );
    add(
        "Neuron tags that are not a list",
        "neuron/n/modbus/g",
        text(r#"{"node":"dtu-7","tags":{"t_supply":1}}"#),
        Expect::Dropped,
    );
    // Topics no mapping's filter covers.
    for (what, topic) in [
        ("one level too many", "gas/x/telemetry/extra"),
        ("an unknown kind", "water/x/telemetry"),
        ("a well without an id level", "well/status"),
        ("a Chinese topic", "燃气/x/telemetry"),
        ("a long topic", &format!("gas/x/{}", "y".repeat(2000))),
    ] {
        add(what, topic, gas_of("GRB-01"), Expect::NotSubscribed);
    }
    add(
        "an empty level",
        "gas//telemetry",
        gas_of("GRB-01"),
        sample("GRB-01", &[("p_out_kpa", 2.4)], false),
    );
    add(
        "a Chinese level",
        "gas/三号楼/telemetry",
        gas_of("GRB-01"),
        sample("GRB-01", &[("p_out_kpa", 2.4)], false),
    );
    cases
}
