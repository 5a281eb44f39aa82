//! `otp-service dev`: the whole API with an in-memory store and a built-in
//! development token issuer, for trying the service with nothing installed.

use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use adapters_crypto::{AesGcmCipher, generate_key_line};
use adapters_memory::MemoryFactorStore;
use adapters_token::DevIssuer;

use crate::app::{Application, Ports, StartError, claim_names, keyring};
use crate::settings::{GrpcConfig, HttpSettings, Settings};

/// The development issuer's `iss` and `aud`.
pub const DEV_ISSUER: &str = "https://dev-issuer.otp-service.invalid";
/// The audience of development tokens.
pub const DEV_AUDIENCE: &str = "otp-service-dev";
/// How long the printed token stays valid.
const DEV_TOKEN_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// A started development service and the token it printed.
#[derive(Debug)]
pub struct DevService {
    /// The running service.
    pub app: Application,
    /// A valid bearer token for user `dev-user`.
    pub token: SecretString,
    /// A valid bearer token for `dev-admin`, an administrator (role
    /// `otp.admin`) of `dev-org`, for the v2 and management calls on other users.
    pub admin_token: SecretString,
}

/// Starts the development service: memory store, an ephemeral key unless
/// `crypto.keys` is set, and a freshly generated token issuer. Listens on
/// loopback only: see [`start_with`].
///
/// # Errors
/// [`StartError`] when an address is not loopback, cannot be bound, or
/// settings are wrong.
pub fn start(settings: &Settings) -> Result<DevService, StartError> {
    start_with(settings, false)
}

/// [`start`]; with `allow_non_loopback` (`otp-service dev
/// --allow-non-loopback`) it also listens where a configured address says
/// when that is not loopback (`0.0.0.0`, a LAN address, a host name).
///
/// # Errors
/// As [`start`].
pub fn start_with(settings: &Settings, allow_non_loopback: bool) -> Result<DevService, StartError> {
    let settings = &loopback_by_default(settings);
    if !allow_non_loopback {
        refuse_non_loopback(settings)?;
    }
    let issuer = DevIssuer::generate(DEV_ISSUER, DEV_AUDIENCE)
        .map_err(|e| StartError::Adapter(e.to_string()))?;
    let token = issuer
        .issue(
            "dev-user",
            Some("dev-org"),
            Some("dev@otp-service.localhost"),
            DEV_TOKEN_TTL,
        )
        .map_err(|e| StartError::Adapter(e.to_string()))?;
    let admin_token = issuer
        .issue_with_roles(
            "dev-admin",
            Some("dev-org"),
            Some("admin@otp-service.localhost"),
            &["otp.admin"],
            DEV_TOKEN_TTL,
        )
        .map_err(|e| StartError::Adapter(e.to_string()))?;
    let cipher = if settings.crypto.keys.expose_secret().trim().is_empty() {
        generate_key_line("dev-ephemeral")
            .and_then(|line| AesGcmCipher::from_config(&line))
            .map_err(|e| StartError::Adapter(e.to_string()))?
    } else {
        keyring(settings)?
    };
    let store = Arc::new(MemoryFactorStore::new());
    let cipher = Arc::new(cipher);
    let ports = Ports {
        store: store.clone(),
        readiness: store,
        verifier: Arc::new(issuer.verifier(claim_names(settings), settings.auth.leeway)),
        cipher: cipher.clone(),
        recovery: cipher,
    };
    let app = Application::start(settings, ports)?;
    Ok(DevService {
        app,
        token,
        admin_token,
    })
}

/// Development mode listens on loopback unless an address was configured:
/// a server that prints its own valid token must not face the network by accident.
fn loopback_by_default(settings: &Settings) -> Settings {
    let mut settings = settings.clone();
    if settings.http.addr == HttpSettings::default().addr {
        settings.http.addr = "127.0.0.1:8080".into();
    }
    if settings.grpc.addr == GrpcConfig::default().addr {
        settings.grpc.addr = "127.0.0.1:8081".into();
    }
    if settings.http.internal_addr == HttpSettings::default().internal_addr {
        settings.http.internal_addr = "127.0.0.1:8082".into();
    }
    if settings.grpc.internal_addr == GrpcConfig::default().internal_addr {
        settings.grpc.internal_addr = "127.0.0.1:8083".into();
    }
    settings
}

/// Whether `addr` (`host:port`) can only be reached from this machine: a
/// loopback IP or `localhost`. Anything else, host names included, is not.
fn is_loopback(addr: &str) -> bool {
    if let Ok(socket) = addr.trim().parse::<std::net::SocketAddr>() {
        return socket.ip().is_loopback();
    }
    addr.trim()
        .rsplit_once(':')
        .is_some_and(|(host, _)| host.eq_ignore_ascii_case("localhost"))
}

/// Development mode prints a valid token and keeps nothing: it refuses to
/// listen beyond loopback unless asked to explicitly.
fn refuse_non_loopback(settings: &Settings) -> Result<(), StartError> {
    let addrs = [
        ("http.addr (OTP__HTTP__ADDR)", settings.http.addr.as_str()),
        ("grpc.addr (OTP__GRPC__ADDR)", settings.grpc.addr.as_str()),
        (
            "http.internal_addr (OTP__HTTP__INTERNAL_ADDR)",
            settings.http.internal().unwrap_or("127.0.0.1:0"),
        ),
        (
            "grpc.internal_addr (OTP__GRPC__INTERNAL_ADDR)",
            settings.grpc.internal().unwrap_or("127.0.0.1:0"),
        ),
    ];
    let open: Vec<&str> = addrs
        .iter()
        .filter(|(_, addr)| !is_loopback(addr))
        .map(|(key, _)| *key)
        .collect();
    if open.is_empty() {
        Ok(())
    } else {
        Err(StartError::Adapter(format!(
            "dev mode listens on loopback only, but {} is not a loopback address; \
             pass --allow-non-loopback to serve it anyway (never for production)",
            open.join(", ")
        )))
    }
}

/// The banner `dev` prints: the warning, the token and ready-to-paste curls.
#[must_use]
pub fn banner(
    port: u16,
    grpc_port: u16,
    token: &SecretString,
    admin_token: &SecretString,
) -> String {
    let token = token.expose_secret();
    let admin_token = admin_token.expose_secret();
    let base = format!("http://127.0.0.1:{port}/auth/v1/users/me/auth_factors");
    let rule = "=".repeat(78);
    format!(
        "{rule}
  otp-service DEVELOPMENT MODE
  In-memory store and a built-in development token issuer.
  DATA IS NOT KEPT: everything is lost when this process exits.
  NEVER USE THIS MODE TO SERVE PRODUCTION.
{rule}

Bearer token (user dev-user, organisation dev-org, valid 24 hours):

export TOKEN='{token}'

An administrator of dev-org (user dev-admin, role otp.admin), for the
v2 user service and management calls on other users:

export ADMIN_TOKEN='{admin_token}'

Add an OTP factor (answers url, secret and details):

curl -sS -X POST {base}/otp \\
  -H 'Content-Type: application/json' -H 'Accept: application/json' \\
  -H \"Authorization: Bearer $TOKEN\" -d '{{}}'

Verify it with the code your authenticator app shows:

curl -sS -X POST {base}/otp/_verify \\
  -H 'Content-Type: application/json' -H \"Authorization: Bearer $TOKEN\" -d '{{\"code\":\"123456\"}}'

List factors / remove it:

curl -sS -X POST {base}/_search -H \"Authorization: Bearer $TOKEN\" -d '{{}}'
curl -sS -X DELETE {base}/otp -H \"Authorization: Bearer $TOKEN\"

ZITADEL's v2 user service: POST/DELETE http://127.0.0.1:{port}/v2/users/dev-user/totp
(docs/clients.md has every call).

gRPC, gRPC-web and Connect (zitadel.auth.v1.AuthService, zitadel.user.v2.UserService,
zitadel.management.v1.ManagementService; reflection enabled) on 127.0.0.1:{grpc_port}.
"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_addresses_are_loopback() {
        for addr in [
            "127.0.0.1:8080",
            "[::1]:8080",
            "localhost:8080",
            "127.1.2.3:0",
        ] {
            assert!(is_loopback(addr), "{addr}");
        }
        for addr in [
            "0.0.0.0:8080",
            "[::]:8080",
            "192.168.1.10:8080",
            "dev.example.com:8080",
            "localhost.example.com:8080",
        ] {
            assert!(!is_loopback(addr), "{addr}");
        }
    }
}
