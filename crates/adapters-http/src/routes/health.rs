//! Kubernetes probes: `/healthz` (the process answers) and `/readyz` (its
//! dependencies answer too).

use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::HttpState;

pub(crate) fn register(config: &mut web::ServiceConfig) {
    config
        .route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz));
}

/// Alive: answers without touching any dependency.
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// Ready: the store is reachable and its schema current.
async fn readyz(state: web::Data<HttpState>) -> HttpResponse {
    match state.readiness.ready().await {
        Ok(()) => HttpResponse::Ok().json(json!({"status": "ready"})),
        Err(reason) => HttpResponse::ServiceUnavailable()
            .json(json!({"status": "not ready", "reason": reason.to_string()})),
    }
}
