//! Modbus RTU on a real serial device: the simulator serves the pump-room bus on one end of a
//! pseudo-terminal pair, the gateway opens the other end by its path, as it would /dev/ttyUSB0.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{collect_for, count_by_device, example_site, same_value, start_gateway};
use retrofit_gateway::config::TransportKind;
use tokio_serial::{SerialPort, SerialStream};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polls_a_bus_over_a_serial_port() {
    let mut site = example_site().await;
    site.community.set_frozen(true);
    let (master, slave) = SerialStream::pair().expect("a pseudo-terminal pair");
    let path = slave.name().expect("the pty slave has a path");
    site.community.serve_serial("pump-room", master);

    let config = &mut site.config.gateway;
    config.bus.retain(|b| b.id == "pump-room");
    config.device.retain(|d| d.bus == "pump-room");
    let bus = &mut config.bus[0];
    bus.transport = TransportKind::Rtu;
    bus.address = None;
    bus.device = Some(PathBuf::from(&path));

    let (gateway, mut rx) = start_gateway(&site.config);
    common::until_each_device_reported(
        &mut rx,
        &["booster-1", "break-tank"],
        Duration::from_secs(10),
    )
    .await;
    let window = collect_for(&mut rx, Duration::from_secs(4)).await;
    let status = gateway.status.snapshot();
    gateway.stop(Duration::from_secs(4)).await;
    // Keep the slave end open until the gateway is done, so the pty never hangs up under it.
    drop(slave);

    let counts = count_by_device(&window);
    assert!(
        counts.get("booster-1").copied().unwrap_or(0) >= 3,
        "{counts:?} {status:?}"
    );
    assert!(
        counts.get("break-tank").copied().unwrap_or(0) >= 1,
        "{counts:?}"
    );
    for sample in &window {
        let truth = site
            .community
            .truth(&sample.device)
            .expect("simulated device");
        for field in &sample.fields {
            let value = field.value.as_f64().expect("numeric");
            assert!(
                same_value(value, truth[&*field.name]),
                "{}.{}: {value} vs {}",
                sample.device,
                field.name,
                truth[&*field.name]
            );
        }
    }
    assert_eq!(status["booster-1"].timeouts, 0, "{:?}", status["booster-1"]);
}
