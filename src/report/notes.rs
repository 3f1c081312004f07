//! What the report says beyond the stored figures, from the config it is made under: each
//! rule's title for the alarm tables and, for the appendix, what the plan requires and where
//! the number comes from (standard, clause, `[INFERRED]`: the provenance that never goes into
//! an alarm message); and what people call each device.

use std::collections::BTreeMap;

use crate::config::LoadedConfig;
use crate::rules::words;

/// One rule as the report's reader needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleNote {
    /// What happened, in the plan's words (`顶层水压不足`).
    pub title: String,
    /// What the plan requires.
    pub requirement: String,
    /// The standard or practice the number comes from.
    pub source: String,
}

/// Rules by their alarm key (`W5.low_zone`) and device names by id.
#[derive(Debug, Clone, Default)]
pub struct ReportNotes {
    rules: BTreeMap<String, RuleNote>,
    places: BTreeMap<String, String>,
}

impl ReportNotes {
    /// The notes of `config`'s rules, configured devices (name with building and zone) and
    /// the publishing devices its MQTT mappings name.
    pub fn of(config: &LoadedConfig) -> ReportNotes {
        let rules = config
            .rules
            .iter()
            .map(|rule| {
                let note = RuleNote {
                    title: words::title(rule).to_string(),
                    requirement: rule.description.clone(),
                    source: rule.source.clone(),
                };
                (rule.key(), note)
            })
            .collect();
        let mut places: BTreeMap<String, String> = config
            .gateway
            .device
            .iter()
            .map(|device| {
                let tags = config.device_tags(device);
                let place = words::place(&device.id, device.name.as_deref(), &tags);
                (device.id.clone(), place)
            })
            .collect();
        for mapping in config.gateway.mqtt_source.iter().flat_map(|s| &s.mappings) {
            let tags: Vec<(String, String)> = mapping
                .tags
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            for (id, name) in &mapping.names {
                places
                    .entry(id.clone())
                    .or_insert_with(|| words::place(id, Some(name), &tags));
            }
        }
        ReportNotes { rules, places }
    }

    /// The rule behind an alarm key, when the config still has it.
    pub fn rule(&self, key: &str) -> Option<&RuleNote> {
        self.rules.get(key)
    }

    /// What people call `device` (its id when the config does not name it).
    pub fn place<'a>(&'a self, device: &'a str) -> &'a str {
        self.places.get(device).map_or(device, String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_names_its_rules_and_devices() {
        let config = crate::config::load_config(std::path::Path::new("config/demo.toml"))
            .expect("the demo config loads");
        let notes = ReportNotes::of(&config);
        let w22 = notes.rule("W22").expect("the PRV rule is in the packs");
        assert!(!w22.title.is_empty() && !w22.source.is_empty());
        assert_ne!(w22.title, w22.source);
        assert_eq!(notes.rule("nonexistent"), None);
        assert_eq!(
            notes.place("GRB-01"),
            "1号调压箱（3号楼东）",
            "named by its mapping"
        );
        assert_eq!(notes.place("unknown-7"), "unknown-7");
        let booster = notes.place("booster-1");
        assert!(
            booster.contains("号楼") && booster != "booster-1",
            "{booster}"
        );
    }
}
