//! Evaluating one rule on one sample: whether its condition is active, clear or in between, with
//! the value that decided and the limit it was held against. Pure functions of the sample, the
//! rule and the device's building geometry.

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

/// Which field or floor decided, for the message ([`super::words`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Subject {
    /// The n-th field the rule names (`field` first, then `fields`).
    Field(usize),
    /// The rule's first field less its second.
    Difference,
    /// The residual pressure at the top floor of a building of this many storeys.
    TopFloor(u32),
    /// The inlet pressure of this floor.
    FloorInlet(u32),
    /// A figure the rule computes (a share, a rate, a night's flow, an age).
    Computed,
}

/// Pressure of a metre of water column, MPa (0.01 MPa per metre, DOMAIN.md §2).
const MPA_PER_M: f64 = 0.01;
/// Hazen–Williams exponent: friction loss ∝ Q^1.85.
const FRICTION_EXPONENT: f64 = 1.85;

fn number(sample: &Sample, field: &str) -> Option<f64> {
    sample.field(field).and_then(|v| v.as_f64())
}

/// Whether the plant runs (or water flows) by the rule's `while_field` above `while_above`:
/// always without one; `None` when the sample lacks the field.
pub fn running(rule: &RuleConfig, sample: &Sample) -> Option<bool> {
    match (&rule.while_field, rule.while_above) {
        (Some(field), Some(above)) => number(sample, field).map(|v| v > above),
        _ => Some(true),
    }
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

/// The negative-sequence voltage unbalance ε₂ in percent (GB/T 15543) from the magnitudes of the
/// three line voltages: exact without phase angles, because line voltages have no zero-sequence
/// part. β = Σ U⁴ / (Σ U²)², ε₂ = √((1 − √(3 − 6β)) / (1 + √(3 − 6β))) (DOMAIN.md E6). `None`
/// when a voltage is not a positive finite number.
pub fn negative_sequence_pct(line: [f64; 3]) -> Option<f64> {
    if !line.iter().all(|u| u.is_finite() && *u > 0.0) {
        return None;
    }
    let squares: f64 = line.iter().map(|u| u * u).sum();
    let beta = line.iter().map(|u| u.powi(4)).sum::<f64>() / (squares * squares);
    // β is 1/3 for a balanced set; rounding can push 3 − 6β just below zero.
    let root = (3.0 - 6.0 * beta).max(0.0).sqrt();
    Some(((1.0 - root) / (1.0 + root)).max(0.0).sqrt() * 100.0)
}

/// Evaluates `rule` on `sample`; `None` when the sample lacks what the rule reads (a slower
/// point not due this cycle) or the rule is evaluated by the engine (stale and the kinds that
/// keep history). `zone_flow` is the zone's flow when another device measures it.
pub fn evaluate(
    rule: &RuleConfig,
    sample: &Sample,
    site: Option<&SiteGeometry>,
    zone_flow: Option<f64>,
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
            let (mut condition, limit) = against_limits(value, rule.above, rule.below, margin);
            if !running(rule, sample)? {
                // No flow: a small ΔT says nothing (H7).
                condition = Condition::Clear;
            }
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
                subject: Subject::Computed,
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
            let [uab, ubc, uca] = rule.fields.as_slice() else {
                return None;
            };
            let line = [
                number(sample, uab)?,
                number(sample, ubc)?,
                number(sample, uca)?,
            ];
            let unbalance = negative_sequence_pct(line)?;
            let (condition, limit) = against_limits(unbalance, rule.above, None, margin);
            Some(Evaluation {
                condition,
                value: unbalance,
                limit,
                subject: Subject::Computed,
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
            // The device's own flow field, else the zone's flow from another device.
            let flow = match &rule.flow_field {
                Some(field) => Some(number(sample, field)?),
                None => zone_flow,
            };
            let flow_share = match (flow, site.design_flow_m3h) {
                (Some(flow), Some(design)) if design > 0.0 => {
                    (flow.max(0.0) / design).powf(FRICTION_EXPONENT)
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

#[cfg(test)]
mod tests {
    use super::negative_sequence_pct;

    /// The line-voltage magnitudes and the negative-sequence unbalance |U₂| / |U₁| of three phase
    /// voltages 120° apart, by symmetrical components (an independent route to ε₂).
    fn from_phases(ua: f64, ub: f64, uc: f64) -> ([f64; 3], f64) {
        let third = 2.0 * std::f64::consts::PI / 3.0;
        let phasor = |m: f64, angle: f64| (m * angle.cos(), m * angle.sin());
        let (a, b, c) = (phasor(ua, 0.0), phasor(ub, -third), phasor(uc, third));
        let magnitude = |(x, y): (f64, f64)| x.hypot(y);
        let sub = |p: (f64, f64), q: (f64, f64)| (p.0 - q.0, p.1 - q.1);
        let rotate = |(x, y): (f64, f64), angle: f64| {
            (
                x * angle.cos() - y * angle.sin(),
                x * angle.sin() + y * angle.cos(),
            )
        };
        // U₁ = (A + aB + a²C)/3, U₂ = (A + a²B + aC)/3 with a = e^{j120°}.
        let sum3 = |p: (f64, f64), q: (f64, f64), r: (f64, f64)| (p.0 + q.0 + r.0, p.1 + q.1 + r.1);
        let positive = sum3(a, rotate(b, third), rotate(c, 2.0 * third));
        let negative = sum3(a, rotate(b, 2.0 * third), rotate(c, third));
        (
            [
                magnitude(sub(a, b)),
                magnitude(sub(b, c)),
                magnitude(sub(c, a)),
            ],
            magnitude(negative) / magnitude(positive) * 100.0,
        )
    }

    #[test]
    fn unbalance_from_line_voltages_is_the_negative_sequence_ratio() {
        // DOMAIN.md E6: 230/230/220 V is 1.5 %, not the 2.9 % of max|U − Ū|/Ū on phases.
        let (line, expected) = from_phases(230.0, 230.0, 220.0);
        let unbalance = negative_sequence_pct(line).unwrap();
        assert!(
            (unbalance - expected).abs() < 1e-9,
            "{unbalance} vs {expected}"
        );
        assert!((unbalance - 1.4706).abs() < 1e-3, "{unbalance}");
        for (ua, ub, uc) in [
            (231.0, 225.0, 219.0),
            (240.0, 200.0, 220.0),
            (110.0, 230.0, 230.0),
        ] {
            let (line, expected) = from_phases(ua, ub, uc);
            let unbalance = negative_sequence_pct(line).unwrap();
            assert!(
                (unbalance - expected).abs() < 1e-9,
                "{ua}/{ub}/{uc}: {unbalance} vs {expected}"
            );
        }
        assert_eq!(negative_sequence_pct([400.0, 400.0, 400.0]), Some(0.0));
        assert_eq!(negative_sequence_pct([400.0, 0.0, 400.0]), None);
        assert_eq!(negative_sequence_pct([400.0, f64::NAN, 400.0]), None);
    }
}
