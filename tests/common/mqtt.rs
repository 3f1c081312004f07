//! An MQTT subscriber for tests: collects what a broker delivers on a topic filter.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};
use tokio::time::Instant;

pub type Received = Arc<Mutex<Vec<(String, serde_json::Value, bool)>>>;

pub fn unique(name: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("it-{name}-{}-{nanos}", std::process::id())
}

pub fn host_port(addr: &str) -> (String, u16) {
    let (host, port) = addr.rsplit_once(':').expect("host:port");
    (host.to_string(), port.parse().expect("a port"))
}

/// Subscribes to `filter` and collects (topic, payload, retain flag) until dropped.
pub async fn subscribe(addr: &str, filter: &str) -> (Received, tokio::task::JoinHandle<()>) {
    let (host, port) = host_port(addr);
    let (client, mut eventloop) = AsyncClient::new(MqttOptions::new(unique("sub"), host, port), 16);
    client
        .subscribe(filter, QoS::AtLeastOnce)
        .await
        .expect("subscribe queued");
    let received: Received = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&received);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, eventloop.poll()).await {
            Ok(Ok(Event::Incoming(Incoming::SubAck(_)))) => break,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("subscriber: {e}"),
            Err(_) => panic!("no SUBACK"),
        }
    }
    let task = tokio::spawn(async move {
        let _client = client;
        while let Ok(event) = eventloop.poll().await {
            if let Event::Incoming(Incoming::Publish(p)) = event {
                let json = serde_json::from_slice(&p.payload).unwrap_or(serde_json::Value::Null);
                sink.lock()
                    .expect("lock")
                    .push((p.topic.clone(), json, p.retain));
            }
        }
    });
    (received, task)
}
