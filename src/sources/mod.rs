//! Where samples come from. Each source turns field traffic into [`crate::model::Sample`]s and
//! sends them down a bounded channel; no source ever waits on the uplink.

pub mod meters;
pub mod modbus;
pub mod mqtt;
