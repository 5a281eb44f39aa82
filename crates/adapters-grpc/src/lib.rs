//! gRPC and gRPC-web adapter (tonic): ZITADEL's `zitadel.auth.v1.AuthService`
//! for the signed-in user's OTP factor, the TOTP calls of
//! `zitadel.user.v2.UserService` and the OTP calls of
//! `zitadel.management.v1.ManagementService` (for the user or an
//! administrator), over gRPC, gRPC-web and the Connect protocol (unary
//! calls, [`ConnectLayer`]), with the contract's status codes,
//! messages and `zitadel.v1.ErrorDetail`s, plus the standard health and
//! reflection services. [`Services`] splits the trusted login check
//! (`otp.v1.OtpCheckService`) onto its own listener; [`GrpcLimits`] bounds
//! streams, resets, calls and connections. Handlers only read the
//! `authorization` metadata, call a use case and render; every rule lives in
//! the application and domain crates.
//!
//! ```no_run
//! # async fn run(
//! #     factors: application::OtpFactors,
//! #     auth: application::Authenticator,
//! # ) -> Result<(), Box<dyn std::error::Error>> {
//! use adapters_grpc::{GrpcSettings, serve};
//!
//! let settings = GrpcSettings {
//!     cors_allowed_origins: vec!["https://console.example.com".into()],
//!     ..GrpcSettings::default()
//! };
//! let listener = tokio::net::TcpListener::bind("0.0.0.0:8081").await?;
//! // Health turns NOT_SERVING on the first Ctrl-C; the listener closes 5 s later.
//! let (draining, drain_started) = tokio::sync::oneshot::channel::<()>();
//! let signal = async move {
//!     let _ = tokio::signal::ctrl_c().await;
//!     let _ = draining.send(());
//! };
//! let shutdown = async move {
//!     signal.await;
//!     tokio::time::sleep(std::time::Duration::from_secs(5)).await;
//! };
//! let drain = async move {
//!     let _ = drain_started.await;
//! };
//! tokio::spawn(serve(listener, factors, auth, &settings, drain, shutdown)).await??;
//! # Ok(())
//! # }
//! ```
//!
//! Failed calls answer the contract's code, the message `"<text> (<id>)"` and
//! an encoded `google.rpc.Status` holding one `zitadel.v1.ErrorDetail` in
//! `grpc-status-details-bin` ([`status_of`]); over gRPC-web that status comes
//! in the body's trailers frame ([`GrpcWebStatusFrameLayer`]).

mod check;
mod connect;
mod convert;
mod error;
mod import;
mod observe;
mod recovery;
mod server;
mod service;
mod users;
mod web;

pub use check::OtpCheckServiceImpl;
pub use connect::{Connect, ConnectLayer};
pub use error::{ERROR_DETAIL_TYPE_URL, error_detail, status_of};
pub use import::OtpImportServiceImpl;
pub use observe::{Observe, ObserveLayer};
pub use server::{
    GrpcError, GrpcLayers, GrpcLimits, GrpcRouter, GrpcSettings, MAX_SMALL_MESSAGE_BYTES, Services,
    router, serve,
};
pub use service::{AuthServiceImpl, MAX_MESSAGE_BYTES};
pub use users::{ManagementServiceImpl, UserServiceImpl};
pub use web::{GrpcWebStatusFrameLayer, grpc_web_status_frame};

/// The code generated from `proto/` (messages, server and client), one module
/// per proto package: `zitadel::v1`, `zitadel::user::v1`, `zitadel::auth::v1`,
/// `zitadel::object::v2`, `zitadel::user::v2`, `zitadel::management::v1`,
/// this service's own `otp::v1` and `google::rpc`. The clients (`zitadel::auth::v1::auth_service_client`)
/// are for tests and other crates' tests.
pub mod proto {
    #![allow(
        missing_docs,
        missing_debug_implementations,
        clippy::all,
        clippy::pedantic,
        clippy::unwrap_used,
        clippy::expect_used
    )]
    include!(concat!(env!("OUT_DIR"), "/proto.rs"));
}

/// The encoded `google.protobuf.FileDescriptorSet` of `proto/` (with its
/// imports), as server reflection serves it.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptor.bin"));
