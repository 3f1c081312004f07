//! The renovation plan's requirements as alarms (DOMAIN.md §1, §2).
//!
//! Owns: evaluating a rule on a sample ([`condition`]), the alarm state
//! machine with hysteresis, hold times and flapping ([`machine`]), and the engine that applies the
//! rules to devices and keeps alarm state across restarts ([`engine`]). The pipeline's rules
//! stage runs the engine between the sources and the outputs.
//!
//! Rules that need history keep it in their own modules: bursts ([`step`]), frozen values
//! ([`frozen`]), minimum night flow ([`night_flow`]) and the water balance ([`balance`]); a
//! zone's flow measured by another device ([`zone_flow`]). An alarm's words for a person
//! ([`words`]), and the incidents that turn a storm of alarms into one message ([`incident`]).
//! How devices that publish are taken on, saved and forgotten ([`publishers`]).
//! Delivering alarms to people is `sinks::mqtt` and `sinks::webhook`.

pub mod balance;
pub mod condition;
pub mod engine;
pub mod frozen;
pub mod incident;
pub mod machine;
pub mod night_flow;
pub mod publishers;
pub mod step;
pub mod words;
pub mod zone_flow;
