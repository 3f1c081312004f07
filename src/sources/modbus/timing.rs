//! Serial-line timing: character time, the Modbus inter-frame silence (t3.5) and the wire time of
//! one read transaction, for the bus scheduler's gaps and for `plan`'s bus-time estimate.

use std::time::Duration;

use crate::config::{BusConfig, Parity, TransportKind};

use super::plan::ReadRequest;

/// Default line speed assumed for serial buses that do not state one.
pub const DEFAULT_BAUD: u32 = 9600;

/// Bits per character on the line: start + data + parity + stop.
fn bits_per_char(bus: &BusConfig) -> u32 {
    1 + u32::from(bus.data_bits) + u32::from(bus.parity != Parity::None) + u32::from(bus.stop_bits)
}

/// The serial line behind a bus, if any: its own (`rtu`), the serial server's (`rtu_over_tcp`),
/// or a Modbus TCP gateway's when a baud rate is configured.
pub fn serial_baud(bus: &BusConfig) -> Option<u32> {
    match bus.transport {
        TransportKind::Rtu | TransportKind::RtuOverTcp => Some(bus.baud.unwrap_or(DEFAULT_BAUD)),
        TransportKind::Tcp => bus.baud,
    }
}

fn char_time(bus: &BusConfig, baud: u32) -> Duration {
    Duration::from_secs_f64(f64::from(bits_per_char(bus)) / f64::from(baud))
}

/// Modbus inter-frame silence: 3.5 character times, fixed at 1.75 ms above 19 200 baud.
pub fn t3_5(bus: &BusConfig, baud: u32) -> Duration {
    if baud > 19_200 {
        Duration::from_micros(1750)
    } else {
        char_time(bus, baud).mul_f64(3.5)
    }
}

/// The silence the scheduler keeps between transactions on this bus.
pub fn inter_frame_gap(bus: &BusConfig) -> Duration {
    match (bus.inter_frame_gap, bus.transport) {
        (Some(gap), _) => gap.get(),
        (None, TransportKind::Tcp) => Duration::ZERO,
        (None, _) => t3_5(bus, serial_baud(bus).unwrap_or(DEFAULT_BAUD)),
    }
}

/// Wire time of one read on the serial line: request and reply frames plus a t3.5 after each.
/// Device turnaround and network latency are not included (they are not knowable here).
pub fn wire_time(bus: &BusConfig, baud: u32, request: &ReadRequest) -> Duration {
    // RTU request: unit, function, start (2), count (2), CRC (2).
    let request_bytes = 8u32;
    // Reply: unit, function, byte count, data, CRC (2).
    let data = if request.function.reads_bits() {
        u32::from(request.count).div_ceil(8)
    } else {
        2 * u32::from(request.count)
    };
    let reply_bytes = 5 + data;
    exchange_time(bus, baud, request_bytes + reply_bytes)
}

/// Wire time of a request and its reply, `bytes` together, plus a t3.5 after each.
pub fn exchange_time(bus: &BusConfig, baud: u32, bytes: u32) -> Duration {
    char_time(bus, baud) * bytes + t3_5(bus, baud) * 2
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Function;

    fn bus(baud: u32) -> BusConfig {
        BusConfig {
            id: "b".into(),
            transport: TransportKind::Rtu,
            address: None,
            device: Some("/dev/ttyUSB0".into()),
            baud: Some(baud),
            parity: Parity::None,
            data_bits: 8,
            stop_bits: 1,
            timeout: crate::config::ConfigDuration::from_millis(500),
            inter_frame_gap: None,
            max_gap: 8,
            max_registers: 125,
            max_backoff: crate::config::ConfigDuration::from_millis(60_000),
        }
    }

    #[test]
    fn t3_5_is_three_and_a_half_characters_up_to_19200_baud() {
        // 8N1: 10 bits; 35 bits at 9600 baud = 3.646 ms.
        let gap = t3_5(&bus(9600), 9600);
        // Duration keeps whole nanoseconds: compare to the microsecond.
        assert!((gap.as_secs_f64() - 35.0 / 9600.0).abs() < 1e-6);
        assert_eq!(t3_5(&bus(115_200), 115_200), Duration::from_micros(1750));
    }

    #[test]
    fn wire_time_counts_both_frames_and_gaps() {
        let request = ReadRequest {
            function: Function::ReadHoldingRegisters,
            start: 0,
            count: 10,
            points: vec![],
        };
        // 8 + 25 bytes × 10 bits at 9600 baud = 34.375 ms, plus 2 × 3.646 ms.
        let t = wire_time(&bus(9600), 9600, &request).as_secs_f64();
        assert!((t - (330.0 + 70.0) / 9600.0).abs() < 1e-6, "{t}");
    }
}
