//! The flow of a water zone whose pressure one device measures and whose flow another does: a
//! PRV-fed zone's pressure is the PRV outlet transmitter's, its flow the DMA flowmeter's. The
//! top-floor rule (W5) needs the flow for the pipe losses, which at night are close to nothing;
//! without it the design-flow losses apply, and a zone held at its night set-point would look
//! short of pressure all night.

use std::collections::HashMap;

use crate::config::{FlowSource, SiteGeometry};
use crate::model::Sample;

/// A flow reading older than this is not the zone's flow any more (design losses apply).
const MAX_AGE_NS: i64 = 600 * 1_000_000_000;

/// The latest flow of each watched source device.
#[derive(Debug, Clone, Default)]
pub struct ZoneFlows {
    /// Source device → its flow field.
    watched: HashMap<String, String>,
    /// Source device → (time, m³/h).
    latest: HashMap<String, (i64, f64)>,
}

impl ZoneFlows {
    /// Remembers the flows of `source` from now on.
    pub fn watch(&mut self, source: &FlowSource) {
        self.watched
            .insert(source.device.clone(), source.field.clone());
    }

    /// Takes the flow from `sample` when its device is a watched source.
    pub fn observe(&mut self, sample: &Sample) {
        if self.watched.is_empty() {
            return;
        }
        let Some(field) = self.watched.get(&*sample.device) else {
            return;
        };
        if let Some(flow) = sample
            .field(field)
            .and_then(|v| v.as_f64())
            .filter(|f| f.is_finite())
        {
            self.latest
                .insert(sample.device.to_string(), (sample.time_ns, flow));
        }
    }

    /// The zone flow of a device with `site` at `time_ns`, when its source has reported lately.
    pub fn flow_for(&self, site: Option<&SiteGeometry>, time_ns: i64) -> Option<f64> {
        let source = site?.flow_from.as_ref()?;
        let &(at, flow) = self.latest.get(&source.device)?;
        ((time_ns - at).abs() <= MAX_AGE_NS).then_some(flow)
    }
}
