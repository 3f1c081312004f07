//! The command line as an installer meets it: help on stdout with exit 0 (in Chinese), a
//! version, help for each command, and usage mistakes on stderr with exit 2.

use std::process::{Command, Output};

const BINARY: &str = env!("CARGO_BIN_EXE_retrofit-gateway");

fn gateway(args: &[&str]) -> Output {
    Command::new(BINARY).args(args).output().expect("runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn help_goes_to_stdout_with_exit_zero_and_lists_every_command_and_exit_code() {
    for flag in ["--help", "-h"] {
        let out = gateway(&[flag]);
        assert_eq!(out.status.code(), Some(0), "{flag}");
        assert!(out.stderr.is_empty(), "{flag}: {}", text(&out.stderr));
        let help = text(&out.stdout);
        assert!(help.contains("用法："), "{help}");
        for command in [
            "run",
            "check-config",
            "plan",
            "read",
            "scan",
            "demo",
            "report",
            "demo-month",
        ] {
            assert!(
                help.contains(&format!("\n  {command} ")),
                "{command}: {help}"
            );
        }
        for code in ["0 ", "1 ", "2 ", "78 "] {
            assert!(
                help.contains(&format!("\n  {code}")),
                "exit code {code}: {help}"
            );
        }
    }
}

#[test]
fn version_names_the_package_version() {
    for flag in ["--version", "-V"] {
        let out = gateway(&[flag]);
        assert_eq!(out.status.code(), Some(0));
        assert_eq!(
            text(&out.stdout).trim(),
            format!("retrofit-gateway {}", env!("CARGO_PKG_VERSION"))
        );
    }
}

#[test]
fn each_command_has_its_own_help() {
    for (command, option) in [
        ("run", "--config <FILE>"),
        ("check-config", "--config <FILE>"),
        ("plan", "--config <FILE>"),
        ("read", "<DEVICE>"),
        ("scan", "--units <LIST>"),
        ("demo", "--duration <DURATION>"),
        ("report", "--month <YYYY-MM>"),
        ("demo-month", "--data-dir <DIR>"),
    ] {
        let out = gateway(&[command, "--help"]);
        assert_eq!(out.status.code(), Some(0), "{command}");
        let help = text(&out.stdout);
        assert!(
            help.contains(&format!("retrofit-gateway {command}")),
            "{help}"
        );
        assert!(help.contains(option), "{command}: {help}");
        assert!(help.contains("显示帮助"), "{command}: {help}");
    }
}

#[test]
fn usage_mistakes_go_to_stderr_with_exit_two() {
    for args in [
        &[][..],
        &["bogus"],
        &["run"],
        &["check-config", "--frobnicate"],
        &["demo", "--duration", "soon"],
        &["report"],
    ] {
        let out = gateway(args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(out.stdout.is_empty(), "{args:?}: {}", text(&out.stdout));
        assert!(!out.stderr.is_empty(), "{args:?}");
    }
    let typo = gateway(&["chek-config"]);
    assert!(text(&typo.stderr).contains("check-config"), "a suggestion");
}
