//! The gRPC port: `AuthService`, `grpc.health.v1.Health`, server reflection
//! (v1 and v1alpha) and gRPC-web with CORS, over HTTP/2 (gRPC) and HTTP/1.1
//! (gRPC-web) alike.

use std::future::Future;

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
use crate::observe::ObserveLayer;
use crate::proto::otp::v1::otp_check_service_server::SERVICE_NAME as CHECK_SERVICE_NAME;
use crate::proto::zitadel::auth::v1::auth_service_server::SERVICE_NAME;
use crate::service::AuthServiceImpl;
use crate::web::GrpcWebStatusFrameLayer;

/// Settings of the gRPC port.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GrpcSettings {
    /// Browser origins allowed to call over gRPC-web (CORS), e.g.
    /// `https://console.example.com`; `"*"` allows any. Empty: none.
    pub cors_allowed_origins: Vec<String>,
}

/// Why the gRPC port could not be built or served.
#[derive(Debug, thiserror::Error)]
pub enum GrpcError {
    /// A configured CORS origin is not a valid header value.
    #[error("invalid CORS origin {0:?}")]
    InvalidOrigin(String),
    /// The reflection service refused the file descriptor sets.
    #[error("server reflection could not be built: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The server failed while serving.
    #[error("gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// The layers around every service, outermost first: CORS, the gRPC-web
/// status frame, gRPC-web translation, the server span and duration metric.
pub type GrpcLayers = Stack<
    ObserveLayer,
    Stack<GrpcWebLayer, Stack<GrpcWebStatusFrameLayer, Stack<CorsLayer, Identity>>>,
>;

/// The complete router of the gRPC port; serve it with
/// `serve_with_incoming_shutdown` (or use [`serve`]).
pub type GrpcRouter = Router<GrpcLayers>;

/// Headers a gRPC-web browser client sends; ZITADEL's console and clients
/// also send their organisation header (ignored here) on every call.
const ALLOWED_HEADERS: [&str; 6] = [
    "authorization",
    "content-type",
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
) -> Result<(GrpcRouter, HealthReporter), GrpcError> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_service_status(SERVICE_NAME, ServingStatus::Serving)
        .await;
    health
        .set_service_status(CHECK_SERVICE_NAME, ServingStatus::Serving)
        .await;
    health.set_service_status("", ServingStatus::Serving).await;

    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;

    let router = Server::builder()
        .accept_http1(true)
        .layer(cors)
        .layer(GrpcWebStatusFrameLayer)
        .layer(GrpcWebLayer::new())
        .layer(ObserveLayer)
        .add_service(AuthServiceImpl::new(factors.clone(), auth.clone()).into_server())
        .add_service(OtpCheckServiceImpl::new(factors, auth).into_server())
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha);
    Ok((router, health))
}

/// The complete router of the gRPC port: `zitadel.auth.v1.AuthService`,
/// `grpc.health.v1.Health` (the service and `""` SERVING), server reflection
/// v1 and v1alpha, gRPC over HTTP/2 and gRPC-web (`application/grpc-web`,
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
    Ok(build(factors, auth, cors(settings)?).await?.0)
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
    async move {
        let (router, health) = build(factors, auth, cors?).await?;
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
            health
                .set_service_status(SERVICE_NAME, ServingStatus::NotServing)
                .await;
            health
                .set_service_status(CHECK_SERVICE_NAME, ServingStatus::NotServing)
                .await;
            health
                .set_service_status("", ServingStatus::NotServing)
                .await;
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
        };
        assert!(matches!(cors(&settings), Err(GrpcError::InvalidOrigin(o)) if o == "bad\norigin"));
        let any = GrpcSettings {
            cors_allowed_origins: vec!["*".into()],
        };
        assert!(cors(&any).is_ok());
        assert!(cors(&GrpcSettings::default()).is_ok());
    }
}
