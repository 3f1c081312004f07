//! The floor the gateway is measured against: the least a program can do for the same job. One
//! current-thread runtime, one connection, every unit read once a second (60 registers in one
//! request), the 40 fields decoded and appended as line protocol to a buffered file. No rules,
//! no durable log, no retries, no status page.
//!
//!     floor-poller --port 16100 --units 100 --seconds 60 --out lines.txt
//!
//! Prints the polls it made when the time is up.

use std::io::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use retrofit_bench::{decode, number_arg, REGISTERS};
use tokio_modbus::prelude::*;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let port = u16::try_from(number_arg(&args, "--port", 16100)?)?;
    let units = u8::try_from(number_arg(&args, "--units", 100)?.min(247))?;
    let seconds = number_arg(&args, "--seconds", 60)?;
    let out = arg(&args, "--out").unwrap_or_else(|| "/dev/null".into());
    let mut file = std::io::BufWriter::new(std::fs::File::create(out)?);
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut ctx = tcp::connect_slave(address, Slave(1)).await?;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let end = tokio::time::Instant::now() + Duration::from_secs(seconds);
    let (mut polls, mut failed) = (0u64, 0u64);
    let mut fields = Vec::with_capacity(40);
    let mut line = String::with_capacity(2048);
    while tokio::time::Instant::now() < end {
        tick.tick().await;
        for unit in 1..=units {
            ctx.set_slave(Slave(unit));
            let words = match ctx.read_holding_registers(0, REGISTERS).await {
                Ok(Ok(words)) => words,
                _ => {
                    failed += 1;
                    continue;
                }
            };
            let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos();
            fields.clear();
            decode(&words, &mut fields);
            line.clear();
            line.push_str("power_meter,device=meter-");
            line.push_str(&unit.to_string());
            for (i, (name, value)) in fields.iter().enumerate() {
                line.push(if i == 0 { ' ' } else { ',' });
                line.push_str(name);
                line.push('=');
                line.push_str(&value.to_string());
            }
            line.push(' ');
            line.push_str(&now.to_string());
            line.push('\n');
            file.write_all(line.as_bytes())?;
            polls += 1;
        }
        file.flush()?;
    }
    println!("floor-poller: {polls} polls, {failed} failed");
    Ok(())
}
