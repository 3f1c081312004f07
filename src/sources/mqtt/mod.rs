//! MQTT ingestion: devices that publish (4G DTUs polling meters themselves, battery gas RTUs,
//! valve-well and room sensors) become samples like any polled device, and go through the same
//! rules and outputs.
//!
//! One task owns the broker connection. It subscribes to every mapping's topic filter (QoS 1)
//! after every CONNACK, since a broker that lost the session has lost the subscriptions too.
//! Messages are taken one at a time: read, decoded and put into the bounded sample channel
//! (waiting while it is full, which stops reading from the socket). A message is acknowledged to
//! the broker only once its sample is stored by the last output (appended to the telemetry log):
//! each sample carries a [`Receipt`], and PUBACKs go out in the order the messages came, as
//! MQTT 3.1.1 requires. A sample refused or lost on the way makes the source reconnect without
//! acknowledging, so that the broker sends the unacknowledged messages again. With
//! `clean_session = false` the broker also keeps what arrives while the gateway is away. Connection
//! failures are retried with jittered exponential backoff (1 s → 60 s), counted in
//! `rgw_mqtt_source_connection_attempts_total`. A message no mapping can use is counted per
//! topic and logged at most once a minute per topic with an excerpt; so is a message for a
//! device id its mapping may not produce ([`identity`]), in `rgw_mqtt_source_refused_total`.

pub mod identity;
pub mod payload;
pub mod topic;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rumqttc::{
    AckMode, AsyncClient, Event, EventLoop, Incoming, ManualAck, MqttOptions, Publish, QoS,
};
use tokio::sync::{mpsc, watch, Notify};

use crate::backoff::Backoff;
use crate::config::{LoadedConfig, MqttMapping, MqttSourceConfig};
use crate::health::Health;
use crate::model::{unix_nanos, Receipt, Sample, Ticket};
use crate::mqtt::BrokerError;
use crate::mqtt::{connack, BROKER_TIMEOUT};
use identity::{DeviceIds, Gate, Refusal};

/// Largest packet accepted from the broker: above [`payload::MAX_PAYLOAD`], so that an
/// oversized message is read, counted and dropped instead of breaking the connection.
const MAX_INCOMING_PACKET: usize = 2 << 20;
/// Topics whose errors are counted one by one; beyond them only the metric counts.
const MAX_COUNTED_TOPICS: usize = 1000;
/// How often one topic's bad payloads are logged at most.
const LOG_EVERY: Duration = Duration::from_secs(60);

/// Counts of what the source received, shared with whoever reports on it.
#[derive(Debug, Default)]
pub struct IngestStats {
    inner: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    messages: u64,
    samples: u64,
    /// Per topic: messages with a problem, and when one was last logged.
    errors: HashMap<String, (u64, Option<Instant>)>,
    /// Messages whose device id the mapping may not produce.
    refused: u64,
    /// Messages larger than the client takes (each cost the broker's session once).
    oversized: u64,
    connection_attempts: u64,
    connections: u64,
}

impl IngestStats {
    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Messages with a problem received on `topic`.
    pub fn errors_on(&self, topic: &str) -> u64 {
        self.lock().errors.get(topic).map_or(0, |(n, _)| *n)
    }

    /// Messages received, samples produced, connection attempts and successful connections.
    pub fn totals(&self) -> (u64, u64, u64, u64) {
        let c = self.lock();
        (c.messages, c.samples, c.connection_attempts, c.connections)
    }

    /// Messages refused for their device id.
    pub fn refused(&self) -> u64 {
        self.lock().refused
    }

    /// Messages larger than the client takes.
    pub fn oversized(&self) -> u64 {
        self.lock().oversized
    }

    /// Counts a problem on `topic`; true when it should be logged now.
    fn problem(&self, topic: &str) -> bool {
        metrics::counter!("rgw_mqtt_source_payload_errors_total").increment(1);
        self.due(topic)
    }

    /// Counts a message refused for its device id; true when it should be logged now.
    fn refusal(&self, topic: &str, refusal: Refusal) -> bool {
        metrics::counter!("rgw_mqtt_source_refused_total", "reason" => refusal.reason())
            .increment(1);
        self.lock().refused += 1;
        self.due(topic)
    }

    /// Counts a message with a problem on `topic`; true when it is time to log one again.
    fn due(&self, topic: &str) -> bool {
        let mut c = self.lock();
        if !c.errors.contains_key(topic) && c.errors.len() >= MAX_COUNTED_TOPICS {
            // Counted in the metric only: a flood of topics must not grow memory.
            return false;
        }
        let (count, logged) = c.errors.entry(topic.to_string()).or_default();
        *count += 1;
        let due = logged.is_none_or(|at| at.elapsed() >= LOG_EVERY);
        if due {
            *logged = Some(Instant::now());
        }
        due
    }
}

/// A mapping with the tags its samples carry besides `device`.
struct Route {
    mapping: MqttMapping,
    tags: Vec<(String, String)>,
    ids: DeviceIds,
}

pub struct MqttSource {
    options: MqttOptions,
    routes: Vec<Route>,
    gate: Gate,
    samples: mpsc::Sender<Sample>,
    stats: Arc<IngestStats>,
    health: Arc<Health>,
}

enum Stop {
    Reconnect,
    Shutdown,
    /// The broker sent a packet of this many bytes, above [`MAX_INCOMING_PACKET`].
    Oversized(usize),
}

impl MqttSource {
    pub fn new(
        config: &LoadedConfig,
        source: &MqttSourceConfig,
        samples: mpsc::Sender<Sample>,
        stats: Arc<IngestStats>,
    ) -> Result<MqttSource, BrokerError> {
        let gateway = &config.gateway.gateway;
        let mut options = crate::mqtt::options(&source.broker(&gateway.id))?;
        options.set_clean_session(source.clean_session);
        options.set_ack_mode(AckMode::Manual);
        options.set_max_packet_size(MAX_INCOMING_PACKET, 256 << 10);
        let routes = source
            .mappings
            .iter()
            .map(|mapping| {
                let mut tags: Vec<(String, String)> = mapping
                    .tags
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                tags.push(("site".into(), gateway.site.clone()));
                tags.push(("gateway".into(), gateway.id.clone()));
                Route {
                    ids: DeviceIds::of(mapping),
                    mapping: mapping.clone(),
                    tags,
                }
            })
            .collect();
        Ok(MqttSource {
            options,
            routes,
            gate: Gate::new(config.gateway.device.iter().map(|d| d.id.clone())),
            samples,
            stats,
            health: Arc::new(Health::default()),
        })
    }

    /// Reports an unreachable broker (and its return) to `health` as `mqtt_source`.
    pub fn reporting_to(mut self, health: Arc<Health>) -> MqttSource {
        self.health = health;
        self
    }

    /// Connects, subscribes and ingests until `shutdown`.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        let mut drop_session = false;
        loop {
            metrics::counter!("rgw_mqtt_source_connection_attempts_total").increment(1);
            self.stats.lock().connection_attempts += 1;
            let mut options = self.options.clone();
            if std::mem::take(&mut drop_session) {
                options.set_clean_session(true);
            }
            let (client, mut eventloop) = AsyncClient::builder(options).capacity(64).build();
            let connected = tokio::select! {
                answer = tokio::time::timeout(BROKER_TIMEOUT, connack(&mut eventloop)) => answer,
                _ = shutdown.changed() => return,
            };
            let stop = match connected {
                Ok(Ok(())) => {
                    backoff.reset();
                    self.stats.lock().connections += 1;
                    self.health.clear("mqtt_source");
                    tracing::info!(broker = %crate::mqtt::host(&self.options), "MQTT source connected");
                    self.ingest(&client, &mut eventloop, &mut shutdown).await
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "MQTT source broker unreachable");
                    Stop::Reconnect
                }
                Err(_) => {
                    tracing::warn!("MQTT source broker did not answer CONNACK in time");
                    Stop::Reconnect
                }
            };
            match stop {
                Stop::Shutdown => {
                    let _ = client.try_disconnect();
                    return;
                }
                Stop::Oversized(bytes) => {
                    // The broker would hand the same message over at every reconnect of the
                    // kept session, for ever: connect once with a clean session, which drops
                    // it (with whatever else was queued for the gateway at that moment).
                    metrics::counter!("rgw_mqtt_source_oversized_total").increment(1);
                    self.stats.lock().oversized += 1;
                    tracing::error!(
                        bytes,
                        limit = MAX_INCOMING_PACKET,
                        "An MQTT message larger than the gateway takes; dropping the broker's session once to get past it (messages queued with it are lost; limit the size at the broker: mosquitto message_size_limit)"
                    );
                    drop_session = true;
                    continue;
                }
                Stop::Reconnect => {}
            }
            self.health.set(
                "mqtt_source",
                format!(
                    "MQTT broker {} out of reach; devices that publish are not heard",
                    crate::mqtt::address(&self.options)
                ),
            );
            let delay = backoff.next_delay();
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    /// Subscribes, then turns messages into samples until the connection fails or shutdown.
    async fn ingest(
        &self,
        client: &AsyncClient,
        eventloop: &mut EventLoop,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Stop {
        for route in &self.routes {
            if let Err(e) = client.try_subscribe(route.mapping.topic.clone(), QoS::AtLeastOnce) {
                tracing::warn!(error = %e, topic = %route.mapping.topic, "Cannot queue an MQTT subscription");
                return Stop::Reconnect;
            }
        }
        let stored = Arc::new(Notify::new());
        let mut unacked = Unacked::default();
        loop {
            let polled = tokio::select! {
                polled = eventloop.poll() => polled,
                _ = stored.notified() => {
                    match unacked.acknowledge(client) {
                        Ok(()) => continue,
                        Err(stop) => return stop,
                    }
                }
                _ = shutdown.changed() => return farewell(client, eventloop, &mut unacked).await,
            };
            match polled {
                Ok(Event::Incoming(Incoming::Publish(publish))) => {
                    let accepted = tokio::select! {
                        accepted = self.accept(&publish, &stored) => accepted,
                        _ = shutdown.changed() => return farewell(client, eventloop, &mut unacked).await,
                    };
                    let Ok(ticket) = accepted else {
                        return farewell(client, eventloop, &mut unacked).await;
                    };
                    unacked
                        .queue
                        .push_back((ticket, client.prepare_ack(&publish)));
                    if let Err(stop) = unacked.acknowledge(client) {
                        return stop;
                    }
                }
                Ok(Event::Incoming(Incoming::SubAck(ack))) => {
                    if ack
                        .return_codes
                        .iter()
                        .any(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure))
                    {
                        tracing::error!(
                            "The MQTT broker refused a subscription (check its ACL for this user)"
                        );
                    }
                }
                Ok(_) => {}
                Err(rumqttc::ConnectionError::MqttState(rumqttc::StateError::Deserialization(
                    rumqttc::Error::PayloadSizeLimitExceeded(bytes),
                ))) => return Stop::Oversized(bytes),
                Err(e) => {
                    tracing::warn!(error = %e, "MQTT source connection lost");
                    return Stop::Reconnect;
                }
            }
        }
    }

    /// Turns a message into a sample and sends it on, with a receipt whose ticket is returned
    /// (none for a message that gave no sample); `Err` when the channel has closed.
    async fn accept(
        &self,
        publish: &Publish,
        stored: &Arc<Notify>,
    ) -> Result<Option<Arc<Ticket>>, Closed> {
        let arrival = unix_nanos(std::time::SystemTime::now());
        self.stats.lock().messages += 1;
        metrics::counter!("rgw_mqtt_source_messages_total").increment(1);
        let Ok(topic) = std::str::from_utf8(&publish.topic) else {
            let topic = String::from_utf8_lossy(&publish.topic);
            if self.stats.problem(&topic) {
                tracing::warn!(%topic, "MQTT message on a topic that is not UTF-8");
            }
            return Ok(None);
        };
        let Some(route) = self
            .routes
            .iter()
            .find(|r| topic::matches(&r.mapping.topic, topic))
        else {
            if self.stats.problem(topic) {
                tracing::warn!(topic, "MQTT message on a topic no mapping covers");
            }
            return Ok(None);
        };
        match payload::decode(
            &route.mapping,
            &route.tags,
            topic,
            &publish.payload,
            arrival,
        ) {
            Ok(decoded) => {
                if let Err(refusal) = self.gate.check(&route.ids, &decoded.sample.device) {
                    if self.stats.refusal(topic, refusal) {
                        tracing::warn!(
                            topic,
                            device = %payload::excerpt(decoded.sample.device.as_bytes(), 80),
                            reason = refusal.reason(),
                            "MQTT message refused: its mapping may not speak for this device (logged at most once a minute per topic)"
                        );
                    }
                    return Ok(None);
                }
                if !decoded.problems.is_empty() && self.stats.problem(topic) {
                    tracing::warn!(
                        topic,
                        problems = %decoded.problems.join("; "),
                        excerpt = %payload::excerpt(&publish.payload, 200),
                        "MQTT payload partly unusable (logged at most once a minute per topic)"
                    );
                }
                self.stats.lock().samples += 1;
                let mut sample = decoded.sample;
                let (receipt, ticket) = Receipt::issue(stored);
                sample.receipt = receipt;
                match self.samples.send(sample).await {
                    Ok(()) => Ok(Some(ticket)),
                    Err(_) => Err(Closed),
                }
            }
            Err(e) => {
                if self.stats.problem(topic) {
                    tracing::warn!(
                        topic,
                        error = %e,
                        excerpt = %payload::excerpt(&publish.payload, 200),
                        "MQTT payload dropped (logged at most once a minute per topic)"
                    );
                }
                Ok(None)
            }
        }
    }
}

/// The sample channel has closed (shutdown).
struct Closed;

/// Leaving on shutdown: acknowledges what is stored, then disconnects, driving the connection
/// (up to a second) until the acknowledgements and the DISCONNECT are sent; without that the
/// broker would send stored messages again after the restart.
async fn farewell(client: &AsyncClient, eventloop: &mut EventLoop, unacked: &mut Unacked) -> Stop {
    let _ = unacked.acknowledge(client);
    if client.try_disconnect().is_ok() {
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
    }
    Stop::Shutdown
}

/// Messages received and not yet acknowledged, in the order they came, with the ticket of their
/// sample (none for a message that gave no sample: acknowledged in its turn).
#[derive(Default)]
struct Unacked {
    queue: VecDeque<(Option<Arc<Ticket>>, Option<ManualAck>)>,
}

impl Unacked {
    /// Acknowledges the messages at the front whose samples are stored. A sample that was lost
    /// on the way means reconnecting: the broker then sends every unacknowledged message again.
    fn acknowledge(&mut self, client: &AsyncClient) -> Result<(), Stop> {
        while let Some((ticket, _)) = self.queue.front() {
            match ticket.as_ref().map(|t| t.outcome()) {
                None | Some(Some(true)) => {}
                Some(None) => return Ok(()),
                Some(Some(false)) => {
                    tracing::warn!(
                        waiting = self.queue.len(),
                        "A published reading was not stored; reconnecting so that the broker sends the unacknowledged messages again"
                    );
                    return Err(Stop::Reconnect);
                }
            }
            if let Some((_, Some(ack))) = self.queue.pop_front() {
                if let Err(e) = client.try_manual_ack(ack) {
                    tracing::warn!(error = %e, "Cannot queue an MQTT acknowledgement; the broker will send the message again");
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_is_counted_and_each_topic_is_logged_once_a_minute() {
        let stats = IngestStats::default();
        assert!(stats.problem("a/1"), "the first is logged");
        assert!(!stats.problem("a/1"), "the next within a minute is not");
        assert!(stats.problem("a/2"), "another topic has its own minute");
        assert_eq!((stats.errors_on("a/1"), stats.errors_on("a/2")), (2, 1));
        // A flood of new topics stops growing the table at its bound.
        for n in 0..MAX_COUNTED_TOPICS + 10 {
            stats.problem(&format!("flood/{n}"));
        }
        assert_eq!(stats.lock().errors.len(), MAX_COUNTED_TOPICS);
    }
}
