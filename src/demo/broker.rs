//! The demo's embedded MQTT broker (rumqttd, in the `demo` feature), so that `demo`
//! shows MQTT ingestion with no external service. It listens on a free loopback port and runs
//! on its own threads until the process ends.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use anyhow::Context as _;

/// Starts the broker; returns its address once it accepts connections.
pub fn start() -> anyhow::Result<SocketAddr> {
    let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .context("no free port for the demo broker")?;
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    // rumqttd's own configuration format (its sample rumqttd.toml, trimmed to one v4 listener).
    let text = format!(
        r#"id = 0
[router]
id = 0
max_connections = 100
max_outgoing_packet_count = 200
max_segment_size = 1048576
max_segment_count = 10

[v4.1]
name = "demo-v4"
listen = "{address}"
next_connection_delay_ms = 1
[v4.1.connections]
connection_timeout_ms = 60000
max_payload_size = 65536
max_inflight_count = 100
dynamic_filters = true
"#
    );
    let config: rumqttd::Config = config::Config::builder()
        .add_source(config::File::from_str(&text, config::FileFormat::Toml))
        .build()
        .and_then(config::Config::try_deserialize)
        .context("demo broker configuration")?;
    std::thread::Builder::new()
        .name("demo-broker".into())
        .spawn(move || {
            let mut broker = rumqttd::Broker::new(config);
            if let Err(e) = broker.start() {
                tracing::error!(error = %e, "The demo MQTT broker stopped");
            }
        })
        .context("cannot start the demo broker thread")?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(address).is_err() {
        if Instant::now() > deadline {
            anyhow::bail!("the demo MQTT broker did not start listening on {address}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(address)
}
