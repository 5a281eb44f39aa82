//! The `otp-service` binary's library half: configuration, telemetry, and the
//! wiring of every adapter to the use cases. Only this crate knows them all.

pub mod app;
pub mod dev;
pub mod enroll;
pub mod import;
pub mod readiness;
pub mod settings;
pub mod shutdown;
pub mod telemetry;

pub use app::{Application, Ports, StartError};
pub use settings::Settings;
