//! Golden config cases: every folder under `tests/config_cases/` holds a `gateway.toml` and either
//! `error.txt` (the exact problems `check-config` must report, one per line, file paths relative
//! to the case folder) or `expected.txt` (the summary of a valid config).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use retrofit_gateway::config::{load, EnvOverlay};

fn cases() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/config_cases");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("tests/config_cases exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("gateway.toml").is_file())
        .collect();
    cases.sort();
    cases
}

/// What loading a case reports, with the case folder stripped from file names.
fn outcome(case: &Path) -> Result<String, String> {
    let prefix = format!("{}/", case.display());
    let strip = |text: String| text.replace(&prefix, "");
    match load(&case.join("gateway.toml"), EnvOverlay::None) {
        Ok(config) => Ok(format!(
            "ok: {} buses, {} devices, {} profiles",
            config.gateway.bus.len(),
            config.gateway.device.len(),
            config.profiles.len()
        )),
        Err(e) => Err(strip(e.to_string())),
    }
}

#[test]
fn every_golden_case_reports_exactly_its_expected_text() {
    let cases = cases();
    let broken = cases
        .iter()
        .filter(|c| c.join("error.txt").is_file())
        .count();
    assert!(broken >= 10, "only {broken} broken golden configs");
    let mut failures = Vec::new();
    for case in &cases {
        let name = case.file_name().unwrap_or_default().to_string_lossy();
        let (expected_file, expect_error) = if case.join("error.txt").is_file() {
            (case.join("error.txt"), true)
        } else {
            (case.join("expected.txt"), false)
        };
        let expected = std::fs::read_to_string(&expected_file)
            .unwrap_or_else(|_| panic!("{name}: no error.txt or expected.txt"));
        let actual = match (outcome(case), expect_error) {
            (Err(text), true) | (Ok(text), false) => text,
            (Ok(text), true) => format!("loaded but should not have: {text}"),
            (Err(text), false) => format!("failed but should have loaded:\n{text}"),
        };
        if actual.trim_end() != expected.trim_end() {
            failures.push(format!(
                "--- {name}\nexpected:\n{}\nactual:\n{}",
                expected.trim_end(),
                actual.trim_end()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_error_line_names_the_file_and_a_key_path() {
    for case in cases() {
        if let Err(text) = outcome(&case) {
            for line in text.lines() {
                let mut parts = line.splitn(3, ": ");
                let file = parts.next().unwrap_or_default();
                assert!(file.ends_with(".toml"), "{line}");
                if !line.contains("not valid TOML") {
                    let path = parts.next().unwrap_or_default();
                    assert!(
                        path.chars()
                            .all(|c| c.is_ascii_alphanumeric() || "._[]".contains(c))
                            && !path.is_empty(),
                        "no key path in {line:?}"
                    );
                }
            }
        }
    }
}

#[test]
fn environment_overlay_overrides_the_file() {
    let case = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/config_cases/valid_minimal");
    let vars = HashMap::from([
        ("RGW__GATEWAY__ID".to_string(), "from-env".to_string()),
        ("RGW__GATEWAY__SITE".to_string(), "朔城区".to_string()),
    ]);
    let config = load(&case.join("gateway.toml"), EnvOverlay::Vars(vars)).expect("loads");
    assert_eq!(config.gateway.gateway.id, "from-env");
    assert_eq!(config.gateway.gateway.site, "朔城区");
}

#[test]
fn the_shipped_demo_config_is_valid() {
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/demo.toml");
    let config = load(&demo, EnvOverlay::None).unwrap_or_else(|e| panic!("{e}"));
    // 13 Modbus devices, 6 household meters, 10 building heat meters and the primary one, 4
    // building water meters.
    assert_eq!(config.gateway.device.len(), 34);
}

#[test]
fn the_documented_example_config_is_valid() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/gateway.example.toml");
    let config = load(&example, EnvOverlay::None).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.gateway.bus.len(), 4);
    assert_eq!(config.gateway.device[1].ct_ratio, 300.0);
    assert_eq!(
        config.gateway.device[3].meter_address.as_deref(),
        Some("000000110901")
    );
}

#[test]
fn check_config_warns_of_a_log_larger_than_the_card_and_of_a_password_in_clear_text() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("gateway.toml");
    let config = |url: &str, max_size_mb: u64| {
        format!(
            "[gateway]\nid = \"gw\"\nsite = \"幸福小区\"\ndata_dir = {:?}\n[buffer]\nmax_size_mb = {max_size_mb}\n\
             [outputs.influxdb]\nurl = \"{url}\"\napi = \"v1\"\ndatabase = \"x\"\nusername = \"u\"\npassword_env = \"P\"\n",
            dir.path().join("data")
        )
    };
    std::fs::write(&file, config("http://influx.example.cn:8086", 1 << 40)).expect("writes");
    let summary = retrofit_gateway::commands::check_config(&file).expect("valid");
    let warnings: Vec<&str> = summary.lines().skip(1).collect();
    assert_eq!(warnings.len(), 2, "{summary}");
    assert!(
        warnings[0].contains("warning: buffer.max_size_mb:"),
        "{summary}"
    );
    assert!(
        warnings[1].contains("warning: outputs.influxdb.url:"),
        "{summary}"
    );
    // A small log and an address on the local network: nothing to warn of.
    std::fs::write(&file, config("http://192.168.1.20:8086", 16)).expect("writes");
    let summary = retrofit_gateway::commands::check_config(&file).expect("valid");
    assert_eq!(summary.lines().count(), 1, "{summary}");
}
