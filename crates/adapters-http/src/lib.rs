//! REST/JSON adapter (actix-web): the contract's paths under
//! `/auth/v1/users/me/auth_factors`, proto3 JSON bodies, google.rpc.Status
//! errors, and the health endpoints. Handlers only extract, call a use case
//! and render. [`public_routes`] and [`internal_routes`] split the trusted
//! login check onto a listener of its own.

mod body;
mod error;
mod json;
mod observe;
mod routes;

use std::sync::Arc;
use std::time::Duration;

use actix_web::web;

use application::{Authenticator, OtpFactors, Readiness};

pub use error::{ApiError, http_status_of};
pub use observe::observe;

/// Largest request body accepted, in bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// How long a handler waits for the whole request body, unless a
/// [`BodyTimeout`] is registered: a client that announces a body and never
/// sends it is answered 408 (code 4) and its connection closed.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// The request body read deadline, as app data:
/// `App::new().app_data(web::Data::new(BodyTimeout(d)))`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyTimeout(pub Duration);

impl Default for BodyTimeout {
    fn default() -> Self {
        Self(DEFAULT_BODY_TIMEOUT)
    }
}

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

/// Registers every route on an actix `App`, the trusted login check
/// included: `App::new().configure(adapters_http::routes(state))`.
pub fn routes(state: HttpState) -> impl FnOnce(&mut web::ServiceConfig) {
    move |config| {
        config
            .app_data(web::Data::new(state))
            .configure(routes::otp::register)
            .configure(routes::otp::register_trusted)
            .configure(routes::health::register)
            .default_service(web::to(routes::not_found));
    }
}

/// The public listener's routes when the trusted calls have their own
/// listener: the user's OTP calls and the probes; the login check is 404.
pub fn public_routes(state: HttpState) -> impl FnOnce(&mut web::ServiceConfig) {
    move |config| {
        config
            .app_data(web::Data::new(state))
            .configure(routes::otp::register)
            .configure(routes::health::register)
            .default_service(web::to(routes::not_found));
    }
}

/// The internal listener's routes: the trusted login check
/// (`POST /v1/users/{user_id}/otp/_check`) and the probes.
pub fn internal_routes(state: HttpState) -> impl FnOnce(&mut web::ServiceConfig) {
    move |config| {
        config
            .app_data(web::Data::new(state))
            .configure(routes::otp::register_trusted)
            .configure(routes::health::register)
            .default_service(web::to(routes::not_found));
    }
}

/// The body decoding of `VerifyMyAuthFactorOTPRequest` and `CheckOTPRequest`
/// exactly as their handlers do it once the body is read, without the HTTP
/// around it: what the `json_body` fuzz target (`fuzz/`) and its corpus
/// replay call. `Ok` holds the `code` field (`None` when absent or `null`).
///
/// # Errors
/// The handlers' 400 (code 3) for a body that is not a JSON object of the
/// message.
pub fn decode_verify_body(body: &[u8]) -> Result<Option<secrecy::SecretString>, ApiError> {
    body::decode::<json::VerifyRequest>("VerifyMyAuthFactorOTPRequest", body)
        .map(|request| request.code.map(secrecy::SecretString::from))
}

/// The body decoding of the messages without fields (Add, Remove, List) as
/// their handlers do it: see [`decode_verify_body`].
///
/// # Errors
/// The handlers' 400 (code 3) for a body that is not a JSON object.
pub fn decode_empty_body(body: &[u8]) -> Result<(), ApiError> {
    body::decode::<json::EmptyRequest>("AddMyAuthFactorOTPRequest", body).map(|_| ())
}
