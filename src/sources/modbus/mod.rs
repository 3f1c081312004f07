//! Modbus acquisition: from a device profile to samples.
//!
//! - [`plan`]: which reads a poll cycle issues (coalescing within protocol limits).
//! - [`adapt`]: what a device's exception 2 teaches the plan (registers to avoid, points to skip).
//! - [`decode`]: raw registers to engineering values.
//! - [`link`]: transports (Modbus TCP, RTU on a serial port, RTU over TCP) with a timeout on
//!   every request and a rebuilt connection after any failure.
//! - [`bus`]: the scheduler, one task per bus, with per-device backoff.
//! - [`timing`]: serial character times and bus-time estimates.
//! - [`status`]: per-device communication state and counters.
//!
//! The gateway is read-only toward field devices: only function codes 1–4 are ever sent.

pub mod adapt;
pub mod bus;
pub mod decode;
pub mod link;
pub mod plan;
pub mod status;
pub mod timing;
