//! The local HTTP endpoint (default `127.0.0.1:9850`): `/health` (200, or 503 with the
//! reasons), `/metrics` (Prometheus text format), `/api/status` (JSON) and the status page, a
//! static page embedded in the binary that works offline on a phone in the pump room; the
//! KPIs: `/api/kpi` (today's figures so far, JSON), `/report` and `/report/{YYYY-MM}` (the
//! monthly report), and `POST /api/kpi/publish` (write today's figures so far as `kpi` lines).
//!
//! Everything shown is read from the running pipeline's shared state ([`Observed`]) and the KPI
//! files; the endpoint never blocks a stage. Nothing it does reaches a field device.
//!
//! The LAN is not trusted ([`guard`]: `Host` and `Origin` checks, a header on every write).
//! At most [`MAX_CONNECTIONS`] connections are held at once ([`slots`]: a new one takes the
//! slot of the oldest idle one), so that a flood of idle sockets cannot take the file
//! descriptors the pollers, the log and the uplink need; a request's header must arrive within
//! [`HEADER_READ_TIMEOUT`] and a connection lasts at most [`CONNECTION_LIFETIME`].

pub mod guard;
pub mod report;
pub mod slots;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::Path;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value as Json};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::LoadedConfig;
use crate::model::unix_nanos;
use crate::pipeline::observed::Observed;

/// Connections served at once: a phone or two, Prometheus, an installer's laptop.
pub const MAX_CONNECTIONS: usize = 32;
/// A request's header must arrive within this (a slow-header client is cut off).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection is closed after this, busy or idle; the page simply reconnects.
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(120);

/// Serves until `shutdown`, with `hosts` as the names the gateway answers to besides its
/// addresses.
pub async fn serve(
    listener: TcpListener,
    observed: Arc<Observed>,
    hosts: guard::Hosts,
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
        .with_state(observed)
        .layer(axum::middleware::from_fn_with_state(hosts, guard::guard));
    let slots = slots::Slots::new(MAX_CONNECTIONS);
    let mut accept_failed_logged = false;
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, most likely: wait instead of spinning.
                    if !std::mem::replace(&mut accept_failed_logged, true) {
                        tracing::warn!(error = %e, "Cannot accept an HTTP connection");
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return Ok(()),
        };
        accept_failed_logged = false;
        let Some(slot) = slots.take() else {
            metrics::counter!("rgw_http_connections_refused_total").increment(1);
            drop(stream);
            continue;
        };
        let service = Counted {
            inner: hyper_util::service::TowerToHyperService::new(app.clone()),
            busy: Arc::clone(&slot.busy),
        };
        let mut stopping = shutdown.clone();
        tokio::spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT);
            let connection =
                builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                _ = slot.close.notified() => {}
                _ = tokio::time::sleep(CONNECTION_LIFETIME) => {}
                _ = stopping.changed() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(Duration::from_secs(1), connection).await;
                }
            }
        });
    }
}

/// A connection's service, counting the requests it is answering (an answering connection is
/// never evicted for a newer one). A request counts until its response is made; the endpoint's
/// bodies are whole strings of at most a few hundred KB, written at once on the LAN.
struct Counted<S> {
    inner: S,
    busy: Arc<std::sync::atomic::AtomicUsize>,
}

impl<S, R> hyper::service::Service<R> for Counted<S>
where
    S: hyper::service::Service<R>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn call(&self, request: R) -> Self::Future {
        let serving = slots::Serving::new(&self.busy);
        let answer = self.inner.call(request);
        Box::pin(async move {
            let answered = answer.await;
            drop(serving);
            answered
        })
    }
}

/// Binds `address` and serves in the background; a port that cannot be bound is logged and
/// the gateway runs on without the endpoint (collecting data matters more).
pub async fn start(
    address: SocketAddr,
    observed: Arc<Observed>,
    hosts: guard::Hosts,
    shutdown: watch::Receiver<bool>,
) -> Option<SocketAddr> {
    match TcpListener::bind(address).await {
        Ok(listener) => {
            let bound = listener.local_addr().ok();
            tracing::info!(address = ?bound, "Status page and API listening");
            tokio::spawn(async move {
                if let Err(e) = serve(listener, observed, hosts, shutdown).await {
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

/// Starts the endpoint of a running pipeline when the config enables it. Returns the bound
/// address; the endpoint stops with the pipeline (its `stopping` token).
pub async fn start_for(
    config: &LoadedConfig,
    observed: Arc<Observed>,
    stopping: watch::Receiver<bool>,
) -> Option<SocketAddr> {
    let http = &config.gateway.http;
    if !http.enabled {
        return None;
    }
    let address: SocketAddr = http.listen.parse().ok()?;
    let hosts = guard::Hosts::new(&http.allowed_hosts);
    start(address, observed, hosts, stopping).await
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

/// How long one `/api/status` snapshot is served again.
const STATUS_REUSED_FOR: Duration = Duration::from_secs(1);

async fn status(State(observed): State<Arc<Observed>>) -> Response {
    let cached = |observed: &Observed| {
        let cache = observed
            .status_cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        cache
            .as_ref()
            .filter(|(at, _)| at.elapsed() < STATUS_REUSED_FOR)
            .map(|(_, body)| Arc::clone(body))
    };
    let body = match cached(&observed) {
        Some(body) => body,
        None => {
            let body: Arc<str> = Arc::from(
                computed(Arc::clone(&observed), report::status)
                    .await
                    .to_string(),
            );
            *observed
                .status_cache
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()) =
                Some((std::time::Instant::now(), Arc::clone(&body)));
            body
        }
    };
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}

async fn metrics(State(observed): State<Arc<Observed>>) -> Response {
    let Some(handle) = &observed.metrics else {
        return (StatusCode::NOT_FOUND, "no metrics recorder installed\n").into_response();
    };
    observed.publish_metrics();
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
    if observed.view.publish_kpi() {
        return json_response(StatusCode::ACCEPTED, &json!({ "requested": true }));
    }
    let wait = crate::pipeline::rules_stage::PUBLISH_EVERY.as_secs();
    (
        StatusCode::TOO_MANY_REQUESTS,
        [(header::RETRY_AFTER, wait.to_string())],
        format!("asked less than {wait} s ago\n"),
    )
        .into_response()
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
        Ok::<_, crate::report::ReportError>(crate::report::html::render(
            &report,
            &observed.notes,
            &generated,
        ))
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
