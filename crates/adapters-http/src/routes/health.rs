//! Kubernetes probes: `/healthz` (the process answers) and `/readyz` (its
//! dependencies answer too).

use actix_web::{HttpResponse, web};
use serde::Serialize;
use utoipa::ToSchema;

use crate::HttpState;

pub(crate) fn register(config: &mut web::ServiceConfig) {
    config
        .route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz));
}

/// A probe's answer: `{"status":"ok"}`, `{"status":"ready"}`, or
/// `{"status":"not ready","reason":"…"}`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = otp::ProbeStatus)]
pub(crate) struct ProbeStatus {
    #[schema(value_type = String, example = "ok")]
    status: &'static str,
    /// Why not ready (the database unreachable, its schema behind, draining).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, nullable = false)]
    reason: Option<String>,
}

/// Alive: answers without touching any dependency.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "probes",
    operation_id = "Healthz",
    description = "Alive: the process answers, without touching any dependency.",
    responses((status = 200, description = "The process answers: `{\"status\":\"ok\"}`.", body = ProbeStatus)),
)]
pub(crate) async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(ProbeStatus {
        status: "ok",
        reason: None,
    })
}

/// Ready: the store is reachable and its schema current.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "probes",
    operation_id = "Readyz",
    description = "Ready: the database is reachable, its schema current, and the process not draining (the answer is cached for `http.readiness_cache`).",
    responses(
        (status = 200, description = "Ready: `{\"status\":\"ready\"}`.", body = ProbeStatus),
        (status = 503, description = "Not ready: `{\"status\":\"not ready\",\"reason\":\"…\"}`.", body = ProbeStatus),
    ),
)]
pub(crate) async fn readyz(state: web::Data<HttpState>) -> HttpResponse {
    match state.readiness.ready().await {
        Ok(()) => HttpResponse::Ok().json(ProbeStatus {
            status: "ready",
            reason: None,
        }),
        Err(reason) => HttpResponse::ServiceUnavailable().json(ProbeStatus {
            status: "not ready",
            reason: Some(reason.to_string()),
        }),
    }
}
