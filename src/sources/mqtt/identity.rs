//! Who may speak for a device over MQTT. The device id of a message comes from a topic level or
//! a JSON field, so whoever holds the broker credential (often one, shared by every battery
//! sensor of a site) can write any id. A mapping therefore says which ids it may produce:
//! `devices = [..]`, the ids its `names` table names, and `device_pattern` (`*` any run of
//! characters, `?` one). A message for any other id, or for the id of a device the gateway
//! polls itself, is refused: it would otherwise refresh that device's last-seen time (hiding a
//! dead meter), run its rules on invented values and count toward its KPIs.

use std::collections::{BTreeSet, HashSet};

use crate::config::MqttMapping;

/// Why a message's device id was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The id of a device the gateway polls.
    PolledDevice,
    /// Not among the ids the mapping may produce.
    NotListed,
}

impl Refusal {
    /// The `reason` label of `rgw_mqtt_source_refused_total`.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::PolledDevice => "polled_device",
            Refusal::NotListed => "not_listed",
        }
    }
}

/// The device ids one mapping may produce.
#[derive(Debug, Clone, Default)]
pub struct DeviceIds {
    listed: BTreeSet<String>,
    pattern: Option<String>,
}

impl DeviceIds {
    pub fn of(mapping: &MqttMapping) -> DeviceIds {
        DeviceIds {
            listed: mapping
                .devices
                .iter()
                .chain(mapping.names.keys())
                .cloned()
                .collect(),
            pattern: mapping.device_pattern.clone(),
        }
    }

    pub fn admits(&self, id: &str) -> bool {
        self.listed.contains(id) || self.pattern.as_deref().is_some_and(|p| glob(p, id))
    }
}

/// The ids of the polled devices and each mapping's ids: the source's gate.
#[derive(Debug, Clone, Default)]
pub struct Gate {
    polled: HashSet<String>,
}

impl Gate {
    pub fn new(polled: impl IntoIterator<Item = String>) -> Gate {
        Gate {
            polled: polled.into_iter().collect(),
        }
    }

    /// Whether a message of a mapping with `ids` may speak for `device`.
    pub fn check(&self, ids: &DeviceIds, device: &str) -> Result<(), Refusal> {
        if self.polled.contains(device) {
            Err(Refusal::PolledDevice)
        } else if ids.admits(device) {
            Ok(())
        } else {
            Err(Refusal::NotListed)
        }
    }
}

/// Whether `text` matches `pattern`, where `*` stands for any run of characters (also none)
/// and `?` for exactly one; every other character for itself.
pub fn glob(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    // Greedy with one backtrack point, the last `*`: linear in practice, never exponential.
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == '?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_runs_and_single_characters() {
        assert!(glob("GRB-*", "GRB-01"));
        assert!(glob("GRB-*", "GRB-"));
        assert!(!glob("GRB-*", "grb-01"));
        assert!(glob("well_??", "well_07"));
        assert!(!glob("well_??", "well_007"));
        assert!(glob("room_*-*-0???", "room_11-2-0901"));
        assert!(!glob("room_*-*-0???", "room_11-2-1901"));
        assert!(glob("*", "anything"));
        assert!(glob("a*b*c", "aXbYbZc"));
        assert!(!glob("a*b*c", "aXbYbZ"));
        assert!(!glob("", "x"));
        assert!(glob("", ""));
        assert!(glob("井盖*", "井盖07"));
    }

    #[test]
    fn a_pathological_pattern_stays_fast() {
        let text = "a".repeat(64);
        assert!(!glob(&format!("{}b", "*a".repeat(30)), &text));
    }

    #[test]
    fn polled_ids_are_refused_even_when_listed() {
        let gate = Gate::new(["booster-1".to_string()]);
        let ids = DeviceIds {
            listed: ["GRB-01".to_string(), "booster-1".to_string()].into(),
            pattern: Some("*".into()),
        };
        assert_eq!(gate.check(&ids, "GRB-01"), Ok(()));
        assert_eq!(gate.check(&ids, "booster-1"), Err(Refusal::PolledDevice));
        let strict = DeviceIds {
            listed: ["GRB-01".to_string()].into(),
            pattern: None,
        };
        assert_eq!(gate.check(&strict, "GRB-02"), Err(Refusal::NotListed));
    }
}
