//! Alarms in words for a person (in Chinese): where the device is, what the judged value is
//! called, the reading against its limit with units and as many decimals as the value needs,
//! and which status bits are set. The engine writes an event's [`AlarmWords`] with these; the
//! rule's provenance (standard, clause, `[INFERRED]`) never goes into them.

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::rule_pack::{RuleConfig, RuleKind};
use crate::model::AlarmWords;

use super::condition::{Evaluation, Subject};

/// Field → (label, unit): one map per profile or MQTT measurement, shared by its devices.
pub type FieldWords = HashMap<String, (String, String)>;

/// The labels and units of `fields` as (name, label, unit); a field without a label is called by
/// its name.
pub fn field_words<'a>(
    fields: impl Iterator<Item = (&'a str, Option<&'a str>, Option<&'a str>)>,
) -> Arc<FieldWords> {
    let words = fields
        .map(|(field, label, unit)| {
            let words = (
                label.unwrap_or(field).to_string(),
                unit.unwrap_or("").to_string(),
            );
            (field.to_string(), words)
        })
        .collect();
    Arc::new(words)
}

/// What a device's alarms say about it: its place, and each field's label and unit.
#[derive(Debug, Default)]
pub struct DeviceWords {
    pub place: String,
    fields: Arc<FieldWords>,
}

impl DeviceWords {
    /// The device's [`place`], and its profile's or mapping's field words.
    pub fn new(
        id: &str,
        name: Option<&str>,
        tags: &[(String, String)],
        fields: Arc<FieldWords>,
    ) -> DeviceWords {
        DeviceWords {
            place: place(id, name, tags),
            fields,
        }
    }

    /// A field's label and unit (the field's own name and no unit when the profile has none).
    fn field<'a>(&'a self, field: &'a str) -> (&'a str, &'a str) {
        self.fields
            .get(field)
            .map_or((field, ""), |(label, unit)| (label.as_str(), unit.as_str()))
    }
}

/// `name` (or the id) with the building and zone of its tags: `加压泵房（9、10号楼，高区）`.
pub fn place(id: &str, name: Option<&str>, tags: &[(String, String)]) -> String {
    let tag = |key: &str| tags.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    let mut whereabouts = Vec::new();
    if let Some(building) = tag("building") {
        whereabouts.push(format!("{}号楼", building.replace(',', "、")));
    }
    match tag("zone") {
        Some("high") => whereabouts.push("高区".to_string()),
        Some("low") => whereabouts.push("低区".to_string()),
        Some(zone) => whereabouts.push(zone.to_string()),
        None => {}
    }
    let name = name.unwrap_or(id);
    if whereabouts.is_empty() {
        name.to_string()
    } else {
        format!("{name}（{}）", whereabouts.join("，"))
    }
}

/// `value` with as many decimals as four significant digits need (at most three, trailing
/// zeros dropped): 0.0944 → `0.094`, 2.45 → `2.45`, 193.24 → `193.2`, 10 480 → `10480`.
pub fn number(value: f64) -> String {
    if !value.is_finite() {
        return "—".to_string();
    }
    let magnitude = if value == 0.0 {
        0
    } else {
        value.abs().log10().floor() as i32
    };
    let decimals = (3 - magnitude).clamp(0, 3) as usize;
    let text = format!("{value:.decimals$}");
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    };
    if text == "-0" {
        "0".to_string()
    } else {
        text
    }
}

/// `20 秒`, `5 分钟`, `2 小时 5 分钟`, `3 天`.
pub fn duration(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as i64;
    match s {
        0..60 => format!("{s}秒"),
        60..3600 => format!("{}分钟", s / 60),
        3600..86_400 if s % 3600 / 60 == 0 => format!("{}小时", s / 3600),
        3600..86_400 => format!("{}小时{}分钟", s / 3600, s % 3600 / 60),
        _ => format!("{}天", s / 86_400),
    }
}

/// What the rule judges, and its unit: the rule's own label, the kind's name for what it
/// computes, or the field's label.
fn subject(rule: &RuleConfig, evaluation: &Evaluation, device: &DeviceWords) -> (String, String) {
    let field_words = |n: usize| {
        let name = rule
            .field
            .iter()
            .chain(&rule.fields)
            .nth(n)
            .map_or("", String::as_str);
        device.field(name)
    };
    let (label, unit) = match &evaluation.subject {
        Subject::Field(n) => {
            let (label, unit) = field_words(*n);
            (label.to_string(), unit.to_string())
        }
        Subject::Difference => {
            let (first, unit) = field_words(0);
            let (second, _) = field_words(1);
            (format!("{first}与{second}之差"), unit.to_string())
        }
        Subject::TopFloor(storeys) => (format!("{storeys}层顶层用水点剩余水压"), "MPa".into()),
        Subject::FloorInlet(floor) => (format!("{floor}层入户水压"), "MPa".into()),
        Subject::Computed => match rule.kind {
            RuleKind::MakeupRatio => ("补水量占循环流量".into(), "%".into()),
            RuleKind::Unbalance => ("三相电压不平衡度".into(), "%".into()),
            RuleKind::NightFlow => ("夜间最小流量".into(), "m³/h".into()),
            RuleKind::Balance => ("供水漏损率".into(), "%".into()),
            _ => (String::new(), String::new()),
        },
    };
    (
        rule.label.clone().unwrap_or(label),
        rule.unit.clone().unwrap_or(unit),
    )
}

/// The reading against its limit: `出口压力 0.42MPa，高于 0.35MPa`; for a clear, the reading.
pub fn reading(
    rule: &RuleConfig,
    evaluation: &Evaluation,
    device: &DeviceWords,
    firing: bool,
) -> String {
    let (label, unit) = subject(rule, evaluation, device);
    let value = format!("{}{unit}", number(evaluation.value));
    let limit = format!("{}{unit}", number(evaluation.limit));
    match rule.kind {
        RuleKind::StatusBits => set_bits(rule, evaluation.value, &label),
        RuleKind::Stale if firing => format!("已{}没有数据", duration(evaluation.value)),
        RuleKind::Stale => "数据已恢复".to_string(),
        RuleKind::Frozen if firing => format!("{label}已{}没有变化", duration(window_s(rule))),
        RuleKind::Frozen => format!("{label}已恢复变化"),
        RuleKind::Step if firing => format!("{label}1分钟均值 {value}，此前 {limit}"),
        _ if !firing => format!("{label} {value}"),
        _ => {
            let side = if evaluation.value < evaluation.limit {
                "低于"
            } else {
                "高于"
            };
            format!("{label} {value}，{side} {limit}")
        }
    }
}

fn window_s(rule: &RuleConfig) -> f64 {
    rule.window.map_or(3600.0, |w| w.get().as_secs_f64())
}

/// The names of the mask's bits that are set in `value` (`2号泵变频器故障`); without names,
/// the word in hexadecimal.
fn set_bits(rule: &RuleConfig, value: f64, label: &str) -> String {
    let word = if value >= 0.0 && value.is_finite() {
        value as u64
    } else {
        0
    };
    let mask = rule.mask.unwrap_or(0);
    let named: Vec<&str> = (0..64)
        .filter(|bit| mask & (1 << bit) != 0)
        .zip(rule.bit_names.iter())
        .filter(|(bit, _)| word & (1 << bit) != 0)
        .map(|(_, name)| name.as_str())
        .collect();
    if named.is_empty() {
        if word & mask == 0 {
            "已恢复正常".to_string()
        } else {
            format!("{label} = 0x{word:04X}")
        }
    } else {
        named.join("、")
    }
}

/// The rule's title for a person: its `title`, else its description.
pub fn title(rule: &RuleConfig) -> &str {
    rule.title.as_deref().unwrap_or(&rule.description)
}

/// An event's words.
pub fn words(
    rule: &RuleConfig,
    evaluation: &Evaluation,
    device: &DeviceWords,
    firing: bool,
    since_ns: i64,
) -> AlarmWords {
    AlarmWords {
        title: title(rule).to_string(),
        place: device.place.clone(),
        reading: reading(rule, evaluation, device, firing),
        action: rule.action.clone().unwrap_or_default(),
        since_ns,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_carry_the_decimals_their_size_needs() {
        assert_eq!(number(0.0944), "0.094");
        assert_eq!(number(0.35), "0.35");
        assert_eq!(number(2.45), "2.45");
        assert_eq!(number(25.0), "25");
        assert_eq!(number(193.24), "193.2");
        assert_eq!(number(10_480.4), "10480");
        assert_eq!(number(-0.0001), "0");
        assert_eq!(number(f64::NAN), "—");
    }

    #[test]
    fn durations_read_as_a_person_says_them() {
        assert_eq!(duration(20.0), "20秒");
        assert_eq!(duration(300.0), "5分钟");
        assert_eq!(duration(7200.0), "2小时");
        assert_eq!(duration(7500.0), "2小时5分钟");
        assert_eq!(duration(3.0 * 86_400.0), "3天");
    }

    #[test]
    fn a_place_is_the_name_with_building_and_zone() {
        let tags = [
            ("zone".to_string(), "high".to_string()),
            ("building".to_string(), "9,10".to_string()),
        ];
        let none = field_words(std::iter::empty());
        let words = DeviceWords::new("booster-1", Some("加压泵房"), &tags, Arc::clone(&none));
        assert_eq!(words.place, "加压泵房（9、10号楼，高区）");
        let words = DeviceWords::new("well_07", None, &[], none);
        assert_eq!(words.place, "well_07");
    }
}
