//! Finding the meters on a line, for `scan` on a meter bus.
//!
//! DL/T 645-2007 and CJ/T 188-2004 both let a request carry `AA` for any address byte (the
//! abbreviated addressing of their address fields), and every meter the address matches
//! answers. So the search asks with every byte a wildcard first: nobody answering means no
//! meter, one clean reply names the one meter (its address is in the reply), and a damaged
//! reply means several answered on top of each other, so the lowest unknown byte is fixed to
//! each of its 100 BCD values in turn and each narrower address asked again. A line of `n`
//! meters whose addresses differ in the last byte costs about `1 + 100` requests, most of them
//! unanswered, each waiting the bus's timeout.
//!
//! M-Bus has no wildcard read: each primary address 1–250 is asked with REQ_UD2; a damaged
//! reply means two meters share that address.

use super::bus::{Failure, MeterBus};
use super::link::Decoder;
use super::{cjt188, dlt645, mbus};

/// What one request found.
enum Probe {
    Nobody,
    /// One meter answered, with its address bytes.
    One(Vec<u8>),
    /// Several answered at once: a damaged reply.
    Several,
    /// One refused (an error reply) without saying who.
    Refused,
}

/// What a search found: the meters' addresses as the config writes them, and the addresses
/// at which meters collide (two meters with one address).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Found {
    pub meters: Vec<String>,
    pub collisions: Vec<String>,
    /// Requests sent.
    pub requests: u32,
}

/// An address written as the config writes it: decimal digits, most significant first.
fn digits(bytes: &[u8]) -> String {
    bytes.iter().rev().map(|b| format!("{b:02X}")).collect()
}

async fn probe<T>(
    line: &mut MeterBus,
    request: &[u8],
    decode: Decoder<T>,
    address_of: fn(&T) -> Vec<u8>,
) -> Result<Probe, String> {
    match line.exchange(request, decode).await {
        Ok(frame) => Ok(Probe::One(address_of(&frame))),
        Err(Failure::Refused(_)) => Ok(Probe::Refused),
        Err(Failure::Link(failure)) if failure.timeout => Ok(Probe::Nobody),
        Err(Failure::Link(failure)) if line.unreachable() => Err(failure.reason),
        Err(Failure::Link(_)) => Ok(Probe::Several),
    }
}

/// The wildcard search over `len`-byte addresses, `ask` turning an address into a request.
async fn wildcard_search<T>(
    line: &mut MeterBus,
    len: usize,
    ask: impl Fn(&[u8]) -> Vec<u8>,
    decode: Decoder<T>,
    address_of: fn(&T) -> Vec<u8>,
) -> Result<Found, String> {
    let mut found = Found::default();
    // Known low bytes; the rest are wildcards.
    let mut pending: Vec<Vec<u8>> = vec![Vec::new()];
    while let Some(known) = pending.pop() {
        let mut address = known.clone();
        address.resize(len, 0xAA);
        found.requests += 1;
        match probe(line, &ask(&address), decode, address_of).await? {
            Probe::Nobody => {}
            Probe::One(address) => found.meters.push(digits(&address)),
            Probe::Refused if known.len() == len => found.meters.push(digits(&known)),
            Probe::Several if known.len() == len => found.collisions.push(digits(&known)),
            Probe::Several | Probe::Refused => {
                for value in (0..100u8).rev() {
                    let mut narrower = known.clone();
                    narrower.push((value / 10) << 4 | (value % 10));
                    pending.push(narrower);
                }
            }
        }
    }
    found.meters.sort();
    found.meters.dedup();
    Ok(found)
}

/// The DL/T 645 meters on the line (each asked for its total active energy, 00010000).
pub async fn dlt645(line: &mut MeterBus) -> Result<Found, String> {
    let ask = |address: &[u8]| {
        let address: [u8; 6] = address.try_into().unwrap_or([0xAA; 6]);
        dlt645::read_request(address, 0x0001_0000)
    };
    wildcard_search(line, 6, ask, dlt645::decode, |f: &dlt645::Frame| {
        f.address.to_vec()
    })
    .await
}

/// The CJ/T 188 meters of `meter_type` (heat or cold water) on the line.
pub async fn cjt188(line: &mut MeterBus, meter_type: u8) -> Result<Found, String> {
    let ask = move |address: &[u8]| {
        let address: [u8; 7] = address.try_into().unwrap_or([0xAA; 7]);
        cjt188::read_request(meter_type, address, 0)
    };
    wildcard_search(line, 7, ask, cjt188::decode, |f: &cjt188::Frame| {
        f.address.to_vec()
    })
    .await
}

/// The M-Bus meters at the primary addresses `addresses` (1–250).
pub async fn mbus(line: &mut MeterBus, addresses: &[u8]) -> Result<Found, String> {
    let mut found = Found::default();
    for &address in addresses {
        found.requests += 1;
        match probe(
            line,
            &mbus::req_ud2(address),
            mbus::decode,
            |r: &mbus::Response| vec![r.address],
        )
        .await?
        {
            Probe::Nobody => {}
            Probe::One(_) | Probe::Refused => found.meters.push(address.to_string()),
            Probe::Several => found.collisions.push(address.to_string()),
        }
    }
    Ok(found)
}
