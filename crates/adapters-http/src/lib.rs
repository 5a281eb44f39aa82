//! REST/JSON adapter (actix-web): the contract's paths under
//! `/auth/v1/users/me/auth_factors`, proto3 JSON bodies, google.rpc.Status
//! errors, and the health endpoints. Handlers only extract, call a use case
//! and render.

mod body;
mod error;
mod json;
mod observe;
mod routes;

use std::sync::Arc;

use actix_web::web;

use application::{Authenticator, OtpFactors, Readiness};

pub use error::{ApiError, http_status_of};
pub use observe::observe;

/// Largest request body accepted, in bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// What the handlers need: the use cases, the authenticator, and the
/// readiness check.
#[derive(Clone)]
pub struct HttpState {
    /// The OTP use cases.
    pub factors: OtpFactors,
    /// Turns the `Authorization` header into the signed-in user.
    pub auth: Authenticator,
    /// What `/readyz` asks.
    pub readiness: Arc<dyn Readiness>,
}

impl std::fmt::Debug for HttpState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpState").finish_non_exhaustive()
    }
}

/// Registers every route on an actix `App`:
/// `App::new().configure(adapters_http::routes(state))`.
pub fn routes(state: HttpState) -> impl FnOnce(&mut web::ServiceConfig) {
    move |config| {
        config
            .app_data(web::Data::new(state))
            .configure(routes::otp::register)
            .configure(routes::health::register)
            .default_service(web::to(routes::not_found));
    }
}
