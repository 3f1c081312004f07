//! retrofit-gateway: the edge daemon that watches the utility networks of renovated residential
//! communities. It polls pump stations, PRV stations, substations and heating substations over
//! Modbus, checks readings against the renovation plan's requirements and forwards time series.
//!
//! # Layout
//!
//! - [`config`]: typed config and device profiles, loaded with an environment overlay and
//!   validated fully at start (every error with its file and key path).
//! - [`model`]: [`model::Sample`] and [`model::Value`], the types that cross stage boundaries.
//! - [`sources::modbus`]: transports (TCP, RTU, RTU-over-TCP), the read planner, the register
//!   decoder and the bus scheduler (one task per bus, per-device backoff).
//! - [`sinks::influx`]: the InfluxDB line-protocol encoder; [`sinks::line_file`] writes lines to a
//!   file or standard output.
//! - [`rules`]: the plan's requirements as alarm rules, their state machine and engine.
//! - [`runtime`]: wires sources to sinks and shuts everything down on a signal.
//! - [`commands`]: `run`, `check-config` and `plan` as library functions.
//! - [`demo`] (feature `demo`, on by default): the simulated community and the gateway in one
//!   process, `demo-month`, the community replay and the embedded broker.
//! - [`backoff`]: jittered exponential backoff on the monotonic clock.
//! - [`secret`]: tokens, passwords and webhook URLs, read from files or the environment, never printed.
//! - [`metrics`]: metric names, published from the stages' counters.
//! - [`buffer`]: the durable segmented telemetry log (design, format and recovery rules inside).

pub mod backoff;
pub mod buffer;
pub mod calendar;
pub mod commands;
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
