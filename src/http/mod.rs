//! The local HTTP endpoint (default `127.0.0.1:9850`): `/health` (200, or 503 with the
//! reasons), `/metrics` (Prometheus text format), `/api/status` (JSON) and the status page, a
//! static page embedded in the binary that works offline on a phone in the pump room; the
//! KPIs: `/api/kpi` (today's figures so far, JSON), `/report` and `/report/{YYYY-MM}` (the
//! monthly report), and `POST /api/kpi/publish` (write today's figures so far as `kpi` lines).
//!
//! Everything shown is read from the running stages' shared state ([`Observed`]) and the KPI
//! files; the endpoint never blocks a stage. Nothing it does reaches a field device.

pub mod report;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use axum::extract::Path;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::{json, Value as Json};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::LoadedConfig;
use crate::health::Health;
use crate::kpi::store::KpiStore;
use crate::model::unix_nanos;
use crate::rules::stage::StageView;
use crate::sinks::influx::forwarder::SharedLog;
use crate::sources::modbus::status::StatusBoard;
use crate::sources::mqtt::IngestStats;

/// A configured (polled) device.
#[derive(Debug, Clone)]
pub struct DeviceInfo {
    pub id: String,
    pub bus: Option<String>,
    pub measurement: String,
}

/// The running gateway as the endpoint sees it.
pub struct Observed {
    pub gateway: String,
    pub site: String,
    pub started: Instant,
    pub buses: Vec<(String, String)>,
    pub devices: Vec<DeviceInfo>,
    pub status: Arc<StatusBoard>,
    pub view: Arc<StageView>,
    pub health: Vec<Arc<Health>>,
    pub mqtt: Option<Arc<IngestStats>>,
    /// The telemetry log and its `max_size` in bytes.
    pub log: Option<(SharedLog, u64)>,
    pub metrics: Option<PrometheusHandle>,
    /// The stored KPI days, and local time's offset (hours).
    pub kpi: (KpiStore, f64),
}

impl Observed {
    /// The configured buses and devices of `config`, with the stages' shared state still to
    /// be filled in by the caller.
    pub fn of(config: &LoadedConfig, status: Arc<StatusBoard>, view: Arc<StageView>) -> Observed {
        let gateway = &config.gateway;
        Observed {
            gateway: gateway.gateway.id.clone(),
            site: gateway.gateway.site.clone(),
            started: Instant::now(),
            buses: gateway
                .bus
                .iter()
                .map(|b| (b.id.clone(), b.transport.name().to_string()))
                .collect(),
            devices: gateway
                .device
                .iter()
                .map(|d| DeviceInfo {
                    id: d.id.clone(),
                    bus: Some(d.bus.clone()),
                    measurement: config
                        .profile_of(d)
                        .map(|p| p.kind.clone())
                        .unwrap_or_default(),
                })
                .collect(),
            status,
            view,
            health: Vec::new(),
            mqtt: None,
            log: None,
            metrics: None,
            kpi: (
                KpiStore::new(&gateway.gateway.data_dir),
                gateway.kpi.utc_offset_h,
            ),
        }
    }

    /// The telemetry log's size and backlog, or null without one.
    pub fn backlog(&self) -> Json {
        let Some((log, max_bytes)) = &self.log else {
            return Json::Null;
        };
        let now_ms = unix_nanos(SystemTime::now()) / 1_000_000;
        let backlog = log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .backlog(now_ms);
        json!({
            "bytes": backlog.bytes,
            "max_bytes": max_bytes,
            "pending_records": backlog.pending,
            "oldest_unsent_age_s": backlog.oldest_unsent.map(|age| age.as_secs_f64()),
        })
    }
}

/// Serves until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    observed: Arc<Observed>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/", get(page::index))
        .route("/app.js", get(page::script))
        .route("/style.css", get(page::style))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/api/status", get(status))
        .route("/api/kpi", get(kpi_today))
        .route("/api/kpi/publish", post(kpi_publish))
        .route("/report", get(this_month))
        .route("/report/{month}", get(month_report))
        .with_state(observed);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.changed().await;
        })
        .await
}

/// Binds `address` and serves in the background; a port that cannot be bound is logged and
/// the gateway runs on without the endpoint (collecting data matters more).
pub async fn start(
    address: SocketAddr,
    observed: Arc<Observed>,
    shutdown: watch::Receiver<bool>,
) -> Option<SocketAddr> {
    match TcpListener::bind(address).await {
        Ok(listener) => {
            let bound = listener.local_addr().ok();
            tracing::info!(address = ?bound, "Status page and API listening");
            tokio::spawn(async move {
                if let Err(e) = serve(listener, observed, shutdown).await {
                    tracing::error!(error = %e, "The HTTP endpoint stopped");
                }
            });
            bound
        }
        Err(e) => {
            tracing::error!(%address, error = %e, "Cannot listen for the status page and API; running without them");
            None
        }
    }
}

/// Starts the endpoint of a running gateway when the config enables it: what it shows comes
/// from the gateway, the rules stage and (when forwarding) the outputs. Returns the bound
/// address and the switch that stops it.
pub async fn start_for(
    config: &LoadedConfig,
    gateway: &crate::runtime::Gateway,
    alarms: &crate::runtime::Alarms,
    outputs: Option<&crate::runtime::Outputs>,
    metrics: Option<PrometheusHandle>,
) -> Option<(SocketAddr, watch::Sender<bool>)> {
    let http = &config.gateway.http;
    if !http.enabled {
        return None;
    }
    let address: SocketAddr = http.listen.parse().ok()?;
    let mut observed = Observed::of(
        config,
        Arc::clone(&gateway.status),
        Arc::clone(&alarms.view),
    );
    observed.health.push(Arc::clone(&gateway.health));
    observed.mqtt = gateway.mqtt.clone();
    observed.metrics = metrics;
    if let Some(outputs) = outputs {
        observed.health.push(Arc::clone(&outputs.health));
        observed.log = outputs
            .log
            .clone()
            .map(|log| (log, config.gateway.buffer.max_size_mb << 20));
    }
    let (stop, stopped) = watch::channel(false);
    let bound = start(address, Arc::new(observed), stopped).await?;
    Some((bound, stop))
}

/// Computes on a blocking thread: the backlog figures read the log.
async fn computed(observed: Arc<Observed>, f: fn(&Observed) -> Json) -> Json {
    tokio::task::spawn_blocking(move || f(&observed))
        .await
        .unwrap_or_else(|e| json!({ "error": e.to_string() }))
}

fn json_response(code: StatusCode, body: &Json) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}

async fn health(State(observed): State<Arc<Observed>>) -> Response {
    let (healthy, body) = report::health(&observed);
    let code = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json_response(code, &body)
}

async fn status(State(observed): State<Arc<Observed>>) -> Response {
    json_response(StatusCode::OK, &computed(observed, report::status).await)
}

async fn metrics(State(observed): State<Arc<Observed>>) -> Response {
    let Some(handle) = &observed.metrics else {
        return (StatusCode::NOT_FOUND, "no metrics recorder installed\n").into_response();
    };
    crate::metrics::publish_devices(&observed.status.snapshot(), &observed.view.active());
    handle.run_upkeep();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        handle.render(),
    )
        .into_response()
}

async fn kpi_today(State(observed): State<Arc<Observed>>) -> Response {
    json_response(StatusCode::OK, &json!(observed.view.kpi_today()))
}

async fn kpi_publish(State(observed): State<Arc<Observed>>) -> Response {
    observed.view.publish_kpi();
    json_response(StatusCode::ACCEPTED, &json!({ "requested": true }))
}

async fn this_month(State(observed): State<Arc<Observed>>) -> Response {
    let now = unix_nanos(SystemTime::now());
    let local_s = now / 1_000_000_000 + (observed.kpi.1 * 3600.0) as i64;
    let date = crate::calendar::date_of(local_s.div_euclid(86_400));
    month_report(State(observed), Path(date[..7].to_string())).await
}

/// The month's report from the stored days and today's figures as last saved.
async fn month_report(
    State(observed): State<Arc<Observed>>,
    Path(month): Path<String>,
) -> Response {
    let built = tokio::task::spawn_blocking(move || {
        let today = observed.view.kpi_today();
        let names = (observed.site.as_str(), observed.gateway.as_str());
        let report = crate::report::MonthReport::build(&observed.kpi.0, &month, &today, names)?;
        let now = unix_nanos(SystemTime::now());
        let generated = crate::calendar::local_time(now, (observed.kpi.1 * 3600.0) as i64);
        Ok::<_, crate::report::ReportError>(crate::report::html::render(&report, &generated))
    })
    .await;
    match built {
        Ok(Ok(page)) => {
            ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], page).into_response()
        }
        Ok(Err(e @ crate::report::ReportError::Month(_))) => {
            (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response()
        }
        Ok(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

/// The status page: static files compiled into the binary, no CDN.
mod page {
    use axum::http::header;
    use axum::response::IntoResponse;

    pub async fn index() -> impl IntoResponse {
        (
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            include_str!("page/index.html"),
        )
    }

    pub async fn script() -> impl IntoResponse {
        (
            [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
            include_str!("page/app.js"),
        )
    }

    pub async fn style() -> impl IntoResponse {
        (
            [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
            include_str!("page/style.css"),
        )
    }
}
