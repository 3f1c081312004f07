//! Meters that speak DL/T 645-2007, CJ/T 188-2004 or M-Bus: the frame codecs (the
//! `meter-frames` crate, shared with the simulators) and one request–reply transaction over a
//! serial line or a transparent serial server ([`link`]).

pub mod bus;
pub mod link;

pub use meter_frames::{cjt188, dlt645, mbus, FrameError};
