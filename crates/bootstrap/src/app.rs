//! Wiring: builds the production adapters from the settings and starts the
//! HTTP server on them.

use std::net::TcpListener;
use std::sync::Arc;

use adapters_clock::SystemClock;
use adapters_crypto::{AesGcmCipher, OsSecrets};
use adapters_http::HttpState;
use adapters_postgres::PgFactorStore;
use adapters_token::{
    BearerVerifier, ClaimNames, ClientAuth, IntrospectionSettings, IntrospectionVerifier,
    JwtSettings, JwtVerifier,
};
use application::{
    Authenticator, FactorStore, OtpFactors, Readiness, RecoveryCodeHasher, SecretCipher,
    TokenVerifier,
};

use crate::readiness::CachedReadiness;
use crate::settings::{Settings, SettingsError, ShutdownSettings};
use crate::shutdown::{self, DrainAwareReadiness, Draining};

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is incomplete or wrong.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// An adapter refused its settings.
    #[error("{0}")]
    Adapter(String),
    /// The listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The configured address.
        addr: String,
        /// The OS error.
        source: std::io::Error,
    },
}

/// The adapters behind the use cases' ports.
#[derive(Clone)]
pub struct Ports {
    /// Factors and events.
    pub store: Arc<dyn FactorStore>,
    /// What `/readyz` asks.
    pub readiness: Arc<dyn Readiness>,
    /// Bearer token validation.
    pub verifier: Arc<dyn TokenVerifier>,
    /// Secrets at rest.
    pub cipher: Arc<dyn SecretCipher>,
    /// Recovery codes and their keyed hashes (the same keyring).
    pub recovery: Arc<dyn RecoveryCodeHasher>,
}

impl std::fmt::Debug for Ports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ports").finish_non_exhaustive()
    }
}

/// The keyring from `crypto.keys`.
///
/// # Errors
/// [`StartError::Adapter`] when the keys are malformed.
pub fn keyring(settings: &Settings) -> Result<AesGcmCipher, StartError> {
    let cipher = AesGcmCipher::from_config(&settings.crypto.keys)
        .map_err(|e| StartError::Adapter(e.to_string()))?;
    if settings.crypto.accept_unbound {
        tracing::warn!(
            "crypto.accept_unbound is set: secrets sealed before the bound format still open; \
             run `otp-service keys rotate`, then unset it"
        );
    }
    Ok(cipher.accepting_unbound(settings.crypto.accept_unbound))
}

impl Ports {
    /// PostgreSQL, JWT/JWKS and AES-GCM, as `serve` runs them.
    ///
    /// # Errors
    /// [`StartError`] when a required key is missing or an adapter refuses it.
    pub fn production(settings: &Settings) -> Result<Self, StartError> {
        settings.require_for_serve()?;
        let store = Arc::new(
            PgFactorStore::connect(&settings.database.pg_settings())
                .map_err(|e| StartError::Adapter(e.to_string()))?,
        );
        crate::telemetry::observe_pool(&store);
        let keyring = Arc::new(keyring(settings)?);
        Ok(Self {
            store: store.clone(),
            readiness: store,
            verifier: Arc::new(bearer_verifier(settings)?),
            cipher: keyring.clone(),
            recovery: keyring,
        })
    }
}

/// JWTs by the issuer's JWKS, and opaque tokens by introspection when
/// `auth.introspection_*` is configured.
///
/// # Errors
/// [`StartError::Adapter`] when a token setting is refused.
pub fn bearer_verifier(settings: &Settings) -> Result<BearerVerifier, StartError> {
    let adapter = |e: adapters_token::TokenConfigError| StartError::Adapter(e.to_string());
    let auth = &settings.auth;
    let jwt = JwtVerifier::new(JwtSettings {
        issuer: auth.issuer.clone(),
        audience: auth.audience.clone(),
        jwks_url: Some(auth.jwks_url.clone()).filter(|url| !url.trim().is_empty()),
        claims: claim_names(settings),
        leeway: auth.leeway,
        http_timeout: auth.http_timeout,
        min_refresh_interval: auth.jwks_refresh_interval,
        allowed_clients: auth.allowed_clients.clone(),
        allow_http: auth.allow_insecure_http,
    })
    .map_err(adapter)?;
    let introspection = if auth.introspection_enabled() {
        let client_auth = match &auth.introspection_key_file {
            Some(path) => ClientAuth::from_zitadel_key_file(path).map_err(adapter)?,
            None => ClientAuth::Basic {
                client_id: auth.introspection_client_id.clone(),
                client_secret: auth.introspection_client_secret.clone(),
            },
        };
        let mut introspection =
            IntrospectionSettings::new(auth.issuer.clone(), auth.audience.clone(), client_auth);
        introspection.url =
            Some(auth.introspection_url.clone()).filter(|url| !url.trim().is_empty());
        introspection.claims = claim_names(settings);
        introspection.leeway = auth.leeway;
        introspection.cache_ttl = auth.introspection_cache_ttl;
        introspection.http_timeout = auth.http_timeout;
        introspection.negative_cache_ttl = auth.introspection_negative_cache_ttl;
        introspection.max_concurrent = auth.introspection_max_concurrent;
        introspection
            .allowed_clients
            .clone_from(&auth.allowed_clients);
        introspection.allow_http = auth.allow_insecure_http;
        Some(IntrospectionVerifier::new(introspection).map_err(adapter)?)
    } else {
        None
    };
    BearerVerifier::new(Some(jwt), introspection).map_err(adapter)
}

/// The identity claim names from `auth.*_claim`.
#[must_use]
pub fn claim_names(settings: &Settings) -> ClaimNames {
    ClaimNames {
        user_id: settings.auth.user_id_claim.clone(),
        org_id: settings.auth.org_id_claim.clone(),
        login_name: settings.auth.login_name_claim.clone(),
        scope: settings.auth.scope_claim.clone(),
        roles: settings.auth.roles_claim.clone(),
    }
}

/// A REST listener being served (`adapters_http::serve`).
type HttpServerFuture = std::pin::Pin<Box<dyn Future<Output = std::io::Result<()>> + Send>>;

/// A started service: its bound ports and the servers to await.
pub struct Application {
    port: u16,
    grpc_port: u16,
    internal_port: Option<u16>,
    internal_grpc_port: Option<u16>,
    servers: Vec<HttpServerFuture>,
    grpc: Vec<tokio::task::JoinHandle<Result<(), adapters_grpc::GrpcError>>>,
    stop_listeners: tokio::sync::watch::Sender<bool>,
    drain_grpc: tokio::sync::watch::Sender<bool>,
    purge: tokio::task::JoinHandle<()>,
    draining: Draining,
    shutdown: ShutdownSettings,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("port", &self.port)
            .field("internal_port", &self.internal_port)
            .finish_non_exhaustive()
    }
}

/// Binds `addr` (port 0 picks a free port): the listener and its port.
fn bind(addr: &str) -> Result<(TcpListener, u16), StartError> {
    let bind_error = |source| StartError::Bind {
        addr: addr.to_owned(),
        source,
    };
    let listener = TcpListener::bind(addr).map_err(bind_error)?;
    let port = listener.local_addr().map_err(bind_error)?.port();
    Ok((listener, port))
}

impl Application {
    /// Binds `http.addr` and `grpc.addr`, and `http.internal_addr` /
    /// `grpc.internal_addr` when set (port 0 picks a free port), and starts
    /// the servers. The trusted calls (the login check) are served on the
    /// internal listeners when those are configured, else on the public
    /// ones. Must be called inside a Tokio runtime.
    ///
    /// # Errors
    /// [`StartError`] for bad TOTP settings or an address that cannot be bound.
    pub fn start(settings: &Settings, ports: Ports) -> Result<Self, StartError> {
        let totp = settings.use_case_settings()?;
        let recovery = settings.recovery.use_case_settings()?;
        let purge = tokio::spawn(purge_pending_factors(ports.store.clone(), totp.pending_ttl));
        let factors = OtpFactors::new(
            ports.store,
            ports.cipher,
            Arc::new(OsSecrets),
            Arc::new(SystemClock),
            totp,
        )
        .with_recovery_codes(ports.recovery, recovery);
        let draining = Draining::default();
        let auth = Authenticator::new(ports.verifier);
        let (stop_listeners, stopped) = tokio::sync::watch::channel(false);
        let (drain_grpc, drain_started) = tokio::sync::watch::channel(false);

        let grpc_internal = settings.grpc.internal();
        let mut grpc = Vec::new();
        let mut grpc_ports = Vec::new();
        let public_services = if grpc_internal.is_some() {
            adapters_grpc::Services::UserFacing
        } else {
            adapters_grpc::Services::All
        };
        let listeners = std::iter::once((settings.grpc.addr.as_str(), public_services))
            .chain(grpc_internal.map(|addr| (addr, adapters_grpc::Services::Trusted)));
        for (addr, services) in listeners {
            let (listener, port) = bind(addr)?;
            let bind_error = |source| StartError::Bind {
                addr: addr.to_owned(),
                source,
            };
            listener.set_nonblocking(true).map_err(bind_error)?;
            let listener = tokio::net::TcpListener::from_std(listener).map_err(bind_error)?;
            let (mut drain_started, mut stopped) = (drain_started.clone(), stopped.clone());
            grpc.push(tokio::spawn(adapters_grpc::serve(
                listener,
                factors.clone(),
                auth.clone(),
                &adapters_grpc::GrpcSettings {
                    cors_allowed_origins: settings.grpc.origins(),
                    services,
                    reflection: settings.grpc.reflection,
                    limits: settings.grpc.limits(),
                },
                async move {
                    // A dropped sender (the process ends without a drain) is no drain.
                    if drain_started.wait_for(|started| *started).await.is_err() {
                        std::future::pending::<()>().await;
                    }
                },
                async move {
                    let _ = stopped.wait_for(|stop| *stop).await;
                },
            )));
            grpc_ports.push(port);
        }

        let readiness: Arc<dyn Readiness> = Arc::new(CachedReadiness::new(
            ports.readiness,
            settings.http.readiness_cache,
        ));
        let state = HttpState {
            factors,
            auth,
            readiness: Arc::new(DrainAwareReadiness::new(readiness, draining.clone())),
        };
        let http_internal = settings.http.internal();
        let public_routes = if http_internal.is_some() {
            adapters_http::Routes::Public
        } else {
            adapters_http::Routes::All
        };
        let listeners = std::iter::once((settings.http.addr.as_str(), public_routes))
            .chain(http_internal.map(|addr| (addr, adapters_http::Routes::Internal)));
        let mut servers = Vec::new();
        let mut http_ports = Vec::new();
        for (addr, routes) in listeners {
            let (listener, port) = bind(addr)?;
            let mut stopped = stopped.clone();
            let server = adapters_http::serve(
                listener,
                state.clone(),
                adapters_http::ServeSettings {
                    routes,
                    body_timeout: settings.http.body_timeout,
                    workers: settings.http.workers,
                    shutdown_timeout: settings.shutdown.timeout,
                },
                async move {
                    let _ = stopped.wait_for(|stop| *stop).await;
                },
            )
            .map_err(|source| StartError::Bind {
                addr: addr.to_owned(),
                source,
            })?;
            let server: HttpServerFuture = Box::pin(server);
            servers.push(server);
            http_ports.push(port);
        }
        Ok(Self {
            port: http_ports[0],
            grpc_port: grpc_ports[0],
            internal_port: http_ports.get(1).copied(),
            internal_grpc_port: grpc_ports.get(1).copied(),
            servers,
            grpc,
            stop_listeners,
            drain_grpc,
            purge,
            draining,
            shutdown: settings.shutdown.clone(),
        })
    }

    /// The bound TCP port.
    #[must_use]
    pub const fn port(&self) -> u16 {
        self.port
    }

    /// The bound gRPC / gRPC-web port.
    #[must_use]
    pub const fn grpc_port(&self) -> u16 {
        self.grpc_port
    }

    /// The bound internal REST port (the trusted calls), if configured.
    #[must_use]
    pub const fn internal_port(&self) -> Option<u16> {
        self.internal_port
    }

    /// The bound internal gRPC port (the trusted calls), if configured.
    #[must_use]
    pub const fn internal_grpc_port(&self) -> Option<u16> {
        self.internal_grpc_port
    }

    /// Serves until SIGTERM or Ctrl-C, then shuts down gracefully (see
    /// [`Application::run_until`]); a second signal ends the process at once.
    ///
    /// # Errors
    /// Either server's I/O error.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.run_until(shutdown::signal(), async {
            shutdown::signal().await;
            tracing::warn!("second signal: exiting at once");
            std::process::exit(130);
        })
        .await
    }

    /// Serves until `stop` completes, then: readiness fails at once; after
    /// `shutdown.drain_delay` every listener stops accepting; in-flight REST
    /// and gRPC requests get `shutdown.timeout` to finish. `abort` completing
    /// at any point after `stop` cuts the drain short.
    ///
    /// # Errors
    /// Any server's I/O error.
    pub async fn run_until(
        self,
        stop: impl Future<Output = ()> + Send,
        abort: impl Future<Output = ()> + Send,
    ) -> std::io::Result<()> {
        let Self {
            servers,
            grpc,
            stop_listeners,
            drain_grpc,
            purge,
            draining,
            shutdown,
            ..
        } = self;
        let mut http = tokio::task::JoinSet::new();
        for server in servers {
            http.spawn(server);
        }
        tokio::select! {
            // A server that ends by itself (an I/O error) ends the process.
            Some(result) = http.join_next() => {
                purge.abort();
                let _ = stop_listeners.send(true);
                return result.map_err(std::io::Error::other)?;
            }
            () = stop => {}
        }
        draining.start();
        let _ = drain_grpc.send(true);
        tracing::info!(
            drain_delay = ?shutdown.drain_delay,
            timeout = ?shutdown.timeout,
            "draining: readiness fails, listeners stop after the delay"
        );
        purge.abort();
        let drain = async {
            tokio::time::sleep(shutdown.drain_delay).await;
            tracing::info!("no longer accepting; finishing in-flight requests");
            let _ = stop_listeners.send(true);
            let (http, grpc) = tokio::join!(
                async {
                    while let Some(result) = http.join_next().await {
                        result.map_err(std::io::Error::other)??;
                    }
                    Ok::<(), std::io::Error>(())
                },
                async {
                    let all = async {
                        for server in grpc {
                            server
                                .await
                                .map_err(std::io::Error::other)?
                                .map_err(std::io::Error::other)?;
                        }
                        Ok::<(), std::io::Error>(())
                    };
                    match tokio::time::timeout(shutdown.timeout, all).await {
                        Ok(result) => result,
                        Err(_) => {
                            tracing::warn!(
                                "gRPC calls still open after shutdown.timeout; leaving them"
                            );
                            Ok(())
                        }
                    }
                }
            );
            http.and(grpc)
        };
        tokio::select! {
            result = drain => {
                tracing::info!("stopped");
                result
            }
            () = abort => Ok(()),
        }
    }
}

/// Deletes pending factors past their time to live, once a minute (they
/// count as absent already; this only keeps the table small). Every replica
/// runs it; the delete is idempotent.
async fn purge_pending_factors(store: Arc<dyn FactorStore>, pending_ttl: chrono::TimeDelta) {
    use application::Clock;
    let mut every = tokio::time::interval(std::time::Duration::from_secs(60));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let cutoff = SystemClock.now() - pending_ttl;
        match store.purge_pending(cutoff).await {
            Ok(0) => {}
            Ok(purged) => tracing::info!(purged, "expired pending factors purged"),
            Err(error) => tracing::warn!(%error, "purging expired pending factors failed"),
        }
    }
}
