//! A one-device site for alarm delivery tests: a pump station whose fault word rule W13 watches,
//! samples that raise and clear it, and the pipeline started on such a config.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use retrofit_gateway::config::{load, EnvOverlay, LoadedConfig};
use retrofit_gateway::model::{Field, Sample, Value};
use retrofit_gateway::pipeline::{Options, Pipeline};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// A config with one booster-like device, rule W13 on its fault word, and `extra` TOML (alarm
/// destinations).
pub fn config(dir: &Path, extra: &str) -> LoadedConfig {
    std::fs::create_dir_all(dir.join("profiles")).expect("dir");
    std::fs::write(
        dir.join("profiles/pump.toml"),
        "kind = \"pump_station\"\n[[point]]\nname = \"fault_word\"\nfc = 3\naddress = 25\ntype = \"u16\"\n",
    )
    .expect("profile");
    std::fs::write(
        dir.join("rules.toml"),
        "[[rule]]\nid = \"W13\"\nkind = \"status_bits\"\nseverity = \"crit\"\ndescription = \"水泵或变频器故障\"\ntitle = \"水泵故障\"\naction = \"通知水泵维保单位到场检修。\"\nbit_names = [\"1号泵变频器故障\", \"2号泵变频器故障\", \"3号泵变频器故障\"]\nsource = \"[PRACTICE]\"\nmeasurement = \"pump_station\"\nfield = \"fault_word\"\nmask = 7\n",
    )
    .expect("rules");
    std::fs::write(
        dir.join("gateway.toml"),
        format!(
            "[gateway]\nid = \"shuocheng-xingfu-01\"\nsite = \"幸福小区\"\ndata_dir = {:?}\n\
             [[bus]]\nid = \"b\"\ntransport = \"tcp\"\naddress = \"127.0.0.1:1\"\n\
             [[device]]\nid = \"booster-1\"\nname = \"高区加压泵房\"\nbus = \"b\"\nunit = 1\nprofile = \"pump\"\ninterval = \"1s\"\n\
             [alarms]\nrule_packs = [\"rules.toml\"]\nincident_settle_crit = \"200ms\"\n{extra}",
            dir.join("data")
        ),
    )
    .expect("config");
    load(&dir.join("gateway.toml"), EnvOverlay::None).unwrap_or_else(|e| panic!("{e}"))
}

pub fn fault(word: i64, t: i64) -> Sample {
    Sample {
        measurement: Arc::from("pump_station"),
        device: Arc::from("booster-1"),
        tags: Vec::new().into(),
        fields: vec![Field {
            name: Arc::from("fault_word"),
            value: Value::Int(word),
        }],
        time_ns: 1_764_150_000_000_000_000 + t,
        receipt: retrofit_gateway::model::Receipt::none(),
    }
}

/// Starts the pipeline on `config` (its output a tap nobody reads), feeds `samples` to the
/// rules stage, waits until `done` says so.
pub async fn raise(config: &LoadedConfig, samples: &[Sample], done: impl Fn() -> bool) -> Pipeline {
    let (tap, mut outputs) = mpsc::channel(64);
    tokio::spawn(async move { while outputs.recv().await.is_some() {} });
    let options = Options {
        tap: Some(tap),
        ..Options::default()
    };
    let pipeline = Pipeline::start(config, options).expect("pipeline starts");
    let input = pipeline.input();
    for sample in samples {
        input.send(sample.clone()).await.expect("stage runs");
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    while !done() {
        assert!(Instant::now() < deadline, "webhooks not delivered in time");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    pipeline
}

/// Whether the outbox `name` under the config's data directory holds an alarm on disk.
pub fn outbox_holds_an_alarm(config: &LoadedConfig, name: &str) -> bool {
    let dir = config
        .gateway
        .gateway
        .data_dir
        .join("alarms")
        .join(format!("outbox-{name}"));
    std::fs::read_dir(dir)
        .map(|entries| {
            entries.filter_map(Result::ok).any(|e| {
                e.path().extension().is_some_and(|x| x == "seg")
                    && e.metadata().is_ok_and(|m| m.len() > 0)
            })
        })
        .unwrap_or(false)
}
