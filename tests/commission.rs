//! Commissioning against the simulated community on loopback: `read` asks one device now and
//! shows each point's value (the simulator's own), unit and raw registers; refusals by name;
//! meters read as a poll reads them; a silent device and an unknown id said plainly.

mod common;

use common::{example_site, same_value};
use retrofit_gateway::commission::read;
use retrofit_sim::faults::{Fault, FaultKind};
use retrofit_sim::registers::Table;

/// The value shown on the line of `point`, parsed back.
fn shown(text: &str, point: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.trim_start().starts_with(&format!("{point} ")))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_shows_every_point_with_its_value_unit_and_registers() {
    let site = example_site().await;
    site.community.set_frozen(true);
    let truth = site.community.truth("booster-1").expect("simulated");
    let reading = read(&site.config, "booster-1", true).await.expect("reads");
    let text = &reading.text;
    assert!(reading.complete(), "{text}");
    assert!(text.contains("站号 1 功能码 3 起始 0"), "{text}");
    assert!(text.contains("原始回复："), "{text}");
    let profile = site
        .config
        .profile_of(&site.config.gateway.device[0])
        .expect("profile");
    for point in &profile.points {
        let value = shown(text, &point.name).unwrap_or_else(|| {
            // Booleans print as true/false.
            let line = text
                .lines()
                .find(|l| l.trim_start().starts_with(&format!("{} ", point.name)))
                .unwrap_or_else(|| panic!("no line for {}: {text}", point.name));
            f64::from(u8::from(line.contains("true")))
        });
        assert!(
            same_value(value, truth[&point.name]),
            "{}: shown {value}, simulator serves {}",
            point.name,
            truth[&point.name]
        );
    }
    // The unit and the registers a float came from (CDAB: low word first).
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("outlet_pressure_mpa "))
        .expect("outlet pressure");
    assert!(line.contains(" MPa"), "{line}");
    assert!(line.contains("寄存器 0 ["), "{line}");
    assert_eq!(
        line.split('[')
            .nth(1)
            .map(|r| r.trim_end_matches(']').split(' ').count()),
        Some(2),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_names_a_refusal_and_a_silent_device_and_does_not_call_them_complete() {
    let site = example_site().await;
    site.community
        .unmap("booster-1", Table::Holding, 0x0C..0x10);
    let refused = read(&site.config, "booster-1", false).await.expect("reads");
    assert!(!refused.complete());
    assert!(
        refused.text.contains("异常 02（非法数据地址"),
        "{}",
        refused.text
    );
    assert!(
        refused.text.contains("未读到：outlet_pressure_mpa"),
        "{}",
        refused.text
    );

    site.community
        .inject(Fault::on(FaultKind::Silent, "prv-outlet"));
    let silent = read(&site.config, "prv-outlet", false)
        .await
        .expect("reads");
    assert!(!silent.complete());
    assert!(silent.text.contains("通信失败"), "{}", silent.text);

    let unknown = read(&site.config, "booster-9", false).await;
    let message = unknown.err().expect("an unknown device").to_string();
    assert!(message.contains("booster-1"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_asks_a_meter_as_a_poll_does() {
    let site = example_site().await;
    site.community.set_frozen(true);
    for meter in ["meter-01", "heat-01", "water-01", "heat-primary"] {
        let truth = site.community.truth(meter).expect("simulated");
        let reading = read(&site.config, meter, false).await.expect("reads");
        assert!(reading.complete(), "{meter}: {}", reading.text);
        let device = site
            .config
            .gateway
            .device
            .iter()
            .find(|d| d.id == meter)
            .expect("configured");
        let profile = site.config.profile_of(device).expect("profile");
        for item in &profile.readings {
            let value = shown(&reading.text, &item.name)
                .unwrap_or_else(|| panic!("{meter}.{}: {}", item.name, reading.text));
            assert!(
                same_value(value, truth[&item.name]),
                "{meter}.{}: shown {value}, simulator serves {}",
                item.name,
                truth[&item.name]
            );
        }
    }
}

/// `check-config --connect`: every bus opened, every device read once, one line each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connecting_reads_every_device_once_and_marks_the_one_that_fails() {
    let site = example_site().await;
    let (text, all) = retrofit_gateway::commission::connect_all(&site.config).await;
    assert!(all, "{text}");
    for device in site.device_ids() {
        assert!(
            text.lines()
                .any(|l| l.trim_start().starts_with(&format!("✓ {device} "))),
            "{device}: {text}"
        );
    }
    for bus in &site.config.gateway.bus {
        assert!(text.contains(&format!("总线 {}：", bus.id)), "{text}");
    }

    site.community
        .inject(Fault::on(FaultKind::Silent, "heat-03"));
    let (text, all) = retrofit_gateway::commission::connect_all(&site.config).await;
    assert!(!all);
    let line = text
        .lines()
        .find(|l| l.contains("heat-03"))
        .expect("a line for heat-03");
    assert!(line.contains("✗") && line.contains("通信失败"), "{line}");
    assert_eq!(text.matches('✗').count(), 1, "{text}");
}

/// `scan`: on the substation's RS-485 line (behind a serial server) the units that answer are
/// exactly the configured ones; a configured unit that went silent is listed as such; a meter
/// line is refused with a reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_finds_the_units_that_answer_on_a_modbus_line() {
    use retrofit_gateway::commission::{parse_units, scan};
    let site = example_site().await;
    let units = parse_units("1-45").expect("units");
    let timeout = Some(std::time::Duration::from_millis(100));
    let found = scan(&site.config, "substation", &units, timeout)
        .await
        .expect("scans");
    let configured: Vec<u8> = site
        .config
        .gateway
        .device
        .iter()
        .filter(|d| d.bus == "substation")
        .filter_map(|d| d.unit.and_then(|u| u8::try_from(u).ok()))
        .collect();
    let mut expected = configured.clone();
    expected.sort_unstable();
    assert_eq!(found.answered, expected, "{}", found.text);
    assert!(found.text.contains("配置：tx1-meter"), "{}", found.text);

    site.community
        .inject(Fault::on(FaultKind::Silent, "tx2-temp"));
    let found = scan(&site.config, "substation", &units, timeout)
        .await
        .expect("scans");
    assert_eq!(found.answered.len(), expected.len() - 1, "{}", found.text);
    assert!(
        found
            .text
            .lines()
            .any(|l| l.contains("无应答") && l.contains("tx2-temp")),
        "{}",
        found.text
    );

    assert!(parse_units("0-3").is_err() && parse_units("9-2").is_err());
    assert_eq!(parse_units("1,3-4").expect("a list"), vec![1, 3, 4]);
}

/// `scan` on meter lines finds every meter's address with the standards' wildcard reads (the
/// CJ/T 188 heat meters share all but two bytes of their addresses, so the search narrows
/// twice) and the M-Bus meter at its primary address; a household meter that went silent is
/// listed as not found.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_finds_the_meters_on_a_meter_line_by_their_addresses() {
    use retrofit_gateway::commission::{parse_units, scan};
    let site = example_site().await;
    let timeout = Some(std::time::Duration::from_millis(100));
    let configured = |bus: &str| {
        let mut addresses: Vec<String> = site
            .config
            .gateway
            .device
            .iter()
            .filter(|d| d.bus == bus)
            .filter_map(|d| d.meter_address.clone())
            .collect();
        addresses.sort();
        addresses
    };
    let units = parse_units("1-3").expect("units");
    let found = scan(&site.config, "heat-meters", &units, timeout)
        .await
        .expect("scans");
    let mut meters = found.meters.clone();
    meters.sort();
    assert_eq!(meters, configured("heat-meters"), "{}", found.text);
    assert!(!found.text.contains("没有找到"), "{}", found.text);

    site.community
        .inject(Fault::on(FaultKind::Silent, "meter-04"));
    let found = scan(&site.config, "stairwell", &units, timeout)
        .await
        .expect("scans");
    let expected: Vec<String> = configured("stairwell")
        .into_iter()
        .filter(|a| a != "000000110104")
        .collect();
    let mut meters = found.meters.clone();
    meters.sort();
    assert_eq!(meters, expected, "{}", found.text);
    assert!(
        found
            .text
            .lines()
            .any(|l| l.contains("没有找到") && l.contains("meter-04")),
        "{}",
        found.text
    );

    // A line that cannot be opened ends the search at once, with the reason.
    let mut closed = site.config.clone();
    for bus in &mut closed.gateway.bus {
        if bus.id == "stairwell" {
            bus.address = Some("127.0.0.1:1".into());
        }
    }
    let refused = scan(&closed, "stairwell", &units, timeout).await;
    let message = refused.err().expect("no line").to_string();
    assert!(message.contains("打不开总线 stairwell"), "{message}");
}
