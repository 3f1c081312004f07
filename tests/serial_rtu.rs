//! Serial devices: the simulator serves a bus on one end of a pseudo-terminal pair, the gateway
//! opens the other end by its path, as it would /dev/ttyUSB0. Modbus RTU (the pump room) and
//! meters (the heating line's CJ/T 188 and M-Bus heat meters) are read this way.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use common::{collect_for, count_by_device, example_site, same_value, start_gateway};
use retrofit_gateway::config::{ConfigDuration, TransportKind};
use retrofit_gateway::sources::modbus::status::DeviceStatus;
use tokio_serial::{SerialPort, SerialStream};

/// Polls only `bus`, moved onto a serial port (its devices every `every` if given), until each
/// of `devices` reported, then for `window`; checks every value against the simulator's.
/// Returns the samples per device in the window and the status.
async fn poll_over_a_serial_port(
    bus: &str,
    every: Option<ConfigDuration>,
    devices: &[&str],
    window: Duration,
) -> (BTreeMap<Arc<str>, usize>, BTreeMap<String, DeviceStatus>) {
    let mut site = example_site().await;
    site.community.set_frozen(true);
    let (master, slave) = SerialStream::pair().expect("a pseudo-terminal pair");
    let path = slave.name().expect("the pty slave has a path");
    site.community.serve_serial(bus, master);

    let config = &mut site.config.gateway;
    config.bus.retain(|b| b.id == bus);
    config.device.retain(|d| d.bus == bus);
    for device in &mut config.device {
        device.interval = every.unwrap_or(device.interval);
    }
    let serial = &mut config.bus[0];
    serial.transport = TransportKind::Rtu;
    serial.address = None;
    serial.device = Some(PathBuf::from(&path));

    let (gateway, mut rx) = start_gateway(&site.config);
    common::until_each_device_reported(&mut rx, devices, Duration::from_secs(10)).await;
    let samples = collect_for(&mut rx, window).await;
    let status = gateway.status.snapshot();
    gateway.stop(Duration::from_secs(4)).await;
    // Keep the slave end open until the gateway is done, so the pty never hangs up under it.
    drop(slave);

    for sample in &samples {
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
    (count_by_device(&samples), status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polls_a_modbus_bus_over_a_serial_port() {
    let devices = ["booster-1", "break-tank"];
    let (counts, status) =
        poll_over_a_serial_port("pump-room", None, &devices, Duration::from_secs(4)).await;
    assert!(
        counts.get("booster-1").copied().unwrap_or(0) >= 3,
        "{counts:?} {status:?}"
    );
    assert!(
        counts.get("break-tank").copied().unwrap_or(0) >= 1,
        "{counts:?}"
    );
    assert_eq!(status["booster-1"].timeouts, 0, "{:?}", status["booster-1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polls_cjt188_and_mbus_meters_over_a_serial_port() {
    let devices = ["heat-01", "heat-10", "heat-primary"];
    let every = ConfigDuration::from_millis(2000);
    let (counts, status) =
        poll_over_a_serial_port("heat-meters", Some(every), &devices, Duration::from_secs(4)).await;
    for device in devices {
        assert!(counts.get(device).copied().unwrap_or(0) >= 1, "{counts:?}");
    }
    assert_eq!(status.len(), 11, "{status:?}");
    for (device, seen) in &status {
        assert!(seen.samples >= 2, "{device}: {seen:?}");
        assert_eq!(seen.timeouts + seen.link_errors, 0, "{device}: {seen:?}");
    }
}
