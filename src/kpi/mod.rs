//! Compliance KPIs at the edge: per device and local day, the figures that say whether the
//! retrofit did what the plan promised, computed from the samples the gateway already sees.
//!
//! - [`accumulate`]: the accumulators (share in band, 1-minute and hourly means, percentile).
//! - [`plan`]: which KPIs a device gets, derived from the rules that apply to it (the pressure
//!   band is W2/W3/W5/W6's, the voltage band E1–E3's, …), so a site override moves both.
//! - [`ledger`]: the open days, fed with samples and alarm events, closed after midnight into
//!   [`DayRecord`]s; saved so that a restart continues the day.
//! - [`store`]: the ledger file and the closed days (`data_dir/kpi/`).
//! - [`lines`]: a day's figures as `kpi` samples for InfluxDB.
//! - [`book`]: the ledger as the rules stage drives it (counting, closing, saving, lines).
//!
//! Every KPI and its definition is in [`DEFINITIONS`] (and in the README).

pub mod accumulate;
pub mod book;
pub mod ledger;
pub mod lines;
pub mod plan;
pub mod store;

use serde::{Deserialize, Serialize};

pub use crate::calendar::{date_of, day_of};
pub use accumulate::{completeness, local_day, percentile, BandShare, Buckets, HourShare};

/// How a month's figure is made from the days'.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregate {
    /// Σ numerators / Σ denominators × 100 (rates from counts, not a mean of daily rates).
    Ratio,
    /// Σ numerators / Σ denominators (a mean from sums and counts).
    Mean,
    /// The largest daily value.
    Max,
    /// The sum of the daily values.
    Sum,
}

/// What a KPI is held against.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target {
    AtLeast(f64),
    AtMost(f64),
}

impl Target {
    pub fn met(self, value: f64) -> bool {
        match self {
            Target::AtLeast(t) => value >= t,
            Target::AtMost(t) => value <= t,
        }
    }

    pub fn value(self) -> f64 {
        match self {
            Target::AtLeast(t) | Target::AtMost(t) => t,
        }
    }

    pub fn symbol(self) -> &'static str {
        match self {
            Target::AtLeast(_) => "≥",
            Target::AtMost(_) => "≤",
        }
    }
}

/// One KPI: its name (the `kpi` tag), labels, unit, target and definition.
#[derive(Debug, Clone, Copy)]
pub struct Definition {
    pub name: &'static str,
    pub zh: &'static str,
    pub en: &'static str,
    pub unit: &'static str,
    pub target: Option<Target>,
    pub aggregate: Aggregate,
    /// How it is computed, in one sentence.
    pub definition: &'static str,
    /// Where the target comes from.
    pub source: &'static str,
}

/// Every KPI the gateway computes.
pub const DEFINITIONS: &[Definition] = &[
    Definition {
        name: "pressure_compliance",
        zh: "供水压力合格率",
        en: "Water pressure compliance",
        unit: "%",
        target: Some(Target::AtLeast(97.0)),
        aggregate: Aggregate::Ratio,
        definition: "Share of a pressure point's samples for which none of its W5 (top-floor residual pressure) and W6 (service head) conditions holds (W8).",
        source: "CJ/T 316 §3.3.2 管网压力合格率不得低于97%",
    },
    Definition {
        name: "voltage_qualification",
        zh: "电压合格率",
        en: "Voltage qualification rate",
        unit: "%",
        target: Some(Target::AtLeast(95.0)),
        aggregate: Aggregate::Ratio,
        definition: "Per meter and phase: share of 1-minute mean voltages inside the E1/E2/E3 band (GB/T 12325: 220 V +7 %/−10 %, 380 V ±7 %, 10 kV ±7 %).",
        source: "GB/T 12325-2008 band; 95 % for urban residential supply (供电监管办法 §7, from memory)",
    },
    Definition {
        name: "voltage_unbalance_p95",
        zh: "三相电压不平衡度95%概率值",
        en: "Voltage unbalance, 95th percentile",
        unit: "%",
        target: Some(Target::AtMost(2.0)),
        aggregate: Aggregate::Max,
        definition: "95th percentile of the day's 1-minute unbalance max|U−Ū|/Ū of the three phase voltages (the month: the worst day).",
        source: "GB/T 15543-2008 (2 % normal)",
    },
    Definition {
        name: "frequency_compliance",
        zh: "频率合格率",
        en: "Frequency compliance",
        unit: "%",
        target: None,
        aggregate: Aggregate::Ratio,
        definition: "Share of samples with the frequency within E8's ±0.2 Hz.",
        source: "GB/T 15945-2008 (a limit, no rate)",
    },
    Definition {
        name: "gas_pressure_compliance",
        zh: "燃气调压出口压力合格率",
        en: "Gas regulator outlet pressure compliance",
        unit: "%",
        target: None,
        aggregate: Aggregate::Ratio,
        definition: "Share of a regulator's samples for which neither G1 (low) nor G2 (high) holds.",
        source: "appliance band 0.75–1.5 Pn (a limit, no rate)",
    },
    Definition {
        name: "incidents",
        zh: "报警事件数",
        en: "Incidents",
        unit: "",
        target: None,
        aggregate: Aggregate::Sum,
        definition: "Incidents the group robots were told of: alarms on devices with one root (their upstream chain) count once.",
        source: "",
    },
    Definition {
        name: "gas_alarms",
        zh: "可燃气体报警次数",
        en: "Combustible-gas alarms",
        unit: "",
        target: Some(Target::AtMost(0.0)),
        aggregate: Aggregate::Sum,
        definition: "G5 (combustible gas) alarms raised.",
        source: "the plan: gas installations without leaks",
    },
    Definition {
        name: "room_hours_at_18",
        zh: "室温达标小时率（≥18 °C）",
        en: "Sample-flat hours at ≥ 18 °C",
        unit: "%",
        target: Some(Target::AtLeast(100.0)),
        aggregate: Aggregate::Ratio,
        definition: "Share of a sample flat's hours whose mean temperature reaches H1's floor (18 °C).",
        source: "GB/T 33833-2017 Art. 5 (卧室、起居室不低于18℃)",
    },
    Definition {
        name: "makeup_ratio",
        zh: "供热补水率",
        en: "Heating make-up water ratio",
        unit: "%",
        target: Some(Target::AtMost(1.0)),
        aggregate: Aggregate::Mean,
        definition: "Mean make-up flow as a percentage of the circulation flow (H6).",
        source: "[PRACTICE] 1 % of circulation (DOMAIN.md H6)",
    },
    Definition {
        name: "mnf",
        zh: "夜间最小流量",
        en: "Minimum night flow",
        unit: "m³/h",
        target: None,
        aggregate: Aggregate::Mean,
        definition: "Lowest 1-hour mean of the DMA inflow in W16's night window (02:00–04:00).",
        source: "DOMAIN.md §4.2",
    },
    Definition {
        name: "mnf_baseline",
        zh: "夜间最小流量基线",
        en: "MNF baseline",
        unit: "m³/h",
        target: None,
        aggregate: Aggregate::Mean,
        definition: "Median MNF of up to 14 earlier nights.",
        source: "DOMAIN.md §4.2",
    },
    Definition {
        name: "leakage_estimate",
        zh: "估算日漏损量",
        en: "Estimated leakage",
        unit: "m³",
        target: None,
        aggregate: Aggregate::Sum,
        definition: "(MNF − households × night use) × night-day factor: net night flow over the day (FAVAD, N1 = 1).",
        source: "DOMAIN.md §4.2",
    },
    Definition {
        name: "water_loss_rate",
        zh: "供水漏损率",
        en: "Water loss rate",
        unit: "%",
        target: Some(Target::AtMost(12.0)),
        aggregate: Aggregate::Ratio,
        definition: "(inflow − Σ customer meters) / inflow over the day, each meter's volume scaled to the inflow meter's span (W17's meters); no figure when a meter covered less than 90 % of it.",
        source: "CJJ 92-2016 §5.1.2, R_WL; 二级 12 %",
    },
    Definition {
        name: "completeness",
        zh: "数据完整率",
        en: "Data completeness",
        unit: "%",
        target: Some(Target::AtLeast(95.0)),
        aggregate: Aggregate::Ratio,
        definition: "Samples received against those the poll interval makes expected over the observed part of the day.",
        source: "[INFERRED] below 95 % a figure rests on too little data",
    },
    Definition {
        name: "availability",
        zh: "设备在线率",
        en: "Device availability",
        unit: "%",
        target: None,
        aggregate: Aggregate::Ratio,
        definition: "Share of the day's slots (a minute, or the report interval if longer) with at least one sample.",
        source: "",
    },
    Definition {
        name: "gateway_uptime",
        zh: "网关运行率",
        en: "Gateway uptime",
        unit: "%",
        target: None,
        aggregate: Aggregate::Ratio,
        definition: "Share of the observed day the gateway was running.",
        source: "",
    },
    Definition {
        name: "alarm_raises",
        zh: "报警次数",
        en: "Alarms raised",
        unit: "",
        target: None,
        aggregate: Aggregate::Sum,
        definition: "Alarms raised, per device, rule and severity.",
        source: "",
    },
    Definition {
        name: "alarm_clear_time",
        zh: "报警平均恢复时间",
        en: "Mean time to clear",
        unit: "s",
        target: None,
        aggregate: Aggregate::Mean,
        definition: "Mean time from raise to clear of the alarms cleared, per device and rule.",
        source: "",
    },
];

/// The definition of `name`.
pub fn definition(name: &str) -> Option<&'static Definition> {
    DEFINITIONS.iter().find(|d| d.name == name)
}

/// One figure of one day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KpiValue {
    pub kpi: String,
    /// The device, `site` for the community, or the gateway's id for its uptime.
    pub device: String,
    /// The phase field (voltages) or the rule (alarms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    pub value: f64,
    /// What the value was computed from (inside / total, sum / count), for the month.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub numerator: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub denominator: Option<f64>,
}

/// A raised warn or crit alarm, for the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotableAlarm {
    pub id: String,
    pub device: String,
    pub rule: String,
    pub severity: String,
    pub raised_ns: i64,
    #[serde(default)]
    pub cleared_ns: Option<i64>,
    pub message: String,
}

/// One local day's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DayRecord {
    /// Days since 1970-01-01, local.
    pub day: i64,
    /// `YYYY-MM-DD`, local.
    pub date: String,
    /// False for the figures of a day still running.
    #[serde(rename = "final")]
    pub complete: bool,
    pub values: Vec<KpiValue>,
    #[serde(default)]
    pub notable: Vec<NotableAlarm>,
    /// Clears on this day of notable alarms raised on an earlier, already closed day:
    /// (alarm id, cleared ns).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cleared: Vec<(String, i64)>,
    /// Warn and crit alarms still raised when the day closed (an alarm raised before the month
    /// and firing all through it shows here).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub active_at_end: Vec<NotableAlarm>,
}

impl NotableAlarm {
    /// The warn and crit alarms of `active` (the engine's raised alarms).
    pub fn still_raised(active: &[crate::rules::engine::ActiveAlarm]) -> Vec<NotableAlarm> {
        active
            .iter()
            .filter(|a| a.severity >= crate::model::Severity::Warn)
            .map(|a| NotableAlarm {
                id: format!("{}/{}/{}", a.device, a.rule, a.raised_ns),
                device: a.device.clone(),
                rule: a.rule.clone(),
                severity: a.severity.name().to_string(),
                raised_ns: a.raised_ns,
                cleared_ns: None,
                message: String::new(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod definitions {
    use super::*;

    #[test]
    fn every_definition_has_a_unique_name_and_its_labels() {
        let mut names: Vec<&str> = DEFINITIONS.iter().map(|d| d.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), DEFINITIONS.len());
        assert!(DEFINITIONS
            .iter()
            .all(|d| !d.zh.is_empty() && !d.en.is_empty() && !d.definition.is_empty()));
    }
}
