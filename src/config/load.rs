//! Loading: read the TOML file, apply the `RGW__SECTION__KEY` environment overlay, deserialize
//! with the key path of any type error, load the profiles the devices name, then validate.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use config::{Config, Environment, File, FileFormat};
use serde::de::DeserializeOwned;

use super::{validate, GatewayConfig, Profile};

/// One problem found in a config or profile file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// The file, as the user named it (profiles: the profile's path).
    pub file: String,
    /// Key path such as `device[2].unit`; empty for problems with the file as a whole.
    pub path: String,
    /// What is wrong and, in parentheses, what was expected.
    pub problem: String,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}: {}", self.file, self.problem)
        } else {
            write!(f, "{}: {}: {}", self.file, self.path, self.problem)
        }
    }
}

/// Every problem that stops a config from loading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub issues: Vec<ConfigIssue>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, issue) in self.issues.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{issue}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Where the environment overlay comes from.
#[derive(Debug, Clone)]
pub enum EnvOverlay {
    /// The process environment (`RGW__GATEWAY__ID=…`).
    Process,
    /// A fixed set of variables, for tests and embedding.
    Vars(HashMap<String, String>),
    /// No overlay.
    None,
}

/// A validated config with its profiles resolved.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    /// The config file as named by the user.
    pub path: PathBuf,
    pub gateway: GatewayConfig,
    /// Profiles by name, each loaded once however many devices use it.
    pub profiles: BTreeMap<String, Arc<Profile>>,
    /// Every rule of every rule pack, in pack order.
    pub rules: Vec<crate::config::rule_pack::RuleConfig>,
}

impl LoadedConfig {
    /// The profile of a device; validation guarantees it exists.
    pub fn profile_of(&self, device: &super::DeviceConfig) -> Option<&Arc<Profile>> {
        self.profiles.get(&device.profile)
    }

    /// The tag set of a device: `site`, `gateway`, `device`, then profile and device tags
    /// (device tags win), sorted by key.
    pub fn device_tags(&self, device: &super::DeviceConfig) -> crate::model::TagSet {
        let mut tags = BTreeMap::new();
        if let Some(profile) = self.profile_of(device) {
            tags.extend(profile.tags.clone());
        }
        tags.extend(device.tags.clone());
        tags.insert("site".to_string(), self.gateway.gateway.site.clone());
        tags.insert("gateway".to_string(), self.gateway.gateway.id.clone());
        tags.insert("device".to_string(), device.id.clone());
        tags.into_iter().collect::<Vec<_>>().into()
    }
}

/// Loads a config with the process environment overlay (`RGW_…` variables), as the commands do.
pub fn load_config(path: &Path) -> Result<LoadedConfig, ConfigError> {
    load(path, EnvOverlay::Process)
}

/// Loads and validates a gateway config file and the profiles it uses.
pub fn load(path: &Path, env: EnvOverlay) -> Result<LoadedConfig, ConfigError> {
    load_with(path, env, &|file| std::fs::read_to_string(file))
}

/// Reads a config, profile or rule pack file by its path.
pub type ReadFile<'a> = &'a dyn Fn(&Path) -> std::io::Result<String>;

/// [`load`] with the files read by `read` (the demo's built-in files, or the disk).
pub fn load_with(
    path: &Path,
    env: EnvOverlay,
    read: ReadFile<'_>,
) -> Result<LoadedConfig, ConfigError> {
    let file_label = path.display().to_string();
    let fail = |path: String, problem: String| ConfigError {
        issues: vec![ConfigIssue {
            file: file_label.clone(),
            path,
            problem,
        }],
    };
    let text =
        read(path).map_err(|e| fail(String::new(), format!("cannot read the file ({e})")))?;

    let mut builder = Config::builder().add_source(File::from_str(&text, FileFormat::Toml));
    let environment = || {
        Environment::with_prefix("RGW")
            .prefix_separator("__")
            .separator("__")
            .try_parsing(true)
    };
    builder = match env {
        EnvOverlay::Process => builder.add_source(environment()),
        EnvOverlay::Vars(vars) => builder.add_source(environment().source(Some(vars))),
        EnvOverlay::None => builder,
    };
    let gateway: GatewayConfig = deserialize(builder, &file_label)?;

    let base = path.parent().unwrap_or(Path::new("."));
    let profile_dir = base.join(&gateway.gateway.profile_dir);
    let mut issues = Vec::new();
    let mut profiles = BTreeMap::new();
    for (i, device) in gateway.device.iter().enumerate() {
        if profiles.contains_key(&device.profile) {
            continue;
        }
        if !is_profile_name(&device.profile) {
            issues.push(ConfigIssue {
                file: file_label.clone(),
                path: format!("device[{i}].profile"),
                problem: format!(
                    "{:?} is not a profile name (expected letters, digits, '-' and '_')",
                    device.profile
                ),
            });
            continue;
        }
        let profile_path = profile_dir.join(format!("{}.toml", device.profile));
        match load_toml::<Profile>(&profile_path, read) {
            Ok(profile) => {
                profiles.insert(device.profile.clone(), Arc::new(profile));
            }
            Err(TomlLoadError::Missing) => issues.push(ConfigIssue {
                file: file_label.clone(),
                path: format!("device[{i}].profile"),
                problem: format!(
                    "no profile named {:?} (expected a file {})",
                    device.profile,
                    profile_path.display()
                ),
            }),
            Err(TomlLoadError::Invalid(e)) => issues.extend(e.issues),
        }
    }
    let mut rules = Vec::new();
    let mut rule_keys = std::collections::HashSet::new();
    for (i, pack) in gateway.alarms.rule_packs.iter().enumerate() {
        let pack_path = base.join(pack);
        match load_toml::<crate::config::rule_pack::RulePack>(&pack_path, read) {
            Ok(pack) => {
                let label = pack_path.display().to_string();
                issues.extend(validate::rules(
                    &label,
                    &mut rule_keys,
                    &pack.rules,
                    &gateway,
                    &profiles,
                ));
                rules.extend(pack.rules);
            }
            Err(TomlLoadError::Missing) => issues.push(ConfigIssue {
                file: file_label.clone(),
                path: format!("alarms.rule_packs[{i}]"),
                problem: format!("no rule pack at {} (expected a file)", pack_path.display()),
            }),
            Err(TomlLoadError::Invalid(e)) => issues.extend(e.issues),
        }
    }
    for (name, profile) in &profiles {
        let label = profile_dir
            .join(format!("{name}.toml"))
            .display()
            .to_string();
        issues.extend(validate::profile(&label, profile));
    }
    issues.extend(validate::gateway(&file_label, &gateway, &profiles));
    issues.extend(validate::overrides(&file_label, &gateway, &rules));
    if issues.is_empty() {
        Ok(LoadedConfig {
            path: path.to_path_buf(),
            gateway,
            profiles,
            rules,
        })
    } else {
        Err(ConfigError { issues })
    }
}

enum TomlLoadError {
    Missing,
    Invalid(ConfigError),
}

/// Loads a profile or rule pack file.
fn load_toml<T: DeserializeOwned>(path: &Path, read: ReadFile<'_>) -> Result<T, TomlLoadError> {
    let label = path.display().to_string();
    let text = match read(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(TomlLoadError::Missing),
        Err(e) => {
            return Err(TomlLoadError::Invalid(ConfigError {
                issues: vec![ConfigIssue {
                    file: label,
                    path: String::new(),
                    problem: format!("cannot read the file ({e})"),
                }],
            }))
        }
    };
    let builder = Config::builder().add_source(File::from_str(&text, FileFormat::Toml));
    deserialize(builder, &label).map_err(TomlLoadError::Invalid)
}

fn is_profile_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Builds the layered config and deserializes it, keeping the key path of the first type error.
fn deserialize<T: DeserializeOwned>(
    builder: config::ConfigBuilder<config::builder::DefaultState>,
    file_label: &str,
) -> Result<T, ConfigError> {
    let issue = |path: String, problem: String| ConfigError {
        issues: vec![ConfigIssue {
            file: file_label.to_string(),
            path,
            problem,
        }],
    };
    let built = builder
        .build()
        .map_err(|e| issue(String::new(), describe_syntax_error(&e.to_string())))?;
    serde_path_to_error::deserialize(built).map_err(|e| {
        let path = e.path().to_string();
        let mut path = if path == "." { String::new() } else { path };
        let mut problem = describe_serde_error(&e.into_inner());
        // The config crate reports some missing keys itself, with their full path.
        if let Some(full) = problem.strip_prefix("missing configuration field ") {
            // It writes `device[4]site.storeys`: the dot after an index is put back.
            path = dot_after_index(full.trim_matches('"'));
            problem = "is required but missing".to_string();
        }
        // serde reports a missing key at its parent; name the key itself.
        if let Some(key) = problem.strip_suffix(" is required but missing") {
            let key = key.trim_matches('`');
            path = if path.is_empty() {
                key.to_string()
            } else {
                format!("{path}.{key}")
            };
            problem = "is required but missing".to_string();
        }
        issue(path, problem)
    })
}

/// `device[4]site.storeys` as `device[4].site.storeys`: a dot between an index and the key
/// that follows it.
fn dot_after_index(path: &str) -> String {
    let mut dotted = String::with_capacity(path.len() + 4);
    let mut after_index = false;
    for c in path.chars() {
        if after_index && c != '.' && c != '[' {
            dotted.push('.');
        }
        after_index = c == ']';
        dotted.push(c);
    }
    dotted
}

/// One line out of the TOML parser's multi-line report: where, and what.
fn describe_syntax_error(report: &str) -> String {
    let lines: Vec<&str> = report
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let location = lines
        .first()
        .and_then(|l| l.find("at line ").map(|i| l[i..].to_string()))
        .unwrap_or_default();
    let reason = lines
        .last()
        .map(|l| l.trim_end_matches(')').to_string())
        .unwrap_or_default();
    format!("not valid TOML {location}: {reason}")
}

/// Turns serde's wording ("invalid type: string \"x\", expected u8") into ours, and drops the
/// location suffix the config crate appends (we print the file and key path ourselves).
fn describe_serde_error(error: &config::ConfigError) -> String {
    let text = error.to_string();
    let text = match text.find(" for key `") {
        Some(cut) => text[..cut].to_string(),
        None => text,
    };
    if let Some(rest) = text.strip_prefix("missing field ") {
        return format!("{rest} is required but missing");
    }
    if let Some(rest) = text.strip_prefix("unknown field ") {
        return match rest.split_once(", expected ") {
            Some((key, expected)) => format!("unknown key {key} (expected {expected})"),
            None => format!("unknown key {rest}"),
        };
    }
    if let Some((what, expected)) = text.split_once(", expected ") {
        return format!("{what} (expected {expected})");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::dot_after_index;

    #[test]
    fn a_key_after_an_index_gets_its_dot() {
        assert_eq!(
            dot_after_index("device[4]site.storeys"),
            "device[4].site.storeys"
        );
        assert_eq!(dot_after_index("device[4].site"), "device[4].site");
        assert_eq!(dot_after_index("a[1][2]b"), "a[1][2].b");
        assert_eq!(dot_after_index("gateway.id"), "gateway.id");
    }
}
