//! Meters behind a transparent serial server: a TCP port that carries the raw frames of one
//! RS-485 or M-Bus line (DOMAIN.md §3.2). A line may carry meters of any of the three
//! protocols; each request is answered by the meter it addresses, one at a time, as on the wire.
//!
//! - [`household`]: DL/T 645-2007 household meters of a stairwell.
//! - [`heat`]: CJ/T 188-2004 building heat meters and the M-Bus primary heat meter.
//! - [`water`]: CJ/T 188-2004 building water meters (the customer side of the water balance).
//!
//! Line faults on a meter id: `silent` (no reply), `exception` (the protocol's error reply; an
//! M-Bus meter has none and stays silent), `slow_replies`, `bad_checksum`, `garbled` (noise
//! without a start byte).
//!
//! Addresses may carry wildcards: a DL/T 645 or CJ/T 188 address byte `AA` matches any (the
//! abbreviated addressing both standards allow), so every meter it matches answers at once, and
//! on a shared line replies that overlap arrive damaged: when more than one meter answers, the
//! line carries the first reply with a broken checksum.

pub mod heat;
pub mod household;
pub mod water;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use meter_frames::{cjt188, dlt645};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::server::{lock, SLOW_REPLY_DELAY};
use crate::world::{Behaviour, World};

pub use heat::{building_meters, primary_meter, HeatMeter, HeatMeterAddress};
pub use household::{stairwell, HouseholdMeter, NO_DATA};
pub use water::{building_water_meters, WaterMeter};

/// Any simulated meter.
#[derive(Debug, Clone)]
pub enum SimMeter {
    Household(HouseholdMeter),
    Heat(HeatMeter),
    Water(WaterMeter),
}

impl SimMeter {
    pub fn id(&self) -> &str {
        match self {
            SimMeter::Household(m) => &m.id,
            SimMeter::Heat(m) => &m.id,
            SimMeter::Water(m) => &m.id,
        }
    }

    /// What the meter reports now, by the field names of the gateway's meter profiles: the
    /// DL/T 645 identifiers' names (`ua_v`, `import_energy_kwh`, `status_word_1` …) or the heat
    /// meter's items (`heat_kwh`, `supply_c`, `battery_low` …).
    pub fn truth(&self, world: &World) -> Option<BTreeMap<String, f64>> {
        match self {
            SimMeter::Household(meter) => Some(
                dlt645::DATA_IDS
                    .iter()
                    .filter_map(|id| {
                        let value = household::value(world, meter, id.di)?;
                        Some((id.name.to_string(), value))
                    })
                    .collect(),
            ),
            SimMeter::Heat(meter) => {
                let v = heat::values(world, meter)?;
                let fields = [
                    ("heat_kwh", v.heat_kwh),
                    ("power_kw", v.power_kw),
                    ("flow_m3h", v.flow_m3h),
                    ("volume_m3", v.volume_m3),
                    ("supply_c", v.supply_c),
                    ("return_c", v.return_c),
                    ("operating_h", v.operating_h),
                    ("battery_low", f64::from((v.status >> 2) & 1)),
                ];
                Some(named(&fields))
            }
            SimMeter::Water(meter) => {
                let (volume, status) = water::values(world, meter)?;
                let fields = [
                    ("total_m3", volume),
                    ("battery_low", f64::from((status >> 2) & 1)),
                ];
                Some(named(&fields))
            }
        }
    }

    /// The reply to `request` if it is addressed to this meter: the normal one, or the error
    /// reply when `refuse`. `None`: not for this meter, or a request it does not answer.
    fn answer(&self, world: &World, request: &Request, refuse: bool) -> Option<Vec<u8>> {
        match (self, request) {
            (SimMeter::Household(meter), Request::Dlt645 { address, di })
                if matches_wildcard(address, &meter.address) =>
            {
                let frame = if refuse {
                    household::refusal(meter)
                } else {
                    household::reply(world, meter, *di)
                };
                Some(dlt645::encode(&frame))
            }
            (
                SimMeter::Water(meter),
                Request::Cjt188 {
                    meter_type: cjt188::COLD_WATER_METER,
                    address,
                    ser,
                },
            ) if matches_wildcard(address, &meter.address) => {
                water::reply(world, meter, *ser, refuse)
            }
            (
                SimMeter::Heat(meter),
                Request::Cjt188 {
                    meter_type: cjt188::HEAT_METER,
                    address,
                    ser,
                },
            ) => {
                let HeatMeterAddress::Cjt188(own) = meter.address else {
                    return None;
                };
                if !matches_wildcard(address, &own) {
                    return None;
                }
                let values = heat::values(world, meter)?;
                Some(heat::cjt188_reply(&values, own, *ser, refuse))
            }
            (SimMeter::Heat(meter), Request::Mbus { address })
                if meter.address == HeatMeterAddress::Mbus(*address) && !refuse =>
            {
                let values = heat::values(world, meter)?;
                Some(heat::mbus_reply(&values, *address))
            }
            _ => None,
        }
    }
}

impl From<HouseholdMeter> for SimMeter {
    fn from(meter: HouseholdMeter) -> Self {
        SimMeter::Household(meter)
    }
}

impl From<WaterMeter> for SimMeter {
    fn from(meter: WaterMeter) -> Self {
        SimMeter::Water(meter)
    }
}

impl From<HeatMeter> for SimMeter {
    fn from(meter: HeatMeter) -> Self {
        SimMeter::Heat(meter)
    }
}

/// A request the simulated meters understand.
enum Request {
    /// DL/T 645 read of one identifier.
    Dlt645 { address: [u8; 6], di: u32 },
    /// CJ/T 188 read of the current data (901F) of a heat or water meter.
    Cjt188 {
        meter_type: u8,
        address: [u8; 7],
        ser: u8,
    },
    /// M-Bus REQ_UD2.
    Mbus { address: u8 },
    /// A whole frame the meters do not answer (another command or meter type).
    Other,
}

/// The first whole request in `pending` and the bytes it used, if there is one.
fn parse(pending: &[u8]) -> Option<(Request, usize)> {
    if let Ok((frame, used)) = dlt645::decode(pending) {
        let di = frame
            .data
            .first_chunk::<4>()
            .map(|d| u32::from_le_bytes(*d));
        return match (frame.control, di) {
            (dlt645::READ, Some(di)) => Some((
                Request::Dlt645 {
                    address: frame.address,
                    di,
                },
                used,
            )),
            _ => Some((Request::Other, used)),
        };
    }
    if let Ok((frame, used)) = cjt188::decode(pending) {
        let read = frame.control == 0x01
            && frame.data.get(..2) == Some(&cjt188::CURRENT_DATA.to_le_bytes()[..]);
        let ser = frame.data.get(2).copied().unwrap_or(0);
        return Some(match read {
            true => (
                Request::Cjt188 {
                    meter_type: frame.meter_type,
                    address: frame.address,
                    ser,
                },
                used,
            ),
            false => (Request::Other, used),
        });
    }
    // M-Bus short frame 10 5B A CS 16.
    let start = pending.iter().position(|b| *b == 0x10)?;
    match pending.get(start..start + 5)? {
        [0x10, c @ (0x5B | 0x7B), a, cs, 0x16] if c.wrapping_add(*a) == *cs => {
            Some((Request::Mbus { address: *a }, start + 5))
        }
        _ => None,
    }
}

/// Whether a requested address matches a meter's: byte by byte, `AA` matching any.
fn matches_wildcard(requested: &[u8], own: &[u8]) -> bool {
    requested.len() == own.len() && requested.iter().zip(own).all(|(r, o)| *r == 0xAA || r == o)
}

/// Field name → value pairs as a map.
fn named(fields: &[(&str, f64)]) -> BTreeMap<String, f64> {
    fields.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

/// Serves `meters` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, world: Arc<Mutex<World>>, meters: Arc<[SimMeter]>) {
    while let Ok((stream, _)) = listener.accept().await {
        tokio::spawn(line(stream, Arc::clone(&world), Arc::clone(&meters)));
    }
}

/// One connection (or a serial port): requests in, replies out, one at a time as on the line.
pub async fn line<S>(mut stream: S, world: Arc<Mutex<World>>, meters: Arc<[SimMeter]>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
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
        while let Some((request, used)) = parse(&pending) {
            pending.drain(..used);
            let mut answers: Vec<(Behaviour, Vec<u8>)> = {
                let world = lock(&world);
                meters
                    .iter()
                    .filter_map(|meter| {
                        let behaviour = world.behaviour(meter.id());
                        let refuse = behaviour == Behaviour::Exception;
                        Some((behaviour, meter.answer(&world, &request, refuse)?))
                    })
                    .filter(|(behaviour, _)| *behaviour != Behaviour::Silent)
                    .collect()
            };
            if answers.is_empty() {
                continue; // nobody has that address
            }
            let collided = answers.len() > 1;
            let (behaviour, mut bytes) = answers.swap_remove(0);
            if collided {
                // Replies on top of each other: what arrives fails its checksum.
                let at = bytes.len() - 2;
                bytes[at] = bytes[at].wrapping_add(1);
            }
            match behaviour {
                Behaviour::Silent => continue,
                Behaviour::BadChecksum => {
                    let at = bytes.len() - 2;
                    bytes[at] = bytes[at].wrapping_add(1);
                }
                Behaviour::Garbled => bytes = vec![0x13, 0xA7, 0x00, 0xFF, 0x3C, 0x99, 0x41, 0x5E],
                Behaviour::Slow => tokio::time::sleep(SLOW_REPLY_DELAY).await,
                Behaviour::Normal | Behaviour::Exception => {}
            }
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
