//! Which KPIs a device gets, and with which limits: read off the rules that apply to it, so
//! that the KPI and the alarm always mean the same band (a site override moves both).
//!
//! | KPI | from |
//! |---|---|
//! | `pressure_compliance` | W2, W3, W5, W6 conditions on each sample (both zones) |
//! | `frequency_compliance` | E8 |
//! | `gas_pressure_compliance` | G1, G2 |
//! | `voltage_qualification` | the E1/E2/E3 band of each field, on 1-minute means |
//! | `voltage_unbalance_p95` | the fields of the unbalance rule (E6) |
//! | `room_hours_at_18` | H1's floor (the highest `below` of its variants) |
//! | `makeup_ratio` | H6's field against the site's circulation flow |
//! | `mnf` … | W16's field and night window |
//! | `water_loss_rate` | W17's inflow and sub-meter totalisers |

use crate::config::rule_pack::{RuleConfig, RuleKind};
use crate::config::SiteGeometry;
use crate::rules::engine::DeviceRules;

/// KPIs that are the share of samples on which none of some rules' conditions holds.
pub const RULE_SHARES: [(&str, &[&str]); 3] = [
    ("pressure_compliance", &["W2", "W3", "W5", "W6"]),
    ("frequency_compliance", &["E8"]),
    ("gas_pressure_compliance", &["G1", "G2"]),
];

/// Rules whose deviation band is the voltage qualification band.
const VOLTAGE_RULES: [&str; 3] = ["E1", "E2", "E3"];

/// What to compute for one device.
#[derive(Debug, Clone, Default)]
pub struct DeviceKpis {
    pub interval_s: f64,
    pub site: Option<SiteGeometry>,
    /// (KPI, the rules it is the complement of).
    pub shares: Vec<(&'static str, Vec<RuleConfig>)>,
    /// (field, low, high) of each voltage.
    pub voltage: Vec<(String, f64, f64)>,
    /// The three line voltages whose unbalance is taken.
    pub unbalance: Vec<String>,
    /// (field, floor) of a sample flat.
    pub room: Option<(String, f64)>,
    /// (make-up flow field, circulation flow m³/h).
    pub makeup: Option<(String, f64)>,
    /// The inflow field and W16's night window and tests.
    pub night: Option<(String, crate::rules::night_flow::NightFlowParams)>,
    /// The totaliser fields (summed) whose daily volume a water balance needs: an inflow
    /// meter's, or a sub-meter's.
    pub totaliser: Vec<String>,
    /// An inflow meter's sub-meters (its water balance).
    pub sub_meters: Vec<String>,
}

impl DeviceKpis {
    pub fn of(rules: &DeviceRules<'_>) -> DeviceKpis {
        let with_id = |ids: &[&str]| -> Vec<&RuleConfig> {
            rules
                .rules
                .iter()
                .copied()
                .filter(|r| ids.contains(&r.id.as_str()))
                .collect()
        };
        let shares = RULE_SHARES
            .iter()
            .map(|(kpi, ids)| (*kpi, with_id(ids).into_iter().cloned().collect::<Vec<_>>()))
            .filter(|(_, rules)| !rules.is_empty())
            .collect();
        let mut voltage: Vec<(String, f64, f64)> = Vec::new();
        for rule in with_id(&VOLTAGE_RULES) {
            let (Some(nominal), Some(plus), Some(minus)) =
                (rule.nominal, rule.plus_pct, rule.minus_pct)
            else {
                continue;
            };
            let (low, high) = (
                nominal * (1.0 - minus / 100.0),
                nominal * (1.0 + plus / 100.0),
            );
            for field in &rule.fields {
                match voltage.iter_mut().find(|(f, _, _)| f == field) {
                    // The narrowest band wins.
                    Some(band) => *band = (field.clone(), band.1.max(low), band.2.min(high)),
                    None => voltage.push((field.clone(), low, high)),
                }
            }
        }
        let unbalance = rules
            .rules
            .iter()
            .find(|r| r.kind == RuleKind::Unbalance && r.fields.len() == 3)
            .map(|r| r.fields.clone())
            .unwrap_or_default();
        let room = with_id(&["H1"])
            .iter()
            .filter_map(|r| Some((r.field.clone()?, r.below?)))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        let site = rules.site.cloned();
        let makeup = rules
            .rules
            .iter()
            .find(|r| r.kind == RuleKind::MakeupRatio)
            .and_then(|r| Some((r.field.clone()?, site.as_ref()?.circulation_m3h?)));
        let night = rules
            .rules
            .iter()
            .find(|r| r.kind == RuleKind::NightFlow && r.aggregate.as_deref() != Some("mean"))
            .and_then(|r| {
                let params = crate::rules::night_flow::NightFlowParams::of(r, rules.households);
                Some((r.field.clone()?, params))
            });
        let balance = rules.rules.iter().find(|r| r.kind == RuleKind::Balance);
        let totaliser = match (balance, rules.feeds.first()) {
            (Some(inflow), _) => inflow.fields.clone(),
            (None, Some((_, fed))) => fed.sub_fields.clone(),
            (None, None) => Vec::new(),
        };
        let sub_meters = match balance {
            Some(_) => rules.sub_meters.iter().map(|d| d.to_string()).collect(),
            None => Vec::new(),
        };
        DeviceKpis {
            interval_s: rules.interval_ns as f64 / 1e9,
            totaliser,
            sub_meters,
            site,
            shares,
            voltage,
            unbalance,
            room,
            makeup,
            night,
        }
    }
}
