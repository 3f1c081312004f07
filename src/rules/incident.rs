//! Incidents instead of storms: alarms whose devices share a root (the top of their `upstream`
//! chain: a supply tree for power, the zone's inlet for water, the substation for heating) form
//! one incident while any of them is raised. A person is told once per incident: when it has
//! settled (`settle`, shorter for a crit), naming the root and how many devices are affected;
//! once more when it has grown (a new device, or a higher severity) and the last message is at
//! least `update_after` old (a higher severity does not wait); and once when every alarm of it
//! has cleared. Each alarm still goes to InfluxDB and MQTT on its own; these notifications go to
//! the group robots. The book is saved with the alarm state, so a restart neither forgets an
//! incident nor tells it twice.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::model::{AlarmEvent, AlarmWords, Severity};

/// How long an incident gathers its alarms before the first message, and how often it may
/// send an update.
#[derive(Debug, Clone, Copy)]
pub struct IncidentTiming {
    pub settle_ns: i64,
    pub settle_crit_ns: i64,
    pub update_after_ns: i64,
}

/// One alarm of an incident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Member {
    device: String,
    rule: String,
    severity: Severity,
    raised: bool,
    /// How far down the supply tree its device is (0: the root).
    depth: usize,
    words: AlarmWords,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Incident {
    /// The first alarm's id; the notifications carry it.
    id: String,
    root: String,
    opened_ns: i64,
    members: Vec<Member>,
    /// When the last message was sent, and how many devices and which severity it named.
    told: Option<(i64, usize, Severity)>,
    /// When a higher severity than the last message's joined.
    escalated_ns: Option<i64>,
    flapping: bool,
}

/// The open incidents, and each device's root and depth in the supply tree.
#[derive(Debug)]
pub struct IncidentBook {
    open: Vec<Incident>,
    roots: HashMap<String, (String, usize)>,
    timing: IncidentTiming,
    dirty: bool,
    /// Incidents told for the first time since [`IncidentBook::take_told`] (the KPI counts them).
    told: u32,
}

/// What is saved.
#[derive(Serialize, Deserialize)]
struct Saved {
    version: u32,
    open: Vec<Incident>,
}

impl IncidentBook {
    /// A book for devices with `upstream` links (device → the device that feeds it).
    pub fn new(upstream: &BTreeMap<String, String>, timing: IncidentTiming) -> IncidentBook {
        let roots = upstream
            .keys()
            .map(|device| {
                let mut root = device.clone();
                let mut depth = 0;
                // Validation refuses cycles; the bound keeps a bad file from looping anyway.
                while let Some(up) = upstream.get(&root).filter(|_| depth < upstream.len()) {
                    root = up.clone();
                    depth += 1;
                }
                (device.clone(), (root, depth))
            })
            .collect();
        IncidentBook {
            open: Vec::new(),
            roots,
            timing,
            dirty: false,
            told: 0,
        }
    }

    /// The book for `config`'s supply tree (`upstream` of its devices) and `[alarms]` timings.
    pub fn of(config: &crate::config::LoadedConfig) -> IncidentBook {
        let alarms = &config.gateway.alarms;
        let nanos = |d: crate::config::ConfigDuration| {
            i64::try_from(d.get().as_nanos()).unwrap_or(i64::MAX)
        };
        let upstream = config
            .gateway
            .device
            .iter()
            .filter_map(|d| Some((d.id.clone(), d.upstream.clone()?)))
            .collect();
        IncidentBook::new(
            &upstream,
            IncidentTiming {
                settle_ns: nanos(alarms.incident_settle),
                settle_crit_ns: nanos(alarms.incident_settle_crit),
                update_after_ns: nanos(alarms.incident_update_after),
            },
        )
    }

    fn root_of(&self, device: &str) -> (String, usize) {
        self.roots
            .get(device)
            .cloned()
            .unwrap_or_else(|| (device.to_string(), 0))
    }

    /// Takes an alarm event; what must be told now (a clear of a whole incident, or the clear of
    /// an alarm whose incident this book does not know, e.g. raised before an upgrade).
    pub fn observe(&mut self, event: &AlarmEvent) -> Vec<AlarmEvent> {
        self.dirty = true;
        let (root, depth) = self.root_of(&event.device);
        let member = Member {
            device: event.device.to_string(),
            rule: event.rule.to_string(),
            severity: event.severity,
            raised: event.firing,
            depth,
            words: event.words.clone(),
        };
        let index = self.open.iter().position(|i| i.root == root);
        if event.firing {
            let incident = match index {
                Some(i) => &mut self.open[i],
                None => {
                    self.open.push(Incident {
                        id: event.id.clone(),
                        root,
                        opened_ns: event.time_ns,
                        members: Vec::new(),
                        told: None,
                        escalated_ns: None,
                        flapping: false,
                    });
                    self.open.last_mut().expect("just pushed")
                }
            };
            incident.flapping |= event.flapping;
            if let Some((_, _, told)) = incident.told {
                if event.severity > told && incident.escalated_ns.is_none() {
                    incident.escalated_ns = Some(event.time_ns);
                }
            }
            match incident
                .members
                .iter_mut()
                .find(|m| m.device == member.device && m.rule == member.rule)
            {
                Some(known) => *known = member,
                None => incident.members.push(member),
            }
            return Vec::new();
        }
        let Some(i) = index.filter(|&i| {
            self.open[i]
                .members
                .iter()
                .any(|m| m.device == member.device && m.rule == member.rule)
        }) else {
            // Not ours to summarise: told as it is.
            return vec![event.clone()];
        };
        let incident = &mut self.open[i];
        // Cleared before it settled: told that it happened (as it was), then that it is over.
        let untold = incident
            .told
            .is_none()
            .then(|| notification(incident, Kind::Raised, incident.opened_ns));
        for m in &mut incident.members {
            if m.device == member.device && m.rule == member.rule {
                m.raised = false;
                m.words.reading = member.words.reading.clone();
            }
        }
        if incident.members.iter().any(|m| m.raised) {
            return Vec::new();
        }
        let incident = self.open.remove(i);
        self.told += u32::from(untold.is_some());
        let mut told: Vec<AlarmEvent> = untold.into_iter().collect();
        told.push(notification(&incident, Kind::Cleared, event.time_ns));
        told
    }

    /// What is due at `now_ns`: first messages of settled incidents and updates.
    pub fn tick(&mut self, now_ns: i64) -> Vec<AlarmEvent> {
        let timing = self.timing;
        let mut due = Vec::new();
        for incident in &mut self.open {
            let severity = incident.severity();
            let devices = incident.devices();
            match incident.told {
                None => {
                    let settle = if severity == Severity::Crit {
                        timing.settle_crit_ns
                    } else {
                        timing.settle_ns
                    };
                    if now_ns - incident.opened_ns >= settle {
                        due.push(notification(incident, Kind::Raised, now_ns));
                        incident.told = Some((now_ns, devices, severity));
                        self.told += 1;
                    }
                }
                Some((at, told_devices, told_severity)) => {
                    let escalated = incident
                        .escalated_ns
                        .is_some_and(|e| now_ns - e >= timing.settle_crit_ns);
                    let grown = devices > told_devices || severity > told_severity;
                    if grown && (escalated || now_ns - at >= timing.update_after_ns) {
                        due.push(notification(incident, Kind::Grown, now_ns));
                        incident.told = Some((now_ns, devices, severity));
                        incident.escalated_ns = None;
                    }
                }
            }
        }
        self.dirty |= !due.is_empty();
        due
    }

    /// How many incidents were told for the first time since the last call.
    pub fn take_told(&mut self) -> u32 {
        std::mem::take(&mut self.told)
    }

    /// Whether the book changed since the last save (then clears the flag).
    pub fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    /// The last save did not reach the card: save again next time.
    pub fn mark_dirty(&mut self) {
        self.dirty = true;
    }

    /// The open incidents as JSON, for the state file.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(&Saved {
            version: 1,
            open: self.open.clone(),
        })
        .unwrap_or_default()
    }

    /// Takes back the incidents of a saved book; `Err` with a reason when it cannot be read.
    pub fn restore(&mut self, json: &[u8]) -> Result<(), String> {
        let saved: Saved = serde_json::from_slice(json).map_err(|e| e.to_string())?;
        self.open = saved.open;
        Ok(())
    }
}

impl Incident {
    fn severity(&self) -> Severity {
        self.members
            .iter()
            .map(|m| m.severity)
            .max()
            .unwrap_or(Severity::Info)
    }

    /// Devices with an alarm in the incident.
    fn devices(&self) -> usize {
        let mut devices: Vec<&str> = self.members.iter().map(|m| m.device.as_str()).collect();
        devices.sort_unstable();
        devices.dedup();
        devices.len()
    }

    /// The member the message leads with: one still raised, the most severe, then the nearest
    /// the root, then the first.
    fn lead(&self) -> Option<&Member> {
        self.members
            .iter()
            .enumerate()
            .max_by_key(|(n, m)| {
                (
                    m.raised,
                    m.severity,
                    std::cmp::Reverse(m.depth),
                    std::cmp::Reverse(*n),
                )
            })
            .map(|(_, m)| m)
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Raised,
    Grown,
    Cleared,
}

/// The message about `incident`, as an alarm event the robots' outboxes take.
fn notification(incident: &Incident, kind: Kind, now_ns: i64) -> AlarmEvent {
    let lead = incident.lead().cloned().unwrap_or(Member {
        device: incident.root.clone(),
        rule: String::new(),
        severity: Severity::Info,
        raised: false,
        depth: 0,
        words: AlarmWords::default(),
    });
    let devices = incident.devices();
    let mut others: Vec<&str> = Vec::new();
    for member in &incident.members {
        let place = member.words.place.as_str();
        if member.device != lead.device && !others.contains(&place) {
            others.push(place);
        }
    }
    let mut reading = lead.words.reading.clone();
    if kind == Kind::Cleared {
        reading = if devices > 1 {
            format!("{devices}台设备的报警已全部恢复")
        } else {
            reading
        };
    } else if !others.is_empty() {
        let named: Vec<&str> = others.iter().take(3).copied().collect();
        let more = if others.len() > 3 { "等" } else { "" };
        reading = format!(
            "{reading}；同时报警{}台：{}{more}",
            others.len(),
            named.join("、")
        );
    }
    let mut title = lead.words.title.clone();
    if kind == Kind::Grown {
        title.push_str("（范围扩大）");
    }
    AlarmEvent {
        id: incident.id.clone(),
        rule: lead.rule.as_str().into(),
        device: lead.device.as_str().into(),
        severity: incident.severity(),
        firing: kind != Kind::Cleared,
        flapping: incident.flapping,
        value: devices as f64,
        limit: 0.0,
        message: format!("{title}：{reading}"),
        time_ns: now_ns,
        words: AlarmWords {
            title,
            place: lead.words.place.clone(),
            reading,
            action: lead.words.action.clone(),
            since_ns: incident.opened_ns,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    /// hv-meter → tx1-meter → feeder-1 → meter-01…06; booster-1 on its own.
    fn book() -> IncidentBook {
        let mut upstream = BTreeMap::new();
        upstream.insert("tx1-meter".to_string(), "hv-meter".to_string());
        upstream.insert("feeder-1".to_string(), "tx1-meter".to_string());
        for n in 1..=6 {
            upstream.insert(format!("meter-0{n}"), "feeder-1".to_string());
        }
        IncidentBook::new(
            &upstream,
            IncidentTiming {
                settle_ns: 60 * S,
                settle_crit_ns: 10 * S,
                update_after_ns: 600 * S,
            },
        )
    }

    fn event(device: &str, rule: &str, severity: Severity, firing: bool, t: i64) -> AlarmEvent {
        AlarmEvent {
            id: format!("{device}/{rule}/0"),
            rule: rule.into(),
            device: device.into(),
            severity,
            firing,
            flapping: false,
            value: 190.0,
            limit: 198.0,
            message: String::new(),
            time_ns: t * S,
            words: AlarmWords {
                title: format!("{rule}标题"),
                place: format!("{device}位置"),
                reading: format!("{device}读数"),
                action: format!("{rule}处理"),
                since_ns: t * S,
            },
        }
    }

    /// Feeds (second, event) and ticks every second up to `until`; the notifications.
    fn run(book: &mut IncidentBook, events: &[(i64, AlarmEvent)], until: i64) -> Vec<AlarmEvent> {
        let mut told = Vec::new();
        for t in 0..=until {
            for (_, e) in events.iter().filter(|(at, _)| *at == t) {
                told.extend(book.observe(e));
            }
            told.extend(book.tick(t * S));
        }
        told
    }

    #[test]
    fn a_voltage_sag_on_fifteen_devices_is_one_message_and_one_clear() {
        let mut book = book();
        let mut events = vec![(60, event("hv-meter", "E3", Severity::Warn, true, 60))];
        for (n, device) in ["tx1-meter", "feeder-1"].into_iter().enumerate() {
            events.push((61 + n as i64, event(device, "E1", Severity::Warn, true, 61)));
            events.push((61 + n as i64, event(device, "E2", Severity::Warn, true, 61)));
        }
        for n in 1..=6 {
            let device = format!("meter-0{n}");
            events.push((
                70 + 4 * n,
                event(&device, "E1.household", Severity::Warn, true, 70),
            ));
        }
        let raised = events.len();
        let clear_at = 3000;
        let cleared: Vec<(i64, AlarmEvent)> = events
            .iter()
            .map(|(at, e)| {
                let mut e = e.clone();
                e.firing = false;
                e.time_ns = (clear_at + at) * S;
                (clear_at + at, e)
            })
            .collect();
        events.extend(cleared);
        let told = run(&mut book, &events, clear_at + 200);
        assert_eq!(raised, 11);
        assert_eq!(told.len(), 2, "{told:#?}");
        let (raise, clear) = (&told[0], &told[1]);
        // Told once it settled (60 s after the first alarm), led by the root, naming the rest.
        assert!(raise.firing);
        assert_eq!(raise.time_ns, 120 * S);
        assert_eq!(raise.id, "hv-meter/E3/0");
        assert_eq!(raise.words.place, "hv-meter位置");
        assert_eq!(
            raise.words.reading,
            "hv-meter读数；同时报警8台：tx1-meter位置、feeder-1位置、meter-01位置等"
        );
        assert_eq!(raise.value, 9.0);
        assert!(!clear.firing);
        assert_eq!(clear.id, raise.id);
        assert_eq!(clear.words.reading, "9台设备的报警已全部恢复");
        assert_eq!(clear.words.since_ns, 60 * S);
        assert!(book.open.is_empty());
        assert_eq!(book.take_told(), 1);
        assert_eq!(book.take_told(), 0);
    }

    #[test]
    fn a_growing_incident_is_updated_at_most_every_ten_minutes_and_at_once_when_it_turns_crit() {
        let mut book = book();
        let events = vec![
            (0, event("feeder-1", "E1", Severity::Warn, true, 0)),
            // Another device after the first message, then a third: one update, ten minutes on.
            (
                100,
                event("meter-01", "E1.household", Severity::Warn, true, 100),
            ),
            (
                200,
                event("meter-02", "E1.household", Severity::Warn, true, 200),
            ),
            // A crit joins at 1000 s: told 10 s later, not at the next ten minutes.
            (1000, event("tx1-meter", "E5", Severity::Crit, true, 1000)),
        ];
        let told = run(&mut book, &events, 1500);
        let times: Vec<i64> = told.iter().map(|e| e.time_ns / S).collect();
        assert_eq!(times, vec![60, 660, 1010], "{told:#?}");
        assert!(told[1].words.title.ends_with("（范围扩大）"));
        assert_eq!(told[2].severity, Severity::Crit);
        // The crit, nearest the root, now leads.
        assert_eq!(&*told[2].device, "tx1-meter");
    }

    #[test]
    fn a_blip_shorter_than_the_settling_is_told_with_its_clear_and_strangers_pass_through() {
        let mut book = book();
        let mut repaired = event("booster-1", "W13", Severity::Crit, false, 5);
        repaired.words.reading = "已恢复正常".into();
        let events = vec![
            (0, event("booster-1", "W13", Severity::Crit, true, 0)),
            (5, repaired),
            // A clear of an alarm raised before the book knew of it.
            (20, event("tx1-meter", "E1", Severity::Warn, false, 20)),
        ];
        let told = run(&mut book, &events, 100);
        let shape: Vec<(i64, bool, &str)> = told
            .iter()
            .map(|e| (e.time_ns / S, e.firing, &*e.device))
            .collect();
        assert_eq!(
            shape,
            vec![
                (0, true, "booster-1"),
                (5, false, "booster-1"),
                (20, false, "tx1-meter")
            ]
        );
        assert_eq!(told[0].words.reading, "booster-1读数");
        assert_eq!(told[1].words.reading, "已恢复正常");
    }

    #[test]
    fn open_incidents_survive_a_restart_and_are_not_told_twice() {
        let mut book = book();
        let told = run(
            &mut book,
            &[(0, event("feeder-1", "E1", Severity::Warn, true, 0))],
            100,
        );
        assert_eq!(told.len(), 1);
        let json = book.to_json();
        let mut again = self::book();
        again.restore(&json).expect("restores");
        assert!(again.tick(200 * S).is_empty());
        let cleared = again.observe(&event("feeder-1", "E1", Severity::Warn, false, 300));
        assert_eq!(cleared.len(), 1);
        assert_eq!(cleared[0].id, told[0].id);
        assert!(again.restore(b"{not json").is_err());
    }
}
