//! Malformed and hostile MQTT payloads for a gas-regulator mapping that reads `/dev`, `/ts`,
//! `/p_out_kpa` and `/lel_pct`: each must be refused or flagged, and none may panic.

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
