//! Evaluating one rule on one sample: whether its condition is active, clear or in between, with
//! the value that decided and the limit it was held against. Pure functions of the sample, the
//! rule and the device's building geometry.

use std::borrow::Cow;

use crate::config::SiteGeometry;
use crate::model::Sample;

use super::machine::Condition;
use crate::config::rule_pack::{RuleConfig, RuleKind};

/// One evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub condition: Condition,
    pub value: f64,
    pub limit: f64,
    /// Which field or floor decided, for the message.
    pub subject: Subject,
}

/// Which field or floor decided, for the message: made into text only when a message is
/// written ([`Subject::describe`]), so that evaluating a rule on a sample allocates nothing.
#[derive(Debug, Clone, PartialEq)]
pub enum Subject {
    /// The n-th field the rule names (`field` first, then `fields`).
    Field(usize),
    /// The n-th field, with a note after it.
    FieldNote(usize, &'static str),
    /// The rule's first field less its second.
    Difference,
    /// The residual pressure at the top floor of a building of this many storeys.
    TopFloor(u32),
    /// The inlet pressure of this floor.
    FloorInlet(u32),
    /// A figure the rule computes.
    Text(Cow<'static, str>),
}

impl Subject {
    /// The subject as the alarm message names it.
    pub fn describe(&self, rule: &RuleConfig) -> String {
        let field = |n: usize| {
            rule.field
                .iter()
                .chain(&rule.fields)
                .nth(n)
                .map_or("", String::as_str)
        };
        let named = |n: usize| rule.fields.get(n).map_or("", String::as_str);
        match self {
            Subject::Field(n) => field(*n).to_string(),
            Subject::FieldNote(n, note) => format!("{}{note}", field(*n)),
            Subject::Difference => format!("{} − {}", named(0), named(1)),
            Subject::TopFloor(storeys) => format!("top floor {storeys} residual_mpa"),
            Subject::FloorInlet(floor) => format!("floor {floor} inlet_mpa"),
            Subject::Text(text) => text.to_string(),
        }
    }
}

/// Pressure of a metre of water column, MPa (0.01 MPa per metre, DOMAIN.md §2).
const MPA_PER_M: f64 = 0.01;
/// Hazen–Williams exponent: friction loss ∝ Q^1.85.
const FRICTION_EXPONENT: f64 = 1.85;

fn number(sample: &Sample, field: &str) -> Option<f64> {
    sample.field(field).and_then(|v| v.as_f64())
}

/// Above/below a limit with hysteresis on the way back.
fn against_limits(
    value: f64,
    above: Option<f64>,
    below: Option<f64>,
    margin: f64,
) -> (Condition, f64) {
    if let Some(limit) = above {
        if value > limit {
            return (Condition::Active, limit);
        }
    }
    if let Some(limit) = below {
        if value < limit {
            return (Condition::Active, limit);
        }
    }
    let inside_high = above.is_none_or(|limit| value <= limit - margin);
    let inside_low = below.is_none_or(|limit| value >= limit + margin);
    let nearest = match (above, below) {
        (Some(a), Some(b)) => {
            if (a - value).abs() < (value - b).abs() {
                a
            } else {
                b
            }
        }
        (Some(a), None) => a,
        (None, Some(b)) => b,
        (None, None) => f64::NAN,
    };
    if inside_high && inside_low {
        (Condition::Clear, nearest)
    } else {
        (Condition::Between, nearest)
    }
}

/// The worst of several fields (each with its place among the rule's fields) against the same
/// limits: the largest excursion beyond (or the nearest approach to) a limit decides.
fn worst<'a>(
    sample: &Sample,
    fields: impl Iterator<Item = (usize, &'a String)>,
    above: Option<f64>,
    below: Option<f64>,
    margin: f64,
) -> Option<Evaluation> {
    fields
        .filter_map(|(n, f)| number(sample, f).map(|v| (n, v)))
        .map(|(n, v)| {
            let (condition, limit) = against_limits(v, above, below, margin);
            let excess = above
                .map_or(f64::NEG_INFINITY, |a| v - a)
                .max(below.map_or(f64::NEG_INFINITY, |b| b - v));
            (
                excess,
                Evaluation {
                    condition,
                    value: v,
                    limit,
                    subject: Subject::Field(n),
                },
            )
        })
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, e)| e)
}

/// Evaluates `rule` on `sample`; `None` when the sample lacks what the rule reads (a slower
/// point not due this cycle) or the rule is evaluated by the engine (stale and the kinds that
/// keep history).
pub fn evaluate(
    rule: &RuleConfig,
    sample: &Sample,
    site: Option<&SiteGeometry>,
) -> Option<Evaluation> {
    let margin = rule.clear_margin;
    match rule.kind {
        RuleKind::Threshold => {
            let fields = rule.field.iter().chain(&rule.fields).enumerate();
            worst(sample, fields, rule.above, rule.below, margin)
        }
        RuleKind::Difference => {
            let value =
                number(sample, rule.fields.first()?)? - number(sample, rule.fields.get(1)?)?;
            let (condition, limit) = against_limits(value, rule.above, rule.below, margin);
            Some(Evaluation {
                condition,
                value,
                limit,
                subject: Subject::Difference,
            })
        }
        RuleKind::StaticPressure => {
            let site = site?;
            let value = number(sample, rule.field.as_deref()?)?;
            let top = f64::from(site.storeys.saturating_sub(1)) * site.storey_height_m
                + rule.fixture_height_m.unwrap_or(0.5)
                - site.sensor_elevation_m;
            let required = top * MPA_PER_M + rule.reserve_mpa.unwrap_or(0.03);
            let (condition, limit) = against_limits(value, None, Some(required), margin);
            Some(Evaluation {
                condition,
                value,
                limit,
                subject: Subject::Field(0),
            })
        }
        RuleKind::MakeupRatio => {
            let circulation = site?.circulation_m3h.filter(|c| *c > 0.0)?;
            let share = number(sample, rule.field.as_deref()?)? / circulation * 100.0;
            let (condition, limit) = against_limits(share, rule.above, None, margin);
            Some(Evaluation {
                condition,
                value: share,
                limit,
                subject: Subject::Text("makeup_pct_of_circulation".into()),
            })
        }
        RuleKind::Deviation => {
            let nominal = rule.nominal?;
            let high = nominal * (1.0 + rule.plus_pct? / 100.0);
            let low = nominal * (1.0 - rule.minus_pct? / 100.0);
            // `fields` follow `field` in the rule's list of names.
            let first = usize::from(rule.field.is_some());
            let fields = rule.fields.iter().enumerate().map(|(n, f)| (first + n, f));
            worst(sample, fields, Some(high), Some(low), margin)
        }
        RuleKind::Unbalance => {
            // One pass over the fields: the largest deviation from the mean is the maximum's
            // or the minimum's.
            let (mut sum, mut low, mut high) = (0.0, f64::INFINITY, f64::NEG_INFINITY);
            for field in &rule.fields {
                let v = number(sample, field)?;
                sum += v;
                low = low.min(v);
                high = high.max(v);
            }
            if rule.fields.is_empty() {
                return None;
            }
            let mean = sum / rule.fields.len() as f64;
            if mean <= f64::EPSILON {
                return None;
            }
            let unbalance = (high - mean).max(mean - low) / mean * 100.0;
            let (condition, limit) = against_limits(unbalance, rule.above, None, margin);
            Some(Evaluation {
                condition,
                value: unbalance,
                limit,
                subject: Subject::Text("unbalance_pct".into()),
            })
        }
        RuleKind::StatusBits => {
            let field = rule.field.as_deref()?;
            let value = number(sample, field)?;
            let mask = rule.mask?;
            let bits = if value >= 0.0 { value as u64 } else { 0 };
            let condition = if bits & mask != 0 {
                Condition::Active
            } else {
                Condition::Clear
            };
            Some(Evaluation {
                condition,
                value,
                limit: mask as f64,
                subject: Subject::Field(0),
            })
        }
        // Stateful or timed kinds are evaluated by the engine.
        RuleKind::Stale
        | RuleKind::NightFlow
        | RuleKind::Step
        | RuleKind::Frozen
        | RuleKind::Balance => None,
        RuleKind::TopFloor => {
            let site = site?;
            let outlet = number(sample, rule.field.as_deref()?)?;
            let top = f64::from(site.storeys.saturating_sub(1)) * site.storey_height_m
                + rule.fixture_height_m.unwrap_or(1.0);
            let lift_m = top - site.sensor_elevation_m;
            let flow_share = match (&rule.flow_field, site.design_flow_m3h) {
                (Some(field), Some(design)) if design > 0.0 => {
                    (number(sample, field)?.max(0.0) / design).powf(FRICTION_EXPONENT)
                }
                _ => 1.0,
            };
            let losses_m = rule.loss_fraction.unwrap_or(0.15) * lift_m * flow_share;
            let residual =
                outlet - (lift_m + losses_m) * MPA_PER_M - rule.meter_loss_mpa.unwrap_or(0.01);
            let (condition, limit) = against_limits(residual, None, rule.below, margin);
            Some(Evaluation {
                condition,
                value: residual,
                limit,
                subject: Subject::TopFloor(site.storeys),
            })
        }
        RuleKind::FloorInlet => {
            let site = site?;
            if site.branch_prv_floors >= site.storeys {
                return None;
            }
            let outlet = number(sample, rule.field.as_deref()?)?;
            // The lowest floor without a branch PRV has the highest unregulated inlet pressure.
            let floor = site.branch_prv_floors + 1;
            let height = f64::from(floor - 1) * site.storey_height_m
                + rule.fixture_height_m.unwrap_or(1.0)
                - site.sensor_elevation_m;
            let inlet = outlet - height * MPA_PER_M;
            let (condition, limit) = against_limits(inlet, rule.above, None, margin);
            Some(Evaluation {
                condition,
                value: inlet,
                limit,
                subject: Subject::FloorInlet(floor),
            })
        }
    }
}
