//! A day's figures as `kpi` samples: tags `site`, `gateway`, `device`, `kpi` and, where they
//! apply, `subject` (a phase field, a rule) and `severity`; fields `value`, `target`,
//! `numerator`, `denominator` and `final` (false for a day still running: its final line,
//! written after midnight, has the same series and time and replaces it); the time is the
//! day's local midnight.

use std::sync::Arc;

use crate::model::{Field, Sample, Value};

use super::ledger::day_start_ns;
use super::{definition, DayRecord};

/// The measurement.
pub const MEASUREMENT: &str = "kpi";

/// The samples of one day's record.
pub fn samples(record: &DayRecord, site: &str, gateway: &str, utc_offset_h: f64) -> Vec<Sample> {
    let time_ns = day_start_ns(record.day, utc_offset_h);
    record
        .values
        .iter()
        .map(|v| {
            let mut tags = vec![
                ("device".to_string(), v.device.clone()),
                ("gateway".to_string(), gateway.to_string()),
                ("kpi".to_string(), v.kpi.clone()),
                ("site".to_string(), site.to_string()),
            ];
            tags.extend(v.subject.clone().map(|s| ("subject".to_string(), s)));
            tags.extend(v.severity.clone().map(|s| ("severity".to_string(), s)));
            tags.sort();
            let field = |name: &str, value: f64| Field {
                name: Arc::from(name),
                value: Value::Float(value),
            };
            let mut fields = vec![field("value", v.value)];
            let target = definition(&v.kpi).and_then(|d| d.target);
            fields.extend(target.map(|t| field("target", t.value())));
            fields.extend(v.numerator.map(|n| field("numerator", n)));
            fields.extend(v.denominator.map(|d| field("denominator", d)));
            fields.push(Field {
                name: Arc::from("final"),
                value: Value::Bool(record.complete),
            });
            Sample {
                measurement: Arc::from(MEASUREMENT),
                device: Arc::from(v.device.as_str()),
                tags: tags.into(),
                fields,
                time_ns,
                receipt: crate::model::Receipt::none(),
            }
        })
        .collect()
}
