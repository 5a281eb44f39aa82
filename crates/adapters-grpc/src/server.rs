//! The gRPC port: `AuthService`, `grpc.health.v1.Health`, server reflection
//! (v1 and v1alpha) and gRPC-web with CORS, over HTTP/2 (gRPC) and HTTP/1.1
//! (gRPC-web) alike.

use std::future::Future;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Method};
use tokio::net::TcpListener;
use tonic::transport::Server;
use tonic::transport::server::{Router, TcpIncoming};
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;
use tonic_web::GrpcWebLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_layer::{Identity, Stack};

use application::{Authenticator, OtpFactors};

use crate::FILE_DESCRIPTOR_SET;
use crate::check::OtpCheckServiceImpl;
use crate::connect::ConnectLayer;
use crate::import::OtpImportServiceImpl;
use crate::observe::ObserveLayer;
use crate::proto::otp::v1::otp_check_service_server::SERVICE_NAME as CHECK_SERVICE_NAME;
use crate::proto::otp::v1::otp_import_service_server::SERVICE_NAME as IMPORT_SERVICE_NAME;
use crate::proto::zitadel::auth::v1::auth_service_server::SERVICE_NAME;
use crate::proto::zitadel::management::v1::management_service_server::SERVICE_NAME as MANAGEMENT_SERVICE_NAME;
use crate::proto::zitadel::user::v2::user_service_server::SERVICE_NAME as USER_SERVICE_NAME;
use crate::service::AuthServiceImpl;
use crate::users::{ManagementServiceImpl, UserServiceImpl};
use crate::web::{GrpcWebStatusFrameLayer, grpc_web_status_frame};

/// Settings of the gRPC port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcSettings {
    /// Browser origins allowed to call over gRPC-web (CORS), e.g.
    /// `https://console.example.com`; `"*"` allows any. Empty: none.
    pub cors_allowed_origins: Vec<String>,
    /// Which of the API's services this listener serves.
    pub services: Services,
    /// Whether server reflection (v1 and v1alpha) is served.
    pub reflection: bool,
    /// HTTP/2 and per-call limits.
    pub limits: GrpcLimits,
}

impl Default for GrpcSettings {
    /// No CORS origins, every service, reflection on, [`GrpcLimits::default`].
    fn default() -> Self {
        Self {
            cors_allowed_origins: Vec::new(),
            services: Services::All,
            reflection: true,
            limits: GrpcLimits::default(),
        }
    }
}

/// Which services a gRPC listener serves (health and, when enabled,
/// reflection are served on every listener).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Services {
    /// The user-facing services and `otp.v1.OtpCheckService`.
    All,
    /// Only the user-facing services (`zitadel.auth.v1.AuthService`,
    /// `zitadel.user.v2.UserService`, `zitadel.management.v1.ManagementService`,
    /// the administrators' `otp.v1.OtpImportService`):
    /// the public listener when the trusted calls have their own.
    UserFacing,
    /// Only the trusted callers' `otp.v1.OtpCheckService`: the internal listener.
    Trusted,
}

impl Services {
    const fn user_facing(self) -> bool {
        matches!(self, Self::All | Self::UserFacing)
    }

    const fn trusted(self) -> bool {
        matches!(self, Self::All | Self::Trusted)
    }
}

/// Limits of the gRPC listener, so one connection or one slow client cannot
/// hold the server's resources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcLimits {
    /// HTTP/2 `SETTINGS_MAX_CONCURRENT_STREAMS`: streams a client may have
    /// open on one connection; more are refused (`REFUSED_STREAM`).
    pub max_concurrent_streams: u32,
    /// Streams the server may reset because of the client's errors (refused
    /// streams included) before it closes the connection with
    /// `ENHANCE_YOUR_CALM`: the guard against "made you reset" floods.
    pub max_local_error_reset_streams: usize,
    /// Streams reset by the client but not yet accepted before the
    /// connection is closed: the guard against rapid-reset floods.
    pub max_pending_accept_reset_streams: usize,
    /// Calls handled at once per connection; further calls wait (within
    /// `request_timeout`).
    pub concurrency_limit_per_connection: usize,
    /// The longest a call may take from its headers to its answer, reading
    /// its request body included: a call whose body never comes is answered
    /// `CANCELLED` ("Timeout expired") after this. A shorter `grpc-timeout`
    /// from the client wins.
    pub request_timeout: Duration,
    /// HTTP/2 PING interval on idle connections; zero turns pings off.
    pub keepalive_interval: Duration,
    /// A PING not answered within this closes the connection.
    pub keepalive_timeout: Duration,
    /// Connections are asked to close (GOAWAY) after this long: streaming
    /// calls (reflection, health `Watch`) cannot stay forever, and clients
    /// spread over new replicas.
    pub max_connection_age: Duration,
    /// Then they get this long to finish before they are cut.
    pub max_connection_age_grace: Duration,
}

impl Default for GrpcLimits {
    fn default() -> Self {
        Self {
            max_concurrent_streams: 100,
            max_local_error_reset_streams: 1024,
            max_pending_accept_reset_streams: 20,
            concurrency_limit_per_connection: 32,
            request_timeout: Duration::from_secs(15),
            keepalive_interval: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(10),
            max_connection_age: Duration::from_secs(30 * 60),
            max_connection_age_grace: Duration::from_secs(30),
        }
    }
}

/// Largest request message the health and reflection services accept, in
/// bytes: their requests are a service or symbol name.
pub const MAX_SMALL_MESSAGE_BYTES: usize = 4 * 1024;

/// Why the gRPC port could not be built or served.
#[derive(Debug, thiserror::Error)]
pub enum GrpcError {
    /// A configured CORS origin is not a valid header value.
    #[error("invalid CORS origin {0:?}")]
    InvalidOrigin(String),
    /// The reflection service refused the file descriptor sets.
    #[error("server reflection could not be built: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The descriptors of the Connect translation did not load.
    #[error("Connect descriptors could not be loaded: {0}")]
    Descriptors(#[from] prost_reflect::DescriptorError),
    /// The server failed while serving.
    #[error("gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// The layers around every service, outermost first: CORS, Connect unary
/// translation, the gRPC-web status frame, gRPC-web translation, the server
/// span and duration metric.
pub type GrpcLayers = Stack<
    ObserveLayer,
    Stack<
        GrpcWebLayer,
        Stack<GrpcWebStatusFrameLayer, Stack<ConnectLayer, Stack<CorsLayer, Identity>>>,
    >,
>;

/// The complete router of the gRPC port; serve it with
/// `serve_with_incoming_shutdown` (or use [`serve`]).
pub type GrpcRouter = Router<GrpcLayers>;

/// Headers a gRPC-web browser client sends; ZITADEL's console and clients
/// also send their organisation header (ignored here) on every call.
const ALLOWED_HEADERS: [&str; 8] = [
    "authorization",
    "content-type",
    "connect-protocol-version",
    "connect-timeout-ms",
    "x-grpc-web",
    "x-user-agent",
    "grpc-timeout",
    "x-zitadel-orgid",
];

/// How long browsers may reuse a preflight answer (a gRPC-web call otherwise
/// costs two round trips); short, so removing an origin takes effect soon.
const PREFLIGHT_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(600);

/// Headers a gRPC-web browser client must be able to read.
const EXPOSED_HEADERS: [&str; 3] = ["grpc-status", "grpc-message", "grpc-status-details-bin"];

fn cors(settings: &GrpcSettings) -> Result<CorsLayer, GrpcError> {
    let origins = if settings.cors_allowed_origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        let origins = settings
            .cors_allowed_origins
            .iter()
            .map(|origin| {
                HeaderValue::from_str(origin.trim_end_matches('/'))
                    .map_err(|_| GrpcError::InvalidOrigin(origin.clone()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        AllowOrigin::list(origins)
    };
    Ok(CorsLayer::new()
        .allow_origin(origins)
        .allow_methods([Method::POST])
        .allow_headers(ALLOWED_HEADERS.map(HeaderName::from_static))
        .expose_headers(EXPOSED_HEADERS.map(HeaderName::from_static))
        .max_age(PREFLIGHT_MAX_AGE))
}

/// Builds the router and the health reporter behind it.
async fn build(
    factors: OtpFactors,
    auth: Authenticator,
    cors: CorsLayer,
    settings: &GrpcSettings,
) -> Result<(GrpcRouter, HealthReporter), GrpcError> {
    let (health, health_service) = tonic_health::server::health_reporter();
    for name in served_names(settings.services) {
        health
            .set_service_status(name, ServingStatus::Serving)
            .await;
    }

    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let (reflection_v1, reflection_v1alpha) = if settings.reflection {
        (
            Some(
                reflection()
                    .build_v1()?
                    .max_decoding_message_size(MAX_SMALL_MESSAGE_BYTES),
            ),
            Some(
                reflection()
                    .build_v1alpha()?
                    .max_decoding_message_size(MAX_SMALL_MESSAGE_BYTES),
            ),
        )
    } else {
        (None, None)
    };
    let services = settings.services;
    let limits = &settings.limits;
    let keepalive = Some(limits.keepalive_interval).filter(|every| !every.is_zero());

    let router = Server::builder()
        .accept_http1(true)
        .max_concurrent_streams(limits.max_concurrent_streams)
        .http2_max_local_error_reset_streams(Some(limits.max_local_error_reset_streams))
        .http2_max_pending_accept_reset_streams(Some(limits.max_pending_accept_reset_streams))
        .concurrency_limit_per_connection(limits.concurrency_limit_per_connection.max(1))
        .timeout(limits.request_timeout)
        .http2_keepalive_interval(keepalive)
        .http2_keepalive_timeout(Some(limits.keepalive_timeout))
        .max_connection_age(limits.max_connection_age)
        .max_connection_age_grace(limits.max_connection_age_grace)
        .layer(cors)
        .layer(ConnectLayer::new()?)
        .layer(grpc_web_status_frame())
        .layer(GrpcWebLayer::new())
        .layer(ObserveLayer)
        .add_optional_service(
            services
                .user_facing()
                .then(|| AuthServiceImpl::new(factors.clone(), auth.clone()).into_server()),
        )
        .add_optional_service(
            services
                .user_facing()
                .then(|| UserServiceImpl::new(factors.clone(), auth.clone()).into_server()),
        )
        .add_optional_service(
            services
                .user_facing()
                .then(|| ManagementServiceImpl::new(factors.clone(), auth.clone()).into_server()),
        )
        .add_optional_service(
            services
                .user_facing()
                .then(|| OtpImportServiceImpl::new(factors.clone(), auth.clone()).into_server()),
        )
        .add_optional_service(
            services
                .trusted()
                .then(|| OtpCheckServiceImpl::new(factors, auth).into_server()),
        )
        .add_service(health_service.max_decoding_message_size(MAX_SMALL_MESSAGE_BYTES))
        .add_optional_service(reflection_v1)
        .add_optional_service(reflection_v1alpha);
    Ok((router, health))
}

/// The health service names a listener reports: its services and `""`.
fn served_names(services: Services) -> Vec<&'static str> {
    let mut names = vec![""];
    if services.user_facing() {
        names.extend([
            SERVICE_NAME,
            USER_SERVICE_NAME,
            MANAGEMENT_SERVICE_NAME,
            IMPORT_SERVICE_NAME,
        ]);
    }
    if services.trusted() {
        names.push(CHECK_SERVICE_NAME);
    }
    names
}

/// The complete router of the gRPC port: `zitadel.auth.v1.AuthService`,
/// `zitadel.user.v2.UserService`, `zitadel.management.v1.ManagementService`,
/// `grpc.health.v1.Health` (the service and `""` SERVING), server reflection
/// v1 and v1alpha, gRPC over HTTP/2, Connect unary calls (`application/proto`,
/// `application/json`) and gRPC-web (`application/grpc-web`,
/// `application/grpc-web+proto`, `-text`) over HTTP/1.1 or HTTP/2, with CORS
/// for the origins of `settings`.
///
/// # Errors
/// [`GrpcError::InvalidOrigin`] for an origin that is no header value;
/// [`GrpcError::Reflection`] if the descriptor sets do not load.
pub async fn router(
    factors: OtpFactors,
    auth: Authenticator,
    settings: &GrpcSettings,
) -> Result<GrpcRouter, GrpcError> {
    Ok(build(factors, auth, cors(settings)?, settings).await?.0)
}

/// Serves [`router`] on `listener`. When `draining` completes, health turns
/// NOT_SERVING while calls are still accepted; when `shutdown` completes, the
/// listener closes and open calls are drained. The future borrows nothing, so
/// it can be spawned as it is:
/// `tokio::spawn(serve(listener, factors, auth, &settings, draining, shutdown))`.
///
/// # Errors
/// As [`router`]; [`GrpcError::Transport`] when serving fails.
pub fn serve(
    listener: TcpListener,
    factors: OtpFactors,
    auth: Authenticator,
    settings: &GrpcSettings,
    draining: impl Future<Output = ()> + Send + 'static,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> impl Future<Output = Result<(), GrpcError>> + Send + 'static {
    let cors = cors(settings);
    let settings = settings.clone();
    async move {
        let (router, health) = build(factors, auth, cors?, &settings).await?;
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        let signal = async move {
            // Health turns NOT_SERVING as soon as draining starts (or at the
            // latest when the listener closes), so gRPC-aware balancers stop
            // routing here while calls are still accepted.
            let mut shutdown = std::pin::pin!(shutdown);
            let stopped_first = tokio::select! {
                () = draining => false,
                () = &mut shutdown => true,
            };
            for name in served_names(settings.services) {
                health
                    .set_service_status(name, ServingStatus::NotServing)
                    .await;
            }
            if !stopped_first {
                shutdown.await;
            }
        };
        router
            .serve_with_incoming_shutdown(incoming, signal)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_must_be_header_values() {
        let settings = GrpcSettings {
            cors_allowed_origins: vec!["https://ok.example".into(), "bad\norigin".into()],
            ..GrpcSettings::default()
        };
        assert!(matches!(cors(&settings), Err(GrpcError::InvalidOrigin(o)) if o == "bad\norigin"));
        let any = GrpcSettings {
            cors_allowed_origins: vec!["*".into()],
            ..GrpcSettings::default()
        };
        assert!(cors(&any).is_ok());
        assert!(cors(&GrpcSettings::default()).is_ok());
    }
}
