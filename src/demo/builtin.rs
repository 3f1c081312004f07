//! The demo's config, with the profiles and rule packs of `config/`, built into the binary: `demo`
//! and `demo-month` run from any directory, as an installed package runs them. A config given with
//! `-c` is read from the disk instead, with the files it names.

use std::path::Path;

use crate::config::{load_with, ConfigError, EnvOverlay, LoadedConfig};

/// The built-in config's path; the files it names are looked up beside it, as on the disk.
pub const DEMO_CONFIG: &str = "config/demo.toml";

macro_rules! builtin {
    ($path:literal) => {
        ($path, include_str!(concat!("../../", $path)))
    };
}

/// Every file of `config/` by its path in the repository.
const FILES: &[(&str, &str)] = &[
    builtin!("config/demo.toml"),
    builtin!("config/profiles/acrel-dtsd1352.toml"),
    builtin!("config/profiles/booster-pump-cdab.toml"),
    builtin!("config/profiles/chint-dtsu666.toml"),
    builtin!("config/profiles/cjt188-heat-meter.toml"),
    builtin!("config/profiles/cjt188-water-meter.toml"),
    builtin!("config/profiles/dlt645-single-phase.toml"),
    builtin!("config/profiles/dry-transformer-tc.toml"),
    builtin!("config/profiles/em-flowmeter.toml"),
    builtin!("config/profiles/heating-substation-plc.toml"),
    builtin!("config/profiles/level-transmitter.toml"),
    builtin!("config/profiles/mbus-heat-meter.toml"),
    builtin!("config/profiles/pressure-transmitter.toml"),
    builtin!("config/rules/gas.toml"),
    builtin!("config/rules/gateway.toml"),
    builtin!("config/rules/heating.toml"),
    builtin!("config/rules/power.toml"),
    builtin!("config/rules/water.toml"),
];

/// `config` from the disk, or the built-in demo config when there is none.
pub fn load(config: Option<&Path>) -> Result<LoadedConfig, ConfigError> {
    match config {
        Some(path) => crate::config::load_config(path),
        None => load_with(Path::new(DEMO_CONFIG), EnvOverlay::Process, &read),
    }
}

fn read(path: &Path) -> std::io::Result<String> {
    FILES
        .iter()
        .find(|(name, _)| Path::new(name) == path)
        .map(|(_, text)| text.to_string())
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{} is not among the demo's built-in files", path.display()),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_of_the_config_directory_is_built_in() {
        let mut on_disk = vec![DEMO_CONFIG.to_string()];
        for dir in ["config/profiles", "config/rules"] {
            for entry in std::fs::read_dir(dir).expect("the directory") {
                let name = entry.expect("an entry").file_name();
                on_disk.push(format!("{dir}/{}", name.to_string_lossy()));
            }
        }
        on_disk.sort();
        let mut built_in: Vec<String> = FILES.iter().map(|(name, _)| name.to_string()).collect();
        built_in.sort();
        assert_eq!(built_in, on_disk);
    }

    #[test]
    fn the_built_in_config_loads_as_the_file_does() {
        let built_in = load(None).expect("the built-in config loads");
        let on_disk = load(Some(Path::new(DEMO_CONFIG))).expect("the file loads");
        let debug = |config: &LoadedConfig| {
            format!(
                "{:?} {:?} {:?}",
                config.gateway, config.profiles, config.rules
            )
        };
        assert_eq!(debug(&built_in), debug(&on_disk));
        assert!(!built_in.rules.is_empty() && !built_in.profiles.is_empty());
    }
}
