//! What ships for installers: the systemd unit passes `systemd-analyze verify`, and its
//! hardening keeps systemd's exposure score below 3 ("OK").

mod common;

use std::path::Path;
use std::process::Command;

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
    ] {
        assert!(unit.contains(setting), "{setting} missing");
    }
}
