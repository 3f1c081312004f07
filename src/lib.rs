//! retrofit-gateway: the edge daemon that watches the utility networks of renovated residential
//! communities. It polls pump stations, PRV stations, substations and heating substations over
//! Modbus, checks readings against the renovation plan's requirements and forwards time series.
//!
//! # Layout
//!
//! The [`pipeline`] builds every stage and owns their shutdown; data flows one way through it.
//! In stage order:
//!
//! - [`sources`]: acquisition. The bus scheduler (one task per bus, per-device backoff), Modbus
//!   TCP/RTU/RTU-over-TCP (read planner, decoder, device status), DL/T 645, CJ/T 188 and M-Bus
//!   meter lines, and the MQTT source.
//! - [`rules`]: the plan's requirements as alarm rules, their state machine and engine; run by the
//!   pipeline's rules stage, which also feeds [`kpi`], the compliance figures.
//! - [`sinks`]: the telemetry-log stage, the InfluxDB forwarder, the line-protocol file, and alarm
//!   delivery to webhooks and MQTT; [`buffer`] is the durable segmented log and the alarm
//!   outboxes underneath (design, format and recovery rules inside).
//!
//! Fed by the pipeline, importing no stage above them: [`selfmon`] (the `gateway` measurement),
//! [`metrics`] (names and counters), [`health`] (current problems); read from
//! [`pipeline::observed`]: [`http`] (status page, API, `/metrics`) and [`report`] (the monthly
//! report).
//!
//! The commands: [`commands`] (`run`, `check-config`, `plan`, `report`), [`commission`] (`read`:
//! one device asked now, for the installer), [`daemon`] (`run` as a
//! service: signals, reload, watchdog, with [`systemd`]'s notify protocol, and the start-up-only
//! code handed back to the kernel once the pipeline runs), and `demo` (feature
//! `demo`, on by default: the simulated community, `demo-month`, the replay, the embedded broker).
//!
//! Underneath everything: [`config`] (typed config, profiles and rule packs, validated fully at
//! start), [`model`] ([`model::Sample`] and what crosses stage boundaries), [`line_protocol`],
//! [`mqtt`] (what both MQTT clients share), [`secret`], [`backoff`], [`calendar`].
//! `scripts/module-cycles.py` checks that these modules import each other in layers, never in a
//! circle.

pub mod backoff;
pub mod buffer;
pub mod calendar;
pub mod commands;
pub mod commission;
pub mod config;
pub mod daemon;
#[cfg(feature = "demo")]
pub mod demo;
pub mod health;
pub mod http;
pub mod kpi;
pub mod line_protocol;
pub mod metrics;
pub mod model;
pub mod mqtt;
pub mod pipeline;
pub mod report;
pub mod rules;
pub mod secret;
pub mod selfmon;
pub mod sinks;
pub mod sources;
pub mod systemd;
