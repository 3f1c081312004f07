//! Rule packs: `config/rules/*.toml`, one `[[rule]]` per requirement of DOMAIN.md §1, each
//! with its stable id, severity, description and source.
//!
//! A rule applies to every device whose measurement (profile kind) it names and whose profile has
//! the fields it reads (optionally narrowed to `devices`); thresholds can be overridden per
//! device in the gateway config (`[[alarms.override]]`).

use serde::Deserialize;

use crate::config::ConfigDuration;
use crate::model::Severity;

/// The kinds of rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleKind {
    /// `above` and/or `below` a limit, with `clear_margin` hysteresis.
    Threshold,
    /// Outside `nominal` +`plus_pct` / −`minus_pct` (supply voltage, GB/T 12325); worst of `fields`.
    Deviation,
    /// Negative-sequence voltage unbalance (GB/T 15543) from the three line voltages.
    Unbalance,
    /// Any of `mask`'s bits set in an integer status or fault word.
    StatusBits,
    /// No sample from the device for `after` (communication lost).
    Stale,
    /// Residual pressure at the top fixture from the outlet pressure and the building (W5).
    TopFloor,
    /// Static pressure at the lowest household inlet without a branch PRV (W2, W3).
    FloorInlet,
    /// `fields[0] − fields[1]` against `above`/`below` (set-point deviation, ΔT).
    Difference,
    /// A pressurisation point below the water column to the highest radiator plus a reserve (H5).
    StaticPressure,
    /// Make-up flow as a percentage of the site's circulation flow (H6).
    MakeupRatio,
    /// Minimum night flow against the median of past nights (W16).
    NightFlow,
    /// A rise within `window` (W18 burst).
    Step,
    /// No movement beyond `tolerance` over `window` while the plant runs (W23).
    Frozen,
    /// Loss rate of an inflow meter against the sum of its sub-meters over `window` (W17).
    Balance,
}

const KINDS: &[(&str, RuleKind)] = &[
    ("threshold", RuleKind::Threshold),
    ("deviation", RuleKind::Deviation),
    ("unbalance", RuleKind::Unbalance),
    ("status_bits", RuleKind::StatusBits),
    ("stale", RuleKind::Stale),
    ("top_floor", RuleKind::TopFloor),
    ("floor_inlet", RuleKind::FloorInlet),
    ("difference", RuleKind::Difference),
    ("static_pressure", RuleKind::StaticPressure),
    ("makeup_ratio", RuleKind::MakeupRatio),
    ("night_flow", RuleKind::NightFlow),
    ("step", RuleKind::Step),
    ("frozen", RuleKind::Frozen),
    ("balance", RuleKind::Balance),
];
crate::config::deserialize_by_name!(RuleKind, KINDS);

/// A season a rule runs in; outside it (and within its `season_grace` after the season began)
/// the rule's condition counts as clear.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleSeason {
    /// `[kpi] heating_season_start` to `heating_season_end`.
    Heating,
}

const SEASONS: &[(&str, RuleSeason)] = &[("heating", RuleSeason::Heating)];
crate::config::deserialize_by_name!(RuleSeason, SEASONS);

const SEVERITIES: &[(&str, Severity)] = &[
    ("info", Severity::Info),
    ("warn", Severity::Warn),
    ("crit", Severity::Crit),
];
crate::config::deserialize_by_name!(Severity, SEVERITIES);

/// A rule pack file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulePack {
    #[serde(rename = "rule")]
    pub rules: Vec<RuleConfig>,
}

/// One rule. Keys that do not apply to its kind are refused by validation.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// DOMAIN.md id (W5, E1 …).
    pub id: String,
    /// Distinguishes entries of one id (`low`, `high`, `crit`); the alarm's rule is `id.variant`.
    #[serde(default)]
    pub variant: Option<String>,
    pub kind: RuleKind,
    pub severity: Severity,
    /// What the plan requires, in the operators' language.
    pub description: String,
    /// What happened, in a few words of the plan for a person's phone (`顶层水压不足`);
    /// default: the description.
    #[serde(default)]
    pub title: Option<String>,
    /// One line of what to do about it.
    #[serde(default)]
    pub action: Option<String>,
    /// What the value the rule judges is called and its unit, where the rule computes it
    /// (`供回水温差`, `K`); default: the field's label or the kind's own name.
    #[serde(default)]
    pub label: Option<String>,
    #[serde(default)]
    pub unit: Option<String>,
    /// Status bits: the names of the mask's bits, lowest bit first (`["1号泵变频器故障", …]`).
    #[serde(default)]
    pub bit_names: Vec<String>,
    /// Standard or practice the number comes from.
    pub source: String,
    /// The measurement (device kind) it applies to.
    pub measurement: String,
    /// Only these devices (default: every device of the measurement that has the fields).
    #[serde(default)]
    pub devices: Vec<String>,
    /// Only devices with these tags (e.g. `side = "lv"` for 220 V limits).
    #[serde(default)]
    pub tags: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub field: Option<String>,
    #[serde(default)]
    pub fields: Vec<String>,
    #[serde(default)]
    pub above: Option<f64>,
    #[serde(default)]
    pub below: Option<f64>,
    /// How far back inside the limit a value must be to count as clear.
    #[serde(default)]
    pub clear_margin: f64,
    #[serde(default)]
    pub nominal: Option<f64>,
    #[serde(default)]
    pub plus_pct: Option<f64>,
    #[serde(default)]
    pub minus_pct: Option<f64>,
    #[serde(default)]
    pub mask: Option<u64>,
    /// How long the condition must hold before the alarm is raised.
    #[serde(rename = "for", default = "zero")]
    pub hold: ConfigDuration,
    /// How long the value must be clear before the alarm clears (default: `for`).
    #[serde(default)]
    pub clear_for: Option<ConfigDuration>,
    /// Stale: silence that counts as communication lost.
    #[serde(default)]
    pub after: Option<ConfigDuration>,
    /// Top floor / floor inlet: fixture or inlet height above its floor, m.
    #[serde(default)]
    pub fixture_height_m: Option<f64>,
    /// Top floor: pipe losses at design flow as a share of the static lift.
    #[serde(default)]
    pub loss_fraction: Option<f64>,
    /// Top floor: household meter loss, MPa.
    #[serde(default)]
    pub meter_loss_mpa: Option<f64>,
    /// Top floor: the field with the zone's flow; losses scale with (Q / Q_design)^1.85
    /// (Hazen–Williams) against the site's `design_flow_m3h`. Without either, design losses apply.
    #[serde(default)]
    pub flow_field: Option<String>,
    /// Static pressure: reserve above the water column to the highest radiator, MPa.
    #[serde(default)]
    pub reserve_mpa: Option<f64>,
    /// Night flow: the local window, hours (default 2–4) and the offset of local time (8).
    #[serde(default)]
    pub night_start_h: Option<f64>,
    #[serde(default)]
    pub night_end_h: Option<f64>,
    #[serde(default)]
    pub utc_offset_h: Option<f64>,
    /// Night flow: valid nights in the baseline (14), the ratio and the minimum rise over it
    /// (1.3, 0.3 m³/h) on `nights` consecutive nights (2), or a single-night `jump` (0.5 m³/h).
    #[serde(default)]
    pub baseline_nights: Option<usize>,
    #[serde(default)]
    pub ratio: Option<f64>,
    #[serde(default)]
    pub min_increase: Option<f64>,
    #[serde(default)]
    pub jump: Option<f64>,
    #[serde(default)]
    pub nights: Option<u32>,
    /// Night flow: `min_hourly` (default, MNF) or `mean` (night pump power, W15).
    #[serde(default)]
    pub aggregate: Option<String>,
    /// Step: the window (default 60 s) whose mean is compared with the mean of the window before
    /// it, the rise (absolute) and, optionally, the rise in percent of the level before (the
    /// larger of the two decides).
    #[serde(default)]
    pub window: Option<ConfigDuration>,
    #[serde(default)]
    pub rise: Option<f64>,
    #[serde(default)]
    pub rise_pct: Option<f64>,
    /// Frozen: the largest spread that still counts as not moving (default 0). Frozen and
    /// difference: the field that says the plant runs or water flows (`while_field` above
    /// `while_above`; default: always); while it does not, the condition counts as clear.
    #[serde(default)]
    pub tolerance: Option<f64>,
    #[serde(default)]
    pub while_field: Option<String>,
    #[serde(default)]
    pub while_above: Option<f64>,
    /// Balance: the sub-meters' measurement and their totaliser fields (summed, for split
    /// integer/fraction registers; the inflow's are `fields`), optionally only `sub_devices`
    /// (default: every other device of the measurement with the fields).
    #[serde(default)]
    pub sub_measurement: Option<String>,
    #[serde(default)]
    pub sub_fields: Vec<String>,
    #[serde(default)]
    pub sub_devices: Vec<String>,
    /// Night flow: the limit of net night flow (MNF less the households' legitimate night use,
    /// `[kpi] households` × `night_use_l_per_household_h`), L per household per hour.
    #[serde(default)]
    pub net_above_l_per_household_h: Option<f64>,
    /// Only in this season (see [`RuleSeason`]).
    #[serde(default)]
    pub season: Option<RuleSeason>,
    /// How long after the first day of its season the rule keeps quiet (H1: 72 h start-up).
    #[serde(default)]
    pub season_grace: Option<ConfigDuration>,
    /// Raises within `flap_window` beyond which the alarm is flapping.
    #[serde(default = "default_flap_limit")]
    pub flap_limit: usize,
    #[serde(default = "default_flap_window")]
    pub flap_window: ConfigDuration,
}

fn zero() -> ConfigDuration {
    ConfigDuration::from_millis(0)
}

fn default_flap_limit() -> usize {
    5
}

fn default_flap_window() -> ConfigDuration {
    ConfigDuration::from_millis(3_600_000)
}

impl RuleConfig {
    /// Whether `name` names this rule: its key, or its id for every variant.
    pub fn is_named(&self, name: &str) -> bool {
        self.key() == name || self.id == name
    }

    /// This rule with an override's values.
    pub fn overridden(&self, with: &crate::config::RuleOverride) -> RuleConfig {
        let mut rule = self.clone();
        let set = |target: &mut Option<f64>, value: Option<f64>| {
            if value.is_some() {
                *target = value;
            }
        };
        set(&mut rule.above, with.above);
        set(&mut rule.below, with.below);
        set(&mut rule.nominal, with.nominal);
        set(&mut rule.plus_pct, with.plus_pct);
        set(&mut rule.minus_pct, with.minus_pct);
        set(&mut rule.rise, with.rise);
        set(&mut rule.ratio, with.ratio);
        if let Some(margin) = with.clear_margin {
            rule.clear_margin = margin;
        }
        if let Some(hold) = with.hold {
            rule.hold = hold;
        }
        rule.clear_for = with.clear_for.or(rule.clear_for);
        rule.after = with.after.or(rule.after);
        rule.window = with.window.or(rule.window);
        rule
    }

    /// The alarm's rule name: `id` or `id.variant`.
    pub fn key(&self) -> String {
        match &self.variant {
            Some(variant) => format!("{}.{variant}", self.id),
            None => self.id.clone(),
        }
    }

    /// Every sample field the rule reads.
    pub fn reads(&self) -> Vec<&str> {
        let mut fields: Vec<&str> = self.field.iter().map(String::as_str).collect();
        fields.extend(self.fields.iter().map(String::as_str));
        fields.extend(self.flow_field.iter().map(String::as_str));
        fields.extend(self.while_field.iter().map(String::as_str));
        fields
    }

    /// Problems with the rule on its own, as (key, problem) pairs.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        let mut need = |present: bool, key: &'static str, what: &str| {
            if !present {
                problems.push((
                    key,
                    format!(
                        "missing for kind {:?} (expected {what})",
                        kind_name(self.kind)
                    ),
                ));
            }
        };
        match self.kind {
            RuleKind::Threshold => {
                need(
                    self.field.is_some() == self.fields.is_empty(),
                    "field",
                    "field, or fields (the worst decides), not both",
                );
                need(
                    self.above.is_some() || self.below.is_some(),
                    "above",
                    "above and/or below",
                );
            }
            RuleKind::Difference => {
                need(
                    self.fields.len() == 2,
                    "fields",
                    "two fields: value and reference",
                );
                need(
                    self.above.is_some() || self.below.is_some(),
                    "above",
                    "above and/or below",
                );
                need(
                    self.while_field.is_some() == self.while_above.is_some(),
                    "while_above",
                    "while_field and while_above together",
                );
            }
            RuleKind::StaticPressure => {
                need(
                    self.field.is_some(),
                    "field",
                    "the pressurisation-point pressure, MPa",
                );
            }
            RuleKind::Frozen => {
                need(self.field.is_some(), "field", "the field that should move");
                need(
                    self.while_field.is_some() == self.while_above.is_some(),
                    "while_above",
                    "while_field and while_above together",
                );
            }
            RuleKind::Step => {
                need(self.field.is_some(), "field", "the field that steps");
                need(
                    self.rise.is_some_and(|r| r > 0.0),
                    "rise",
                    "a positive rise",
                );
            }
            RuleKind::NightFlow => {
                need(self.field.is_some(), "field", "the inflow, m³/h");
                let (start, end) = (
                    self.night_start_h.unwrap_or(2.0),
                    self.night_end_h.unwrap_or(4.0),
                );
                need(
                    (0.0..24.0).contains(&start) && start + 1.0 <= end && end <= 24.0,
                    "night_end_h",
                    "a night window of at least an hour within a day",
                );
                need(
                    matches!(
                        self.aggregate.as_deref(),
                        None | Some("min_hourly") | Some("mean")
                    ),
                    "aggregate",
                    "\"min_hourly\" or \"mean\"",
                );
            }
            RuleKind::Balance => {
                need(
                    !self.fields.is_empty(),
                    "fields",
                    "the inflow totaliser field(s), m³",
                );
                need(
                    self.sub_measurement.is_some(),
                    "sub_measurement",
                    "the sub-meters' measurement",
                );
                need(
                    !self.sub_fields.is_empty(),
                    "sub_fields",
                    "the sub-meters' totaliser field(s), m³",
                );
                need(
                    self.above.is_some(),
                    "above",
                    "the loss rate limit in percent",
                );
                need(
                    self.window
                        .is_some_and(|w| w.get() >= std::time::Duration::from_secs(3600)),
                    "window",
                    "a window of at least an hour (a week is usual)",
                );
            }
            RuleKind::MakeupRatio => {
                need(self.field.is_some(), "field", "the make-up flow, m³/h");
                need(
                    self.above.is_some(),
                    "above",
                    "the share of circulation flow in percent",
                );
            }
            RuleKind::Deviation => {
                need(!self.fields.is_empty(), "fields", "the fields to compare");
                need(self.nominal.is_some(), "nominal", "the nominal value");
                need(
                    self.plus_pct.is_some(),
                    "plus_pct",
                    "the allowed rise in percent",
                );
                need(
                    self.minus_pct.is_some(),
                    "minus_pct",
                    "the allowed fall in percent",
                );
            }
            RuleKind::Unbalance => {
                need(
                    self.fields.len() == 3,
                    "fields",
                    "the three line voltages (Uab, Ubc, Uca)",
                );
                need(
                    self.above.is_some(),
                    "above",
                    "the unbalance limit in percent",
                );
            }
            RuleKind::StatusBits => {
                need(self.field.is_some(), "field", "the status word");
                need(
                    self.mask.is_some_and(|m| m != 0),
                    "mask",
                    "a non-zero bit mask",
                );
                let bits = self.mask.map_or(0, u64::count_ones) as usize;
                if !self.bit_names.is_empty() && self.bit_names.len() != bits {
                    problems.push((
                        "bit_names",
                        format!(
                            "{} names for {bits} bits of the mask (expected one name per bit, lowest first)",
                            self.bit_names.len()
                        ),
                    ));
                }
            }
            RuleKind::Stale => need(self.after.is_some(), "after", "the silence that counts"),
            RuleKind::TopFloor => {
                need(
                    self.field.is_some(),
                    "field",
                    "the outlet pressure field, MPa",
                );
                need(
                    self.below.is_some(),
                    "below",
                    "the residual pressure limit, MPa",
                );
            }
            RuleKind::FloorInlet => {
                need(
                    self.field.is_some(),
                    "field",
                    "the outlet pressure field, MPa",
                );
                need(
                    self.above.is_some(),
                    "above",
                    "the inlet pressure limit, MPa",
                );
            }
        }
        if self.clear_margin < 0.0 || !self.clear_margin.is_finite() {
            problems.push((
                "clear_margin",
                format!("{} (expected a margin ≥ 0)", self.clear_margin),
            ));
        }
        problems
    }
}

fn kind_name(kind: RuleKind) -> &'static str {
    KINDS
        .iter()
        .find(|(_, k)| *k == kind)
        .map_or("?", |(name, _)| *name)
}
