//! What ships for installers and the central stack: the systemd unit passes `systemd-analyze
//! verify`, its hardening keeps systemd's exposure score below 3 ("OK") and its system call
//! filter (as `systemd-analyze syscall-filter` expands it) lets adjtimex through; every Grafana
//! dashboard is valid JSON whose every query names a measurement and fields that the shipped
//! profiles, MQTT mappings, rules and self-monitoring actually write.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use retrofit_gateway::config::{load, EnvOverlay};

use common::services::required_command;

#[test]
fn the_systemd_unit_verifies_and_is_hardened() {
    let Some(analyze) = required_command("systemd-analyze") else {
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let unit = std::fs::read_to_string(root.join("deploy/systemd/retrofit-gateway.service"))
        .expect("the unit");
    // verify checks that ExecStart exists: point it at the binary just built.
    let dir = tempfile::tempdir().expect("temp dir");
    let copy = dir.path().join("retrofit-gateway.service");
    std::fs::write(
        &copy,
        unit.replace(
            "/usr/bin/retrofit-gateway",
            env!("CARGO_BIN_EXE_retrofit-gateway"),
        ),
    )
    .expect("copy");
    let verify = Command::new(&analyze)
        .arg("verify")
        .arg(&copy)
        .output()
        .expect("systemd-analyze runs");
    let complaints = String::from_utf8_lossy(&verify.stderr);
    assert!(
        verify.status.success() && complaints.trim().is_empty(),
        "{complaints}"
    );

    let security = Command::new(&analyze)
        .args(["security", "--offline=true"])
        .arg(&copy)
        .output()
        .expect("systemd-analyze runs");
    let report = String::from_utf8_lossy(&security.stdout);
    let score: f64 = report
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for retrofit-gateway.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{report}"));
    eprintln!("systemd exposure level: {score}");
    assert!(score < 3.0, "exposure {score}:\n{report}");
    for setting in [
        "Type=notify",
        "WatchdogSec=",
        "DynamicUser=yes",
        "ProtectSystem=strict",
        "StateDirectory=",
        "SupplementaryGroups=dialout",
        "Restart=always",
        "RestartPreventExitStatus=78",
        "LimitNOFILE=",
        "LoadCredential=secret:/etc/retrofit-gateway/secrets",
        "DeviceAllow=char-ttyAMA rw",
        "DeviceAllow=char-ttySC rw",
        "DeviceAllow=char-ttyCH343USB rw",
    ] {
        assert!(unit.contains(setting), "{setting} missing");
    }

    // The system calls the filter lets through, its groups expanded by systemd itself: the
    // clock-sync check (S4) needs adjtimex, which @system-service leaves out.
    let group = |name: &str| syscalls_of(&analyze, name);
    let allowed: BTreeSet<String> = unit
        .lines()
        .filter_map(|l| l.strip_prefix("SystemCallFilter="))
        .flat_map(str::split_whitespace)
        .flat_map(|token| match token.strip_prefix('@') {
            Some(_) => group(token),
            None => vec![token.to_string()],
        })
        .collect();
    let service = group("@system-service");
    assert!(service.iter().any(|c| c == "openat"), "{service:?}");
    assert!(
        !service.iter().any(|c| c == "adjtimex"),
        "@system-service alone would do"
    );
    assert!(
        allowed.contains("adjtimex"),
        "the filter blocks adjtimex: {allowed:?}"
    );
    assert!(!allowed.contains("settimeofday") && !allowed.contains("clock_settime"));
}

/// The system calls of a `systemd-analyze syscall-filter` group, its nested groups expanded.
fn syscalls_of(analyze: &Path, group: &str) -> Vec<String> {
    let listed = Command::new(analyze)
        .args(["syscall-filter", group])
        .output()
        .expect("systemd-analyze runs");
    String::from_utf8_lossy(&listed.stdout)
        .lines()
        .skip(1) // the group's own name
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .flat_map(|entry| match entry.starts_with('@') {
            true => syscalls_of(analyze, entry),
            false => vec![entry.to_string()],
        })
        .collect()
}

/// Every quoted value that follows `marker` in `query`.
fn quoted_after<'a>(query: &'a str, marker: &str) -> Vec<&'a str> {
    query
        .split(marker)
        .skip(1)
        .filter_map(|rest| rest.strip_prefix('"')?.split('"').next())
        .collect()
}

/// Measurement → fields that the shipped configuration writes.
fn written() -> BTreeMap<String, BTreeSet<String>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut writes: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in ["config/demo.toml", "config/gateway.example.toml"] {
        let config = load(&root.join(file), EnvOverlay::None).unwrap_or_else(|e| panic!("{e}"));
        for profile in config.profiles.values() {
            let fields = writes.entry(profile.kind.clone()).or_default();
            fields.extend(profile.field_names().map(String::from));
        }
        for mapping in config.gateway.mqtt_source.iter().flat_map(|s| &s.mappings) {
            let fields = writes.entry(mapping.measurement.clone()).or_default();
            fields.extend(mapping.fields.iter().map(|f| f.name.clone()));
        }
    }
    // The rules stage's alarm lines and the gateway's own sample.
    writes
        .entry("alarm".into())
        .or_default()
        .extend(["state", "value", "limit", "message", "id", "flapping"].map(String::from));
    writes
        .entry(retrofit_gateway::kpi::lines::MEASUREMENT.into())
        .or_default()
        .extend(["value", "target", "numerator", "denominator", "final"].map(String::from));
    writes
        .entry(retrofit_gateway::model::GATEWAY_MEASUREMENT.into())
        .or_default()
        .extend(retrofit_gateway::model::GATEWAY_FIELDS.map(String::from));
    writes
}

#[test]
fn every_dashboard_query_reads_what_the_gateway_writes() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/central/grafana");
    let writes = written();
    let datasources = std::fs::read_to_string(root.join("provisioning/datasources/influxdb.yaml"))
        .expect("datasource provisioning");
    let mut dashboards = 0;
    let mut queries = 0;
    let mut measurements_seen = BTreeSet::new();
    for entry in std::fs::read_dir(root.join("dashboards")).expect("dashboards") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("readable");
        let dashboard: serde_json::Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()));
        dashboards += 1;
        assert!(
            dashboard["uid"].is_string() && dashboard["title"].is_string(),
            "{}",
            path.display()
        );
        let panels = dashboard["panels"].as_array().expect("panels");
        assert!(!panels.is_empty(), "{}", path.display());
        for panel in panels {
            let uid = panel["datasource"]["uid"]
                .as_str()
                .expect("a datasource uid");
            assert!(
                datasources.contains(&format!("uid: {uid}")),
                "{uid} is not provisioned"
            );
            for target in panel["targets"].as_array().expect("targets") {
                let query = target["query"].as_str().expect("a query");
                queries += 1;
                let measurements = quoted_after(query, "r._measurement == ");
                assert_eq!(measurements.len(), 1, "{}: {query}", path.display());
                let measurement = measurements[0];
                let fields = quoted_after(query, "r._field == ");
                assert!(
                    !fields.is_empty(),
                    "{}: no field in {query}",
                    path.display()
                );
                let known = writes.get(measurement).unwrap_or_else(|| {
                    panic!("{}: nothing writes {measurement:?}", path.display())
                });
                for field in fields {
                    assert!(
                        known.contains(field),
                        "{}: {measurement:?} has no field {field:?}",
                        path.display()
                    );
                }
                measurements_seen.insert(measurement.to_string());
            }
        }
    }
    eprintln!("{dashboards} dashboards, {queries} queries over {measurements_seen:?}");
    // A dashboard per station kind, and the alarm table.
    for kind in [
        "pump_station",
        "prv_station",
        "flow_meter",
        "power_meter",
        "transformer",
        "heating_substation",
        "gas_regulator",
        "room",
        "valve_well",
        "alarm",
        "gateway",
        "household_meter",
        "heat_meter",
        "water_meter",
        "kpi",
    ] {
        assert!(measurements_seen.contains(kind), "no panel shows {kind}");
    }
}

/// The centre's "gateway silent" alert reads a field every gateway writes once a minute, from
/// the provisioned data source, and fires past 5 minutes.
#[test]
fn the_gateway_silent_alert_reads_what_every_gateway_writes() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/central/grafana/provisioning");
    let alert =
        std::fs::read_to_string(root.join("alerting/gateway-silent.yaml")).expect("the alert rule");
    let datasources =
        std::fs::read_to_string(root.join("datasources/influxdb.yaml")).expect("data source");
    let writes = written();
    let measurement = quoted_after(&alert, "r._measurement == ");
    assert_eq!(measurement, [retrofit_gateway::model::GATEWAY_MEASUREMENT]);
    for field in quoted_after(&alert, "r._field == ") {
        assert!(writes[measurement[0]].contains(field), "{field}");
    }
    assert!(
        datasources.contains("uid: rgw-influxdb") && alert.contains("datasourceUid: rgw-influxdb")
    );
    assert!(alert.contains("params: [300]"), "5 minutes");
    // One minute apart: five missed samples before it fires.
    assert_eq!(
        retrofit_gateway::commands::SELF_MONITORING_EVERY,
        std::time::Duration::from_secs(60)
    );
}
