//! A stairwell of DL/T 645-2007 single-phase household meters on one RS-485 line behind a
//! transparent serial server: a TCP port that carries the raw frames (DOMAIN.md §3.2, RS485-4).
//!
//! Each meter answers reads of the identifiers it has: voltage and current of phase A, active
//! power, power factor, frequency, the energy totals and status word 1. A single-phase meter has
//! no phases B and C: reads of them get the error reply "no data" (0x02), as real meters do.
//! The voltage follows the LV feeder (`feeder-1`), a little lower per floor; the load follows
//! the residential load shape. Faults on a meter id: `silent`, `exception` (error replies),
//! `slow_replies`, `bad_checksum`, `garbled`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use meter_frames::dlt645::{self, Frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::server::{lock, SLOW_REPLY_DELAY};
use crate::world::{Behaviour, World};

/// One household meter: its id (for faults) and its 12-digit address.
#[derive(Debug, Clone)]
pub struct HouseholdMeter {
    pub id: String,
    pub address: [u8; 6],
    /// Floor of the flat (the voltage drops a little per floor up the riser).
    pub floor: u32,
}

/// `count` meters `meter-01` … at addresses 000000110101, 000000110201 … (building 11, unit 1,
/// one flat per floor).
pub fn stairwell(count: u32) -> Vec<HouseholdMeter> {
    (1..=count)
        .map(|floor| {
            let digits = format!("0000001101{floor:02}");
            let address = meter_frames::address_bytes(&digits, 6).unwrap_or([0; 6].to_vec());
            HouseholdMeter {
                id: format!("meter-{floor:02}"),
                address: address.try_into().unwrap_or([0; 6]),
                floor,
            }
        })
        .collect()
}

/// Error byte of DL/T 645 error replies: no such data.
pub const NO_DATA: u8 = 0x02;

/// The value a meter reports for `di`, or `None` when it has no such data.
pub fn value(world: &World, meter: &HouseholdMeter, di: u32) -> Option<f64> {
    let feeder = world.truth("feeder-1")?;
    let ua = feeder.get("ua_v").copied().unwrap_or(230.0) - 0.3 * f64::from(meter.floor);
    let ia = feeder.get("ia_a").copied().unwrap_or(300.0) / 120.0 + 0.05 * f64::from(meter.floor);
    let pf = 0.95;
    let p_kw = ua * ia * pf / 1000.0;
    Some(match di {
        0x0201_0100 => (ua * 10.0).round() / 10.0,
        0x0202_0100 => (ia * 1000.0).round() / 1000.0,
        0x0203_0000 => (p_kw * 10_000.0).round() / 10_000.0,
        0x0206_0000 => pf,
        0x0280_0002 => feeder.get("frequency_hz").copied().unwrap_or(50.0),
        0x0000_0000 | 0x0001_0000 => 8_000.0 + 100.0 * f64::from(meter.floor),
        0x0002_0000 => 0.0,
        0x0400_0501 => 0.0,
        _ => return None,
    })
}

/// The reply frame to a read of `di` (normal or error).
fn reply(world: &World, meter: &HouseholdMeter, di: u32) -> Frame {
    let format = dlt645::data_id(di);
    match (value(world, meter, di), format) {
        (Some(v), Some(format)) => {
            let scaled = (v.abs() * 10f64.powi(format.decimals)).round() as u64;
            let mut bcd = meter_frames::to_bcd_le(scaled, format.bytes);
            if format.signed && v < 0.0 {
                if let Some(top) = bcd.last_mut() {
                    *top |= 0x80;
                }
            }
            let mut data = di.to_le_bytes().to_vec();
            data.extend(bcd);
            Frame {
                address: meter.address,
                control: 0x91,
                data,
            }
        }
        _ => Frame {
            address: meter.address,
            control: 0xD1,
            data: vec![NO_DATA],
        },
    }
}

/// Serves the stairwell's meters on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, world: Arc<Mutex<World>>, meters: Arc<[HouseholdMeter]>) {
    while let Ok((stream, _)) = listener.accept().await {
        tokio::spawn(line(stream, Arc::clone(&world), Arc::clone(&meters)));
    }
}

/// One connection: requests in, replies out, one at a time as on the RS-485 line.
async fn line(mut stream: TcpStream, world: Arc<Mutex<World>>, meters: Arc<[HouseholdMeter]>) {
    let mut pending: Vec<u8> = Vec::new();
    let mut buffer = [0u8; 256];
    loop {
        let Ok(n) = stream.read(&mut buffer).await else {
            return;
        };
        if n == 0 {
            return;
        }
        pending.extend_from_slice(&buffer[..n]);
        while let Ok((request, used)) = dlt645::decode(&pending) {
            pending.drain(..used);
            let Some(meter) = meters.iter().find(|m| m.address == request.address) else {
                continue; // another meter's address: nobody answers
            };
            let Some(di) = request
                .data
                .first_chunk::<4>()
                .map(|d| u32::from_le_bytes(*d))
            else {
                continue;
            };
            if request.control != dlt645::READ {
                continue;
            }
            let (behaviour, frame) = {
                let world = lock(&world);
                let behaviour = world.behaviour(&meter.id);
                (behaviour, reply(&world, meter, di))
            };
            let bytes = match behaviour {
                Behaviour::Silent => continue,
                Behaviour::Exception => dlt645::encode(&Frame {
                    address: meter.address,
                    control: 0xD1,
                    data: vec![0x04],
                }),
                Behaviour::BadChecksum => {
                    let mut bytes = dlt645::encode(&frame);
                    let at = bytes.len() - 2;
                    bytes[at] = bytes[at].wrapping_add(1);
                    bytes
                }
                Behaviour::Garbled => vec![0x13, 0xA7, 0x00, 0xFF, 0x3C, 0x99, 0x41, 0x5E],
                Behaviour::Slow => {
                    tokio::time::sleep(SLOW_REPLY_DELAY).await;
                    dlt645::encode(&frame)
                }
                Behaviour::Normal => dlt645::encode(&frame),
            };
            // 2400 baud: about 4 ms per byte; the serial server passes the reply on as it comes.
            tokio::time::sleep(Duration::from_millis(20)).await;
            if stream.write_all(&bytes).await.is_err() {
                return;
            }
        }
        if pending.len() > 4096 {
            pending.clear();
        }
    }
}
