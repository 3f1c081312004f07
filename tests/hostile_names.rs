//! Hostile names against the real InfluxDB 1.x that `scripts/test.sh` starts: every text that can
//! become a tag value (an MQTT device id, a site name, a device tag) is either written and read
//! back exactly as it was, or refused where it enters the gateway: by config validation naming
//! the key, or by the MQTT source as a message without a usable device id.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::services::{influxql, service_url};
use retrofit_gateway::config::{
    load, ConfigDuration, EnvOverlay, InfluxApi, InfluxOutput, MqttField, MqttMapping,
    PayloadFormat,
};
use retrofit_gateway::line_protocol;
use retrofit_gateway::sinks::influx::write::WriteEndpoint;
use retrofit_gateway::sources::mqtt::payload::{self, PayloadError};

const DATABASE: &str = "retrofit_hostile";

/// Text a careless installer, a vendor's firmware or a hostile publisher might produce.
const HOSTILE: [&str; 40] = [
    "幸福小区",
    "幸福小区 东区",
    "9,10",
    "a=b",
    "a = b",
    " leading",
    "trailing ",
    "\"quoted\"",
    "it's",
    "back\\slash",
    "double\\\\backslash",
    "\\start",
    "end\\",
    "comma\\,after",
    "space\\ after",
    "equals\\=after",
    "two\nlines",
    "carriage\rreturn",
    "tab\there",
    "😀 emoji",
    "#hash",
    "_underscore",
    "time",
    "-dash-",
    "[点击处理](http://example.invalid/x)",
    "**粗体**",
    "<b>html</b>",
    "a;b|c&d",
    "%20encoded",
    "${env}",
    "null",
    "0",
    "1e309",
    "\u{200b}zero-width",
    "\u{7f}delete",
    "a\u{0}nul",
    "ÀÉÎõü",
    "ⅠⅡⅢ",
    "dev-0123456789abcdef0123456789abcdef0123456789abcdef0123456789ab",
    "",
];

fn mapping() -> MqttMapping {
    MqttMapping {
        topic: "dtu/+/up".into(),
        format: PayloadFormat::Flat,
        measurement: "hostile_probe".into(),
        label: None,
        names: Default::default(),
        devices: Vec::new(),
        device_pattern: Some("*".into()),
        device_level: None,
        device_pointer: Some("/dev".into()),
        time_pointer: None,
        interval: ConfigDuration::from_millis(60_000),
        tags: Default::default(),
        fields: vec![MqttField {
            name: "pressure_mpa".into(),
            from: "/p".into(),
            unit: None,
            label: None,
            scale: 1.0,
            offset: 0.0,
        }],
    }
}

/// Whether a config with `site` as the site name loads; the problem it names otherwise.
fn site_in_config(dir: &Path, site: &str) -> Result<(), String> {
    let file = dir.join("gateway.toml");
    let text = format!(
        "[gateway]\nid = \"gw-hostile\"\nsite = {}\n[outputs.line_protocol]\npath = \"-\"\n",
        toml_string(site)
    );
    std::fs::write(&file, text).expect("writes the config");
    load(&file, EnvOverlay::None)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// A TOML basic string holding `text` exactly.
fn toml_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[tokio::test]
async fn hostile_names_read_back_equal_or_are_refused_where_they_enter() {
    let Some(url) = service_url("RGW_TEST_INFLUXDB1_URL") else {
        return;
    };
    influxql(&url, DATABASE, &format!("CREATE DATABASE {DATABASE}")).await;
    let run = format!("run-{}", std::process::id());
    let endpoint = WriteEndpoint::new(&InfluxOutput {
        database: Some(DATABASE.into()),
        ..InfluxOutput::new(url.clone(), InfluxApi::V1)
    })
    .expect("endpoint");
    let dir = tempfile::tempdir().expect("temp dir");
    let mapping = mapping();
    let mut written: BTreeSet<String> = BTreeSet::new();
    let mut sites: BTreeSet<String> = BTreeSet::new();
    let (mut refused_ids, mut refused_sites) = (0, 0);
    let mut body = String::new();
    let decode = |id: &str, site: &str, i: usize| {
        let json = serde_json::json!({ "dev": id, "p": 0.25 + i as f64 }).to_string();
        let base_tags = vec![
            ("gateway".to_string(), run.clone()),
            ("site".to_string(), site.to_string()),
        ];
        let time_ns = 1_764_150_000_000_000_000 + i as i64;
        payload::decode(&mapping, &base_tags, "dtu/x/up", json.as_bytes(), time_ns)
    };
    for (i, text) in HOSTILE.iter().enumerate() {
        let unstorable = line_protocol::tag_value_problem(text).is_some();
        // As a site name in the config: refused with the key named, or accepted and then
        // written as the site tag of a probe device.
        match site_in_config(dir.path(), text) {
            Err(problem) => {
                assert!(
                    problem.contains("gateway.site"),
                    "{text:?}: the refusal names the key: {problem}"
                );
                refused_sites += 1;
            }
            Ok(()) => {
                assert!(!unstorable, "{text:?} accepted as a site name");
                let decoded = decode(&format!("site-probe-{i}"), text, i).expect("decodes");
                line_protocol::encode(&decoded.sample, &mut body);
                sites.insert(text.to_string());
            }
        }
        // As an MQTT device id.
        match decode(text, "幸福小区", i) {
            Ok(decoded) => {
                assert!(!unstorable, "{text:?} accepted as a device id");
                assert_eq!(&*decoded.sample.device, *text);
                line_protocol::encode(&decoded.sample, &mut body);
                written.insert(text.to_string());
            }
            Err(PayloadError::NoDevice(reason)) => {
                refused_ids += 1;
                println!("refused as a device id: {text:?}: {reason}");
            }
            Err(other) => panic!("{text:?}: refused for another reason: {other}"),
        }
    }
    let lines: Vec<&str> = body.lines().collect();
    let answer = endpoint.write(&lines).await.expect("InfluxDB answers");
    assert_eq!(answer.status, 204, "{}", answer.body);
    let shown = |key: &'static str| {
        let url = url.clone();
        let run = run.clone();
        async move {
            let q = format!(
                "SHOW TAG VALUES FROM hostile_probe WITH KEY = \"{key}\" WHERE \"gateway\" = '{run}'"
            );
            let answer = influxql(&url, DATABASE, &q).await;
            answer["results"][0]["series"][0]["values"]
                .as_array()
                .map(|rows| {
                    rows.iter()
                        .filter_map(|row| row[1].as_str().map(str::to_string))
                        .collect::<BTreeSet<String>>()
                })
                .unwrap_or_default()
        }
    };
    let devices: BTreeSet<String> = shown("device")
        .await
        .into_iter()
        .filter(|d| !d.starts_with("site-probe-"))
        .collect();
    assert_eq!(devices, written, "device ids read back");
    let mut expected_sites = sites.clone();
    expected_sites.insert("幸福小区".to_string());
    assert_eq!(shown("site").await, expected_sites, "site names read back");
    println!(
        "{} hostile texts: {} device ids and {} site names read back equal; {refused_ids} refused as device ids, {refused_sites} as site names",
        HOSTILE.len(),
        written.len(),
        sites.len()
    );
}
