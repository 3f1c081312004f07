//! The local HTTP endpoint (default `127.0.0.1:9850`): `/health` (200, or 503 with the
//! reasons), `/metrics` (Prometheus text format), `/api/status` (JSON) and the status page, a
//! static page embedded in the binary that works offline on a phone in the pump room; the
//! KPIs: `/api/kpi` (today's figures so far, JSON), `/report` and `/report/{YYYY-MM}` (the
//! monthly report), and `POST /api/kpi/publish` (write today's figures so far as `kpi` lines).
//!
//! Everything shown is read from the running pipeline's shared state ([`Observed`]) and the KPI
//! files; the endpoint never blocks a stage. Nothing it does reaches a field device.

pub mod report;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

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
    start(address, observed, stopping).await
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
