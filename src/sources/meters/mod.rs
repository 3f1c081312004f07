//! Meters that speak DL/T 645-2007, CJ/T 188-2004 or M-Bus: the frame codecs (the
//! `meter-frames` crate, shared with the simulators) and one request–reply transaction over a
//! serial line or a transparent serial server ([`link`]); finding the meters on a line
//! ([`search`], for `scan`).

pub mod bus;
pub mod link;
pub mod search;

pub use meter_frames::{cjt188, dlt645, mbus, FrameError};

use crate::config::{MeterType, Profile, WireProtocol};

/// The bytes on the wire (request and reply, wake-up preambles included) of each transaction
/// of one poll of a meter with `profile`, for `plan`'s line-time estimate. An M-Bus reply is
/// taken as the header and 6 bytes per reading (its real length is the meter's choice).
pub fn exchange_bytes(profile: &Profile) -> Vec<u32> {
    match profile.protocol {
        WireProtocol::Modbus => Vec::new(),
        // FE×4 68 A×6 68 C L DI×4 CS 16 out; the same with the value back.
        WireProtocol::Dlt645 => profile
            .readings
            .iter()
            .filter_map(|r| dlt645::data_id(r.di?))
            .map(|id| 20 + 20 + id.bytes as u32)
            .collect(),
        // FE×2 68 T A×7 C L DI×2 SER CS 16 out; the current data back.
        WireProtocol::Cjt188 => {
            let data = match profile.meter_type {
                Some(MeterType::Water) => 22,
                _ => 46,
            };
            vec![18 + 15 + data]
        }
        // 10 5B A CS 16 out; 68 L L 68 C A CI, 12-byte header, records, CS 16 back.
        WireProtocol::Mbus => vec![5 + 9 + 12 + 6 * profile.readings.len() as u32 + 2],
    }
}
