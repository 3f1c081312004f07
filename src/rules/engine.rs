//! The rule engine: which rules apply to which device, one state machine per (device, rule), and
//! the events their transitions produce. Alarm state survives restarts: the machines are written
//! to `data_dir/alarms/state.json` (atomically) after every transition and read back at start,
//! so a restart neither raises an alarm twice nor forgets one. An unreadable state file is
//! reported and replaced; it never stops the gateway.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::config::{ConfigDuration, LoadedConfig, SiteGeometry};
use crate::model::{AlarmEvent, Sample};

use super::balance::{BalanceOutcome, BalanceState};
use super::condition::{evaluate, Evaluation, Subject};
use super::frozen::{FrozenParams, FrozenState};
use super::machine::{Condition, Machine, Timing, Transition};
use super::night_flow::{Households, NightFlowParams, NightFlowState};
use super::publishers::Publishers;
use super::step::{StepParams, StepState};
use super::words::{field_words, DeviceWords, FieldWords};
use super::zone_flow::ZoneFlows;
use crate::config::rule_pack::{RuleConfig, RuleKind, RuleSeason};

/// A rule ready to run.
#[derive(Debug)]
struct Rule {
    config: RuleConfig,
    key: Arc<str>,
    timing: Timing,
}

/// What the engine knows about a device.
#[derive(Debug)]
struct DeviceContext {
    id: Arc<str>,
    site: Option<Arc<SiteGeometry>>,
    /// Poll interval, ns: a device is never stale before three of them (DOMAIN.md X1).
    interval_ns: i64,
    /// Indices into `rules` (shared so that evaluating a sample allocates nothing).
    rules: Arc<[usize]>,
    /// Water balances this device is a sub-meter of: (inflow device, rule index).
    feeds: Arc<[(Arc<str>, usize)]>,
    last_seen_ns: Option<i64>,
    /// For a device that joined by publishing: its measurement (remembered across restarts).
    published: Option<Arc<str>>,
    /// Its place and its fields' labels and units, for messages.
    words: Arc<DeviceWords>,
}

/// What applies to one device, borrowed from the engine.
pub struct DeviceRules<'a> {
    pub rules: Vec<&'a RuleConfig>,
    pub site: Option<&'a SiteGeometry>,
    pub interval_ns: i64,
    /// The water balances this device is a sub-meter of: (inflow device, balance rule).
    pub feeds: Vec<(&'a str, &'a RuleConfig)>,
    /// The sub-meters of this device's water balance, when it is an inflow meter.
    pub sub_meters: Vec<&'a str>,
    /// The households behind the DMA inflow meter, when configured.
    pub households: Option<Households>,
}

/// An alarm that is raised now.
#[derive(Debug, Clone, PartialEq)]
pub struct ActiveAlarm {
    pub device: String,
    pub rule: String,
    pub severity: crate::model::Severity,
    pub raised_ns: i64,
    pub flapping: bool,
}

#[derive(Serialize, Deserialize)]
struct SavedState {
    version: u32,
    machines: Vec<SavedMachine>,
    /// Night-flow history per (device, rule).
    #[serde(default)]
    nights: Vec<SavedHistory<NightFlowState>>,
    /// Water-balance windows per (inflow device, rule).
    #[serde(default)]
    balances: Vec<SavedHistory<BalanceState>>,
    /// Devices that joined by publishing: (device, measurement).
    #[serde(default)]
    published: Vec<(String, String)>,
}

#[derive(Serialize, Deserialize)]
struct SavedHistory<T> {
    device: String,
    rule: String,
    state: T,
}

/// A device's rule: (device id, rule key). Shared strings, so that finding a rule's state for a
/// sample allocates nothing.
type RuleOf = (Arc<str>, Arc<str>);

/// State per (device, rule). Hashed: every sample looks up a few of them among devices × rules,
/// and a tree's comparisons of shared strings cost a cache miss each on a gateway that sleeps
/// between polls. Whatever is written or shown is sorted first.
type PerRule<T> = HashMap<RuleOf, T>;

/// The states `keep` accepts as (device, rule, state), sorted by device and rule.
fn sorted<T: Clone>(map: &PerRule<T>, keep: impl Fn(&T) -> bool) -> Vec<(String, String, T)> {
    let mut list: Vec<(String, String, T)> = map
        .iter()
        .filter(|(_, state)| keep(state))
        .map(|((device, rule), state)| (device.to_string(), rule.to_string(), state.clone()))
        .collect();
    list.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    list
}

fn saved<T: Clone>(map: &PerRule<T>) -> Vec<SavedHistory<T>> {
    sorted(map, |_| true)
        .into_iter()
        .map(|(device, rule, state)| SavedHistory {
            device,
            rule,
            state,
        })
        .collect()
}

fn restored<T>(list: Vec<SavedHistory<T>>) -> PerRule<T> {
    list.into_iter()
        .map(|s| ((Arc::from(s.device), Arc::from(s.rule)), s.state))
        .collect()
}

#[derive(Serialize, Deserialize)]
struct SavedMachine {
    device: String,
    rule: String,
    machine: Machine,
}

pub struct RuleEngine {
    rules: Vec<Rule>,
    /// Rules from the packs; those after them are per-device copies made by overrides.
    pack_rules: usize,
    disabled: Vec<String>,
    overrides: Vec<crate::config::RuleOverride>,
    /// What publishing devices of each measurement report.
    templates: Vec<Template>,
    devices: HashMap<String, DeviceContext>,
    machines: PerRule<Machine>,
    nights: PerRule<NightFlowState>,
    balances: PerRule<BalanceState>,
    /// Recent values of step rules (not persisted: a window of seconds).
    steps: PerRule<StepState>,
    /// Recent values of frozen-value rules (not persisted: a restart starts the window again).
    frozen: PerRule<FrozenState>,
    /// Set when remembered state changed without an alarm transition (a night closed).
    dirty: bool,
    /// Whether the limit of publishing devices has been reported.
    full_warned: bool,
    /// How fast publishing devices are taken on, when their list is saved and forgotten.
    publishers: Publishers,
    state_file: Option<PathBuf>,
    /// The heating season and local time's offset from UTC, s, for rules with a season.
    heating_season: Option<crate::calendar::Season>,
    utc_offset_s: i64,
    /// The flows of zones another device measures (W5 on a PRV outlet).
    zone_flows: ZoneFlows,
    /// The households behind the DMA inflow meter (W16's absolute test).
    households: Option<Households>,
    /// Released when the state file meets a full card (only with a state file).
    reserve: Option<Arc<crate::buffer::reserve::Reserve>>,
    started_ns: i64,
}

/// The fields, report interval and tags of the devices an MQTT mapping writes (mappings of one
/// measurement are merged).
#[derive(Debug, Clone)]
struct Template {
    measurement: Arc<str>,
    fields: Vec<String>,
    /// The fields' labels and units, for messages.
    words: Arc<FieldWords>,
    interval_ns: i64,
    tags: Vec<(String, String)>,
    /// What people call the devices, and device id → a device's own name.
    label: Option<String>,
    names: BTreeMap<String, String>,
}

impl Template {
    /// What a person calls `device`: its own name, else the mapping's label with the id.
    fn name_of(&self, device: &str) -> Option<String> {
        self.names
            .get(device)
            .cloned()
            .or_else(|| self.label.as_ref().map(|label| format!("{label} {device}")))
    }
}

fn templates(config: &LoadedConfig) -> Vec<Template> {
    // The gateway's own minute sample (self-monitoring) joins like a publishing device.
    let mut templates: Vec<Template> = vec![Template {
        measurement: Arc::from(crate::model::GATEWAY_MEASUREMENT),
        fields: crate::model::GATEWAY_FIELDS
            .iter()
            .map(|f| f.to_string())
            .collect(),
        words: Arc::default(),
        interval_ns: 60_000_000_000,
        tags: Vec::new(),
        label: Some("网关".into()),
        names: BTreeMap::new(),
    }];
    let Some(source) = &config.gateway.mqtt_source else {
        return templates;
    };
    for mapping in &source.mappings {
        let fields = mapping.fields.iter().map(|f| f.name.clone());
        let words = field_words(
            mapping
                .fields
                .iter()
                .map(|f| (f.name.as_str(), f.label.as_deref(), f.unit.as_deref())),
        );
        let interval_ns = nanos(mapping.interval);
        match templates
            .iter_mut()
            .find(|t| *t.measurement == *mapping.measurement)
        {
            Some(t) => {
                t.fields.extend(fields);
                let merged = Arc::make_mut(&mut t.words);
                merged.extend(words.iter().map(|(f, w)| (f.clone(), w.clone())));
                t.interval_ns = t.interval_ns.min(interval_ns);
                t.names.extend(mapping.names.clone());
                if t.label.is_none() {
                    t.label.clone_from(&mapping.label);
                }
            }
            None => templates.push(Template {
                measurement: Arc::from(mapping.measurement.as_str()),
                fields: fields.collect(),
                words,
                interval_ns,
                tags: mapping
                    .tags
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                label: mapping.label.clone(),
                names: mapping.names.clone(),
            }),
        }
    }
    templates
}

/// Publishing devices the engine takes on: well above a community's sensors, low enough that
/// a publisher inventing device ids cannot exhaust a Pi's memory.
const MAX_PUBLISHED_DEVICES: usize = 5_000;

fn prepare(r: &RuleConfig) -> Rule {
    Rule {
        key: Arc::from(r.key().as_str()),
        timing: Timing {
            hold_ns: nanos(r.hold),
            clear_hold_ns: nanos(r.clear_for.unwrap_or(r.hold)),
            flap_limit: r.flap_limit,
            flap_window_ns: nanos(r.flap_window),
        },
        config: r.clone(),
    }
}

fn nanos(d: crate::config::ConfigDuration) -> i64 {
    i64::try_from(d.get().as_nanos()).unwrap_or(i64::MAX)
}

impl RuleEngine {
    /// The engine for a validated config: its rules matched to its devices, its state loaded
    /// from `state_file` when given. Devices that publish over MQTT are not known in advance:
    /// each joins at its first sample, by its mapping's measurement and fields.
    pub fn new(config: &LoadedConfig, state_file: Option<PathBuf>, now_ns: i64) -> RuleEngine {
        let rules: Vec<Rule> = config.rules.iter().map(prepare).collect();
        let alarms = &config.gateway.alarms;
        let mut engine = RuleEngine {
            pack_rules: rules.len(),
            rules,
            disabled: alarms.disabled.clone(),
            overrides: alarms.overrides.clone(),
            templates: templates(config),
            devices: HashMap::new(),
            machines: HashMap::new(),
            nights: HashMap::new(),
            balances: HashMap::new(),
            steps: HashMap::new(),
            frozen: HashMap::new(),
            dirty: false,
            full_warned: false,
            publishers: Publishers::new(
                config
                    .gateway
                    .mqtt_source
                    .as_ref()
                    .map(|s| nanos(s.forget_after)),
            ),
            reserve: state_file
                .as_ref()
                .map(|_| crate::buffer::reserve::Reserve::shared(&config.gateway.gateway.data_dir)),
            state_file,
            heating_season: config.gateway.kpi.heating_season(),
            utc_offset_s: (config.gateway.kpi.utc_offset_h * 3600.0) as i64,
            zone_flows: ZoneFlows::default(),
            households: config.gateway.kpi.households.map(|count| Households {
                count,
                night_use_l_h: config.gateway.kpi.night_use_l_per_household_h,
            }),
            started_ns: now_ns,
        };
        let mut profile_words: HashMap<String, Arc<FieldWords>> = HashMap::new();
        for device in &config.gateway.device {
            if let Some(source) = device.site.as_ref().and_then(|s| s.flow_from.as_ref()) {
                engine.zone_flows.watch(source);
            }
            let Some(profile) = config.profile_of(device) else {
                continue;
            };
            let has = |field: &str| profile.has_field(field);
            let tags = config.device_tags(device);
            // Devices of one profile share its labels (a hundred meters, one map).
            let fields = profile_words
                .entry(device.profile.clone())
                .or_insert_with(|| field_words(profile.field_words()));
            let words = DeviceWords::new(
                &device.id,
                device.name.as_deref(),
                &tags,
                Arc::clone(fields),
            );
            let rules = engine.rules_for(
                &device.id,
                &profile.kind,
                &has,
                device.site.is_some(),
                &tags,
            );
            engine.devices.insert(
                device.id.clone(),
                DeviceContext {
                    id: Arc::from(device.id.as_str()),
                    site: device.site.clone().map(Arc::new),
                    interval_ns: nanos(device.interval),
                    rules: rules.into(),
                    feeds: Arc::new([]),
                    last_seen_ns: None,
                    published: None,
                    words: Arc::new(words),
                },
            );
        }
        connect_balances(config, &engine.rules, &mut engine.devices);
        engine.load();
        engine
    }

    /// Indices of the rules that apply to a device, not disabled for it; an override for the
    /// device gives it its own copy of the rule.
    fn rules_for(
        &mut self,
        device: &str,
        measurement: &str,
        has: &dyn Fn(&str) -> bool,
        has_site: bool,
        tags: &[(String, String)],
    ) -> Vec<usize> {
        let applies: Vec<usize> = self
            .rules
            .iter()
            .enumerate()
            .filter(|(_, rule)| {
                let off = self.disabled.iter().any(|d| {
                    *d == *rule.key
                        || *d == rule.config.id
                        || *d == format!("{device}:{}", rule.key)
                });
                !off && applies_to(&rule.config, device, measurement, has, has_site)
                    && rule
                        .config
                        .tags
                        .iter()
                        .all(|(k, v)| tags.iter().any(|(tk, tv)| tk == k && tv == v))
            })
            .map(|(i, _)| i)
            .collect();
        applies
            .into_iter()
            .map(|i| {
                let wanted: Vec<&crate::config::RuleOverride> = self
                    .overrides
                    .iter()
                    .filter(|o| self.rules[i].config.is_named(&o.rule))
                    .filter(|o| o.devices.is_empty() || o.devices.iter().any(|d| d == device))
                    .collect();
                if wanted.is_empty() || i >= self.pack_rules {
                    return i;
                }
                let tuned = wanted
                    .iter()
                    .fold(self.rules[i].config.clone(), |rule, o| rule.overridden(o));
                self.rules.push(prepare(&tuned));
                self.rules.len() - 1
            })
            .collect()
    }

    /// Registers a device that publishes (MQTT) under the mapping for `measurement`, from its
    /// sample at `now` (within the budget for new devices) or from the saved list (`None`);
    /// false when no mapping writes that measurement or the budget is spent.
    fn adopt(&mut self, device: &str, measurement: &str, now: Option<i64>) -> bool {
        let published = self
            .devices
            .values()
            .filter(|d| d.published.is_some())
            .count();
        if published >= MAX_PUBLISHED_DEVICES {
            if !self.full_warned {
                self.full_warned = true;
                tracing::error!(device, limit = MAX_PUBLISHED_DEVICES, "Too many devices publish; new ones get no alarm rules (a misconfigured or hostile publisher?)");
            }
            return false;
        }
        let Some(template) = self
            .templates
            .iter()
            .find(|t| &*t.measurement == measurement)
            .cloned()
        else {
            return false;
        };
        if let Some(now) = now {
            if !self.publishers.take(device, now) {
                return false;
            }
        }
        let has = |field: &str| template.fields.iter().any(|f| f == field);
        let mut tags = template.tags.clone();
        tags.push(("device".into(), device.to_string()));
        let rules = self.rules_for(device, measurement, &has, false, &tags);
        let name = template.name_of(device);
        let words = DeviceWords::new(device, name.as_deref(), &tags, Arc::clone(&template.words));
        self.devices.insert(
            device.to_string(),
            DeviceContext {
                id: Arc::from(device),
                site: None,
                interval_ns: template.interval_ns,
                rules: rules.into(),
                feeds: Arc::new([]),
                last_seen_ns: None,
                published: Some(Arc::clone(&template.measurement)),
                words: Arc::new(words),
            },
        );
        true
    }

    /// The rules that apply to a device (after overrides), its building geometry and its poll
    /// interval (ns); `None` for a device the engine does not know.
    pub fn device_rules(&self, device: &str) -> Option<DeviceRules<'_>> {
        let context = self.devices.get(device)?;
        Some(DeviceRules {
            rules: context
                .rules
                .iter()
                .map(|i| &self.rules[*i].config)
                .collect(),
            site: context.site.as_deref(),
            interval_ns: context.interval_ns,
            feeds: context
                .feeds
                .iter()
                .map(|(inflow, i)| (&**inflow, &self.rules[*i].config))
                .collect(),
            sub_meters: self
                .devices
                .values()
                .filter(|d| d.feeds.iter().any(|(inflow, _)| **inflow == *device))
                .map(|d| &*d.id)
                .collect(),
            households: self.households,
        })
    }

    /// Rules (by key) that apply to a device.
    pub fn rules_of(&self, device: &str) -> Vec<String> {
        self.devices
            .get(device)
            .map(|d| {
                d.rules
                    .iter()
                    .map(|i| self.rules[*i].key.to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Evaluates every rule of the sample's device.
    pub fn evaluate(&mut self, sample: &Sample) -> Vec<AlarmEvent> {
        if !self.devices.contains_key(&*sample.device)
            && !self.adopt(&sample.device, &sample.measurement, Some(sample.time_ns))
        {
            return Vec::new();
        }
        let Some(device) = self.devices.get_mut(&*sample.device) else {
            return Vec::new();
        };
        device.last_seen_ns = Some(sample.time_ns);
        let id = Arc::clone(&device.id);
        let interval_ns = device.interval_ns;
        let site = device.site.clone();
        self.zone_flows.observe(sample);
        let indices = Arc::clone(&device.rules);
        for (inflow, index) in Arc::clone(&device.feeds).iter() {
            let rule = &self.rules[*index];
            if let Some(total) = total_of(sample, &rule.config.sub_fields) {
                self.dirty |= self
                    .balances
                    .entry((Arc::from(&**inflow), Arc::clone(&rule.key)))
                    .or_default()
                    .record(&id, sample.time_ns, total);
            }
        }
        let mut events = Vec::new();
        for &index in indices.iter() {
            let rule = &self.rules[index];
            // The rule's own field, for the kinds that keep history of it.
            let field_value = rule
                .config
                .field
                .as_deref()
                .and_then(|f| sample.field(f))
                .and_then(|v| v.as_f64());
            let evaluation = if rule.config.kind == RuleKind::NightFlow {
                let Some(flow) = field_value else {
                    continue;
                };
                let params = NightFlowParams::of(&rule.config, self.households);
                let state = self
                    .nights
                    .entry((Arc::clone(&id), Arc::clone(&rule.key)))
                    .or_default();
                let closed = state.closed;
                let decision = state.observe(sample.time_ns, flow, &params);
                self.dirty |= state.closed != closed;
                decision.map(|night| Evaluation {
                    condition: night.condition,
                    value: night.mnf,
                    limit: night.limit,
                    subject: Subject::Computed,
                })
            } else if rule.config.kind == RuleKind::Frozen {
                let Some(value) = field_value else {
                    continue;
                };
                let running = super::condition::running(&rule.config, sample).unwrap_or(false);
                let params = FrozenParams {
                    window_ns: nanos(
                        rule.config
                            .window
                            .unwrap_or(ConfigDuration::from_millis(3_600_000)),
                    ),
                    tolerance: rule.config.tolerance.unwrap_or(0.0),
                };
                let (condition, spread) = self
                    .frozen
                    .entry((Arc::clone(&id), Arc::clone(&rule.key)))
                    .or_default()
                    .observe(sample.time_ns, value, running, &params);
                Some(Evaluation {
                    condition,
                    value: spread,
                    limit: params.tolerance,
                    subject: Subject::Field(0),
                })
            } else if rule.config.kind == RuleKind::Step {
                let Some(value) = field_value else {
                    continue;
                };
                let key = (Arc::clone(&id), Arc::clone(&rule.key));
                let raised = self.machines.get(&key).is_some_and(Machine::is_raised);
                let params = StepParams {
                    window_ns: nanos(
                        rule.config
                            .window
                            .unwrap_or(ConfigDuration::from_millis(60_000)),
                    ),
                    rise: rule.config.rise.unwrap_or(f64::INFINITY),
                    rise_pct: rule.config.rise_pct,
                };
                self.steps
                    .entry(key)
                    .or_default()
                    .observe(sample.time_ns, value, raised, &params)
                    .map(|step| Evaluation {
                        condition: step.condition,
                        value: step.value,
                        limit: step.reference,
                        subject: Subject::Field(0),
                    })
            } else if rule.config.kind == RuleKind::Balance {
                let Some(total) = total_of(sample, &rule.config.fields) else {
                    continue;
                };
                self.balance(&id, index, sample.time_ns, total)
            } else if rule.config.kind == RuleKind::Stale {
                Some(Evaluation {
                    condition: Condition::Clear,
                    value: 0.0,
                    limit: stale_after_ns(&rule.config, interval_ns) as f64 / 1e9,
                    subject: Subject::Computed,
                })
            } else {
                let zone_flow = self.zone_flows.flow_for(site.as_deref(), sample.time_ns);
                evaluate(&rule.config, sample, site.as_deref(), zone_flow)
            };
            if let Some(mut evaluation) = evaluation {
                if self.out_of_season(&self.rules[index].config, sample.time_ns) {
                    evaluation.condition = Condition::Clear;
                }
                events.extend(self.step(&id, index, sample.time_ns, evaluation));
            }
        }
        events
    }

    /// Whether `rule` keeps quiet at `time_ns`: outside its season, or within its grace after
    /// the local midnight the season began (H1's 72 hours while the network warms up).
    fn out_of_season(&self, rule: &RuleConfig, time_ns: i64) -> bool {
        let (Some(RuleSeason::Heating), Some(season)) = (rule.season, self.heating_season) else {
            return false;
        };
        let local_s = time_ns.div_euclid(1_000_000_000) + self.utc_offset_s;
        let Some(first_day) = season.started_on(local_s.div_euclid(86_400)) else {
            return true;
        };
        let grace_s = rule
            .season_grace
            .map_or(0, |g| i64::try_from(g.get().as_secs()).unwrap_or(i64::MAX));
        local_s - first_day * 86_400 < grace_s
    }

    /// Records the inflow total of a water balance and decides its window when it has ended.
    fn balance(
        &mut self,
        inflow: &str,
        index: usize,
        time_ns: i64,
        total: f64,
    ) -> Option<Evaluation> {
        let rule = &self.rules[index];
        let params = super::balance::BalanceParams::of(&rule.config);
        let state = self
            .balances
            .entry((Arc::from(inflow), Arc::clone(&rule.key)))
            .or_default();
        self.dirty |= state.record(inflow, time_ns, total);
        if !state.due(time_ns, &params) {
            return None;
        }
        let subs: Vec<&str> = self
            .devices
            .values()
            .filter(|d| d.feeds.iter().any(|(i, r)| **i == *inflow && *r == index))
            .map(|d| &*d.id)
            .collect();
        self.dirty = true;
        match state.close(time_ns, inflow, &subs, &params) {
            BalanceOutcome::Decided {
                condition,
                loss_pct,
                inflow_m3,
            } => {
                tracing::info!(device = inflow, rule = %rule.key, loss_pct, inflow_m3, sub_meters = subs.len(), "Water balance window decided");
                Some(Evaluation {
                    condition,
                    value: loss_pct,
                    limit: params.above,
                    subject: Subject::Computed,
                })
            }
            BalanceOutcome::Skipped(reason) => {
                tracing::warn!(device = inflow, rule = %rule.key, %reason, "Water balance window skipped: not enough meter data to decide");
                None
            }
        }
    }

    /// Evaluates the stale rules at `now_ns` (call every few seconds).
    pub fn tick(&mut self, now_ns: i64) -> Vec<AlarmEvent> {
        self.dirty |= self.publishers.tick(now_ns);
        let silent: Vec<Arc<str>> = self
            .devices
            .values()
            .filter(|d| d.published.is_some())
            .filter(|d| {
                let heard = d.last_seen_ns.unwrap_or(self.started_ns);
                self.publishers.forgotten(heard, now_ns)
            })
            .map(|d| Arc::clone(&d.id))
            .collect();
        let mut forgotten: Vec<AlarmEvent> = silent
            .iter()
            .flat_map(|device| self.forget(device, now_ns))
            .collect();
        let mut due = Vec::new();
        for device in self.devices.values() {
            for &index in device.rules.iter() {
                let rule = &self.rules[index];
                if rule.config.kind != RuleKind::Stale {
                    continue;
                }
                let after = stale_after_ns(&rule.config, device.interval_ns);
                let age = now_ns - device.last_seen_ns.unwrap_or(self.started_ns);
                let condition = if age >= after {
                    Condition::Active
                } else {
                    Condition::Clear
                };
                due.push((
                    Arc::clone(&device.id),
                    index,
                    Evaluation {
                        condition,
                        value: age as f64 / 1e9,
                        limit: after as f64 / 1e9,
                        subject: Subject::Computed,
                    },
                ));
            }
        }
        forgotten.extend(
            due.into_iter().flat_map(|(device, index, evaluation)| {
                self.step(&device, index, now_ns, evaluation)
            }),
        );
        forgotten
    }

    /// Drops a publishing device silent beyond `forget_after` with everything kept about it;
    /// its raised alarms are cleared, saying why.
    fn forget(&mut self, device: &Arc<str>, now: i64) -> Vec<AlarmEvent> {
        let Some(context) = self.devices.get(&**device) else {
            return Vec::new();
        };
        let silent_s = (now - context.last_seen_ns.unwrap_or(self.started_ns)) as f64 / 1e9;
        tracing::info!(%device, silent_s, "A publishing device has been silent too long; forgotten with its alarms");
        let mut cleared = Vec::new();
        for &index in context.rules.iter() {
            let key = (Arc::clone(device), Arc::clone(&self.rules[index].key));
            let Some(machine) = self.machines.get(&key) else {
                continue;
            };
            let Some(raised) = machine.raised_at() else {
                continue;
            };
            let evaluation = Evaluation {
                condition: Condition::Clear,
                value: silent_s,
                limit: silent_s,
                subject: Subject::Computed,
            };
            let mut event = self.event(
                device,
                index,
                &evaluation,
                (false, raised, machine.flapping),
                now,
            );
            event.words.reading = format!(
                "已{}没有数据，不再监视此设备（重新上报后恢复）",
                super::words::duration(silent_s)
            );
            event.message = format!("{}：{}", event.words.title, event.words.reading);
            cleared.push(event);
        }
        let mine = |(d, _): &(Arc<str>, Arc<str>)| **d == **device;
        self.machines.retain(|k, _| !mine(k));
        self.nights.retain(|k, _| !mine(k));
        self.balances.retain(|k, _| !mine(k));
        self.steps.retain(|k, _| !mine(k));
        self.frozen.retain(|k, _| !mine(k));
        self.devices.remove(&**device);
        self.dirty = true;
        cleared
    }

    fn step(
        &mut self,
        device: &Arc<str>,
        index: usize,
        now: i64,
        evaluation: Evaluation,
    ) -> Option<AlarmEvent> {
        let rule = &self.rules[index];
        let machine = self
            .machines
            .entry((Arc::clone(device), Arc::clone(&rule.key)))
            .or_default();
        let transition = machine.step(now, evaluation.condition, &rule.timing)?;
        let (firing, raised) = match transition {
            Transition::Raised { raised } => (true, raised),
            Transition::Cleared { raised } => (false, raised),
        };
        let flapping = machine.flapping;
        Some(self.event(device, index, &evaluation, (firing, raised, flapping), now))
    }

    /// The event of a rule's transition: (firing, raised at, flapping).
    fn event(
        &self,
        device: &Arc<str>,
        index: usize,
        evaluation: &Evaluation,
        (firing, raised, flapping): (bool, i64, bool),
        now: i64,
    ) -> AlarmEvent {
        let rule = &self.rules[index];
        let empty = DeviceWords::default();
        let device_words = self.devices.get(&**device).map_or(&empty, |d| &*d.words);
        let words = super::words::words(&rule.config, evaluation, device_words, firing, raised);
        let message = format!("{}：{}", words.title, words.reading);
        AlarmEvent {
            id: format!("{device}/{}/{raised}", rule.key),
            rule: Arc::clone(&rule.key),
            device: Arc::clone(device),
            severity: rule.config.severity,
            firing,
            flapping,
            value: evaluation.value,
            limit: evaluation.limit,
            message,
            time_ns: now,
            words,
        }
    }

    /// Whether state changed that only a save keeps (then clears the flag).
    pub fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    /// Alarms raised now.
    pub fn active(&self) -> Vec<ActiveAlarm> {
        let mut active: Vec<ActiveAlarm> = self
            .machines
            .iter()
            .filter(|(_, m)| m.is_raised())
            .filter_map(|((device, rule), machine)| {
                let severity = self
                    .rules
                    .iter()
                    .find(|r| *r.key == **rule)?
                    .config
                    .severity;
                let raised_ns = machine.raised_at().unwrap_or(0);
                Some(ActiveAlarm {
                    device: device.to_string(),
                    rule: rule.to_string(),
                    severity,
                    raised_ns,
                    flapping: machine.flapping,
                })
            })
            .collect();
        active.sort_by(|a, b| (&a.device, &a.rule).cmp(&(&b.device, &b.rule)));
        active
    }

    /// Writes the machines to the state file (atomically: temp file, fsync, rename).
    pub fn save(&self) -> std::io::Result<()> {
        let Some(path) = &self.state_file else {
            return Ok(());
        };
        let state = SavedState {
            version: 1,
            machines: sorted(&self.machines, |m| *m != Machine::default())
                .into_iter()
                .map(|(device, rule, machine)| SavedMachine {
                    device,
                    rule,
                    machine,
                })
                .collect(),
            nights: saved(&self.nights),
            balances: saved(&self.balances),
            published: self
                .devices
                .values()
                .filter_map(|d| Some((d.id.to_string(), d.published.as_deref()?.to_string())))
                .collect(),
        };
        let text = serde_json::to_vec_pretty(&state).map_err(std::io::Error::other)?;
        write_atomically(path, &text, self.reserve.as_deref())
    }

    fn load(&mut self) {
        let Some(path) = &self.state_file else {
            return;
        };
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "Cannot read the alarm state; starting with no alarm raised");
                return;
            }
        };
        match serde_json::from_slice::<SavedState>(&bytes) {
            Ok(state) => {
                self.nights = restored(state.nights);
                self.balances = restored(state.balances);
                for (device, measurement) in state.published {
                    if !self.devices.contains_key(&device)
                        && !self.adopt(&device, &measurement, None)
                    {
                        tracing::info!(%device, %measurement, "No MQTT mapping writes this measurement any more; its alarms are forgotten");
                    }
                }
                self.dirty = false;
                for saved in state.machines {
                    let known = self.devices.get(&saved.device).is_some_and(|d| {
                        d.rules.iter().any(|i| *self.rules[*i].key == *saved.rule)
                    });
                    if known {
                        self.machines.insert(
                            (Arc::from(saved.device), Arc::from(saved.rule)),
                            saved.machine,
                        );
                    }
                }
            }
            Err(e) => tracing::error!(
                path = %path.display(),
                error = %e,
                "Alarm state file is damaged; starting with no alarm raised"
            ),
        }
    }
}

/// The silence after which a stale rule fires: its `after`, but never less than three poll
/// intervals (DOMAIN.md X1).
fn stale_after_ns(rule: &RuleConfig, interval_ns: i64) -> i64 {
    rule.after.map_or(0, nanos).max(3 * interval_ns)
}

/// Sum of the totaliser `fields` of a sample (split integer/fraction registers); `None` unless
/// every one is present.
fn total_of(sample: &Sample, fields: &[String]) -> Option<f64> {
    fields
        .iter()
        .map(|f| sample.field(f).and_then(|v| v.as_f64()))
        .sum()
}

/// Finds each water balance's sub-meters: the other devices of its `sub_measurement` with its
/// `sub_fields` (only `sub_devices` when named). A balance without a sub-meter is dropped from
/// its inflow device: it could only ever report a 100 % loss.
fn connect_balances(
    config: &LoadedConfig,
    rules: &[Rule],
    devices: &mut HashMap<String, DeviceContext>,
) {
    let balances: Vec<(Arc<str>, usize)> = devices
        .values()
        .flat_map(|d| {
            d.rules
                .iter()
                .filter(|i| rules[**i].config.kind == RuleKind::Balance)
                .map(|i| (Arc::clone(&d.id), *i))
        })
        .collect();
    if balances.is_empty() {
        return;
    }
    for device in &config.gateway.device {
        let (Some(profile), Some(context)) =
            (config.profile_of(device), devices.get_mut(&device.id))
        else {
            continue;
        };
        let feeds: Vec<(Arc<str>, usize)> = balances
            .iter()
            .filter(|(inflow, i)| {
                let rule = &rules[*i].config;
                **inflow != *device.id
                    && rule.sub_measurement.as_deref() == Some(profile.kind.as_str())
                    && (rule.sub_devices.is_empty() || rule.sub_devices.contains(&device.id))
                    && rule.sub_fields.iter().all(|f| profile.has_field(f))
            })
            .cloned()
            .collect();
        context.feeds = feeds.into();
    }
    for (inflow, index) in &balances {
        let fed = devices
            .values()
            .any(|d| d.feeds.iter().any(|(i, r)| i == inflow && r == index));
        if !fed {
            tracing::info!(device = %inflow, rule = %rules[*index].key, "Water balance has no sub-meter configured; not evaluated");
            if let Some(context) = devices.get_mut(&**inflow) {
                context.rules = context
                    .rules
                    .iter()
                    .copied()
                    .filter(|r| r != index)
                    .collect();
            }
        }
    }
}

/// Whether `rule` applies to a device of `measurement` whose profile has the fields `has`.
fn applies_to(
    rule: &RuleConfig,
    device: &str,
    measurement: &str,
    has: &dyn Fn(&str) -> bool,
    has_site: bool,
) -> bool {
    let named = rule.devices.is_empty() || rule.devices.iter().any(|d| d == device);
    let needs_site = matches!(
        rule.kind,
        RuleKind::TopFloor
            | RuleKind::FloorInlet
            | RuleKind::StaticPressure
            | RuleKind::MakeupRatio
    );
    named
        && rule.measurement == measurement
        && rule.reads().iter().all(|f| has(f))
        && (!needs_site || has_site)
}

pub(crate) fn write_atomically(
    path: &Path,
    bytes: &[u8],
    reserve: Option<&crate::buffer::reserve::Reserve>,
) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    crate::buffer::reserve::with_reserve(reserve, || {
        crate::buffer::disk::replace_file(&crate::buffer::disk::OsDisk, path, bytes)
    })
}

#[cfg(test)]
pub(crate) mod tests;
