//! REST/JSON adapter (actix-web): the contract's paths under
//! `/auth/v1/users/me/auth_factors`, ZITADEL's user service v2 TOTP calls
//! (`/v2/users/{user_id}/...`) and the v1 management calls
//! (`/management/v1/users/{user_id}/auth_factors/...`), proto3 JSON bodies, google.rpc.Status
//! errors, the health endpoints, and the OpenAPI document of all of it
//! (`GET /openapi.json`, [`openapi_json`]). Handlers only extract, call a use case
//! and render. [`public_routes`] and [`internal_routes`] split the trusted
//! login check onto a listener of its own; [`serve`] runs a listener with
//! one of those route sets, so the binary needs no actix itself.

mod body;
mod error;
mod json;
mod observe;
mod openapi;
mod routes;

use std::future::Future;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::web;

use application::{Authenticator, OtpFactors, Readiness};

pub use error::{ApiError, http_status_of};
pub use observe::observe;
pub use openapi::openapi_json;

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

/// Registers every route on an actix `App`, the trusted login check and
/// `/openapi.json` included: `App::new().configure(adapters_http::routes(state))`.
pub fn routes(state: HttpState) -> impl FnOnce(&mut web::ServiceConfig) {
    listener_routes(state, Routes::All)
}

/// The public listener's routes when the trusted calls have their own
/// listener: the user's OTP calls, the probes and `/openapi.json`; the login
/// check is 404.
pub fn public_routes(state: HttpState) -> impl FnOnce(&mut web::ServiceConfig) {
    listener_routes(state, Routes::Public)
}

/// The internal listener's routes: the trusted login check
/// (`POST /v1/users/{user_id}/otp/_check`), the recovery-code check and the
/// probes.
pub fn internal_routes(state: HttpState) -> impl FnOnce(&mut web::ServiceConfig) {
    listener_routes(state, Routes::Internal)
}

/// The routes of `which` listener: the user's calls and `/openapi.json`
/// unless internal, the trusted calls unless public, the probes always.
fn listener_routes(state: HttpState, which: Routes) -> impl FnOnce(&mut web::ServiceConfig) {
    move |config| {
        config.app_data(web::Data::new(state));
        if which != Routes::Internal {
            config
                .configure(routes::otp::register)
                .configure(routes::users::register)
                .configure(routes::import::register)
                .configure(routes::recovery::register);
        }
        if which != Routes::Public {
            config
                .configure(routes::otp::register_trusted)
                .configure(routes::recovery::register_trusted);
        }
        config.configure(routes::health::register);
        if which != Routes::Internal {
            config.route("/openapi.json", web::get().to(openapi::serve));
        }
        config.default_service(web::to(routes::not_found));
    }
}

/// Which routes a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routes {
    /// Everything: the user's calls, the trusted check and the probes (no
    /// internal listener).
    All,
    /// The user's calls and the probes ([`public_routes`]).
    Public,
    /// The trusted calls and the probes ([`internal_routes`]).
    Internal,
}

/// How [`serve`] runs a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeSettings {
    /// The route set.
    pub routes: Routes,
    /// Deadline for a whole request body (408 past it).
    pub body_timeout: Duration,
    /// Worker threads; 0 = one per CPU the process sees.
    pub workers: usize,
    /// After `shutdown`, how long in-flight requests get to finish.
    pub shutdown_timeout: Duration,
}

/// Serves `state` on `listener` with the telemetry middleware, until
/// `shutdown` completes: then it stops accepting and gives in-flight
/// requests `shutdown_timeout` to finish. The process's signals are left
/// to the caller.
///
/// # Errors
/// The listener cannot be served (at once), or the server's I/O error (from
/// the returned future).
pub fn serve(
    listener: TcpListener,
    state: HttpState,
    settings: ServeSettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<impl Future<Output = std::io::Result<()>> + Send + 'static> {
    let body_timeout = BodyTimeout(settings.body_timeout);
    let routes = settings.routes;
    let mut server = actix_web::HttpServer::new(move || {
        let app = actix_web::App::new()
            .app_data(web::Data::new(body_timeout))
            .wrap(actix_web::middleware::from_fn(observe));
        let state = state.clone();
        match routes {
            Routes::All => app.configure(self::routes(state)),
            Routes::Public => app.configure(public_routes(state)),
            Routes::Internal => app.configure(internal_routes(state)),
        }
    })
    .disable_signals()
    .shutdown_timeout(settings.shutdown_timeout.as_secs().max(1));
    if settings.workers > 0 {
        server = server.workers(settings.workers);
    }
    let server = server.listen(listener)?.run();
    let handle = server.handle();
    Ok(async move {
        let mut server = std::pin::pin!(server);
        tokio::select! {
            // Ended by itself: an I/O error, or stopped from elsewhere.
            result = &mut server => return result,
            () = shutdown => {}
        }
        let stopping = handle.stop(true);
        let (result, ()) = tokio::join!(server, stopping);
        result
    })
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
