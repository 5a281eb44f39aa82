//! Configuration: built-in defaults < file (`--config PATH` / `OTP_CONFIG`) <
//! environment (`OTP__<SECTION>__<KEY>`). Unknown keys are an error; secrets
//! are `secrecy` types and print as `[REDACTED]`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer};

use application::{AdminPolicy, CallerAllowlist, RecentAuthPolicy, RecoverySettings, TotpSettings};
use chrono::TimeDelta;
use domain::{AttemptPolicy, TotpAlgorithm, TotpParams, TotpParamsError};

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// A source could not be read or a value has the wrong shape or an
    /// unknown key. The text names the key, never the value (which may be a
    /// secret put under the wrong name).
    #[error("configuration: {0}")]
    Load(String),
    /// A value is out of its allowed range.
    #[error("configuration: {0}")]
    Invalid(String),
}

/// Everything the service reads at start.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// `[http]`
    pub http: HttpSettings,
    /// `[grpc]`
    pub grpc: GrpcConfig,
    /// `[database]`
    pub database: DatabaseSettings,
    /// `[auth]`
    pub auth: AuthSettings,
    /// `[totp]`
    pub totp: TotpConfig,
    /// `[crypto]`
    pub crypto: CryptoSettings,
    /// `[recovery]`
    pub recovery: RecoveryConfig,
    /// `[log]`
    pub log: LogSettings,
    /// `[shutdown]`
    pub shutdown: ShutdownSettings,
    /// `[import]`
    pub import: ImportSettings,
}

/// `[import]`: what imported secrets (the administrators' import call and
/// `otp-service import`) may be.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImportSettings {
    /// Accept imported secrets of 80 to 127 bits (what some older systems
    /// generated); off: 128 bits at least, as RFC 4226 asks.
    pub allow_legacy_80_bit: bool,
}

/// `[shutdown]`: how SIGTERM / Ctrl-C stop the service without dropping requests.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShutdownSettings {
    /// After the signal, `/readyz` answers 503 at once while the listeners
    /// keep accepting for this long, so load balancers stop sending first.
    #[serde(deserialize_with = "duration")]
    pub drain_delay: Duration,
    /// Then in-flight requests get this long to finish.
    #[serde(deserialize_with = "duration")]
    pub timeout: Duration,
}

impl Default for ShutdownSettings {
    fn default() -> Self {
        Self {
            drain_delay: Duration::from_secs(5),
            timeout: Duration::from_secs(20),
        }
    }
}

/// `[http]`: the REST listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSettings {
    /// Listen address, `host:port`.
    pub addr: String,
    /// Worker threads; 0 = one per CPU core. Default 1: every REST request
    /// and the database connections it opens then run on one thread, with
    /// no cross-thread wake-up per round trip (about a quarter less CPU per
    /// request in `just bench`); scale with replicas, or raise it.
    pub workers: usize,
    /// Listen address of the trusted calls (the login check), `host:port`;
    /// they are then not served on `addr`. Empty: served on `addr`.
    pub internal_addr: String,
    /// How long a handler waits for the whole request body (408 after).
    #[serde(deserialize_with = "duration")]
    pub body_timeout: Duration,
    /// How long a `/readyz` answer is reused: probes cost at most one
    /// database check per this period (0 = every probe checks).
    #[serde(deserialize_with = "duration")]
    pub readiness_cache: Duration,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            addr: "0.0.0.0:8080".into(),
            workers: 1,
            internal_addr: "0.0.0.0:8082".into(),
            body_timeout: Duration::from_secs(10),
            readiness_cache: Duration::from_secs(1),
        }
    }
}

impl HttpSettings {
    /// The internal listener's address, if one is configured.
    #[must_use]
    pub fn internal(&self) -> Option<&str> {
        Some(self.internal_addr.trim()).filter(|addr| !addr.is_empty())
    }
}

/// `[grpc]`: the gRPC and gRPC-web listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GrpcConfig {
    /// Listen address, `host:port` (gRPC over HTTP/2, gRPC-web over HTTP/1.1 and 2).
    pub addr: String,
    /// Browser origins allowed to call gRPC-web, comma separated; `*` = any; empty = none.
    pub cors_allowed_origins: String,
    /// Listen address of the trusted calls (`otp.v1.OtpCheckService`);
    /// they are then not served on `addr`. Empty: served on `addr`.
    pub internal_addr: String,
    /// Serve gRPC server reflection (v1 and v1alpha).
    pub reflection: bool,
    /// HTTP/2 streams one connection may have open.
    pub max_concurrent_streams: u32,
    /// Streams reset for the client's errors before the connection is closed.
    pub max_local_error_reset_streams: usize,
    /// Client-reset streams pending accept before the connection is closed.
    pub max_pending_accept_reset_streams: usize,
    /// Calls handled at once per connection.
    pub concurrency_limit_per_connection: usize,
    /// Longest time from a call's headers to its answer, body read included.
    #[serde(deserialize_with = "duration")]
    pub request_timeout: Duration,
    /// HTTP/2 PING interval (0 = off).
    #[serde(deserialize_with = "duration")]
    pub keepalive_interval: Duration,
    /// An unanswered PING closes the connection after this.
    #[serde(deserialize_with = "duration")]
    pub keepalive_timeout: Duration,
    /// Connections are asked to close (GOAWAY) after this long.
    #[serde(deserialize_with = "duration")]
    pub max_connection_age: Duration,
    /// Then they are cut after this long.
    #[serde(deserialize_with = "duration")]
    pub max_connection_age_grace: Duration,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        let limits = adapters_grpc::GrpcLimits::default();
        Self {
            addr: "0.0.0.0:8081".into(),
            cors_allowed_origins: String::new(),
            internal_addr: "0.0.0.0:8083".into(),
            reflection: true,
            max_concurrent_streams: limits.max_concurrent_streams,
            max_local_error_reset_streams: limits.max_local_error_reset_streams,
            max_pending_accept_reset_streams: limits.max_pending_accept_reset_streams,
            concurrency_limit_per_connection: limits.concurrency_limit_per_connection,
            request_timeout: limits.request_timeout,
            keepalive_interval: limits.keepalive_interval,
            keepalive_timeout: limits.keepalive_timeout,
            max_connection_age: limits.max_connection_age,
            max_connection_age_grace: limits.max_connection_age_grace,
        }
    }
}

impl GrpcConfig {
    /// The internal listener's address, if one is configured.
    #[must_use]
    pub fn internal(&self) -> Option<&str> {
        Some(self.internal_addr.trim()).filter(|addr| !addr.is_empty())
    }

    /// The listener limits.
    #[must_use]
    pub fn limits(&self) -> adapters_grpc::GrpcLimits {
        adapters_grpc::GrpcLimits {
            max_concurrent_streams: self.max_concurrent_streams,
            max_local_error_reset_streams: self.max_local_error_reset_streams,
            max_pending_accept_reset_streams: self.max_pending_accept_reset_streams,
            concurrency_limit_per_connection: self.concurrency_limit_per_connection,
            request_timeout: self.request_timeout,
            keepalive_interval: self.keepalive_interval,
            keepalive_timeout: self.keepalive_timeout,
            max_connection_age: self.max_connection_age,
            max_connection_age_grace: self.max_connection_age_grace,
        }
    }

    /// The allowed origins as a list.
    #[must_use]
    pub fn origins(&self) -> Vec<String> {
        self.cors_allowed_origins
            .split(',')
            .map(str::trim)
            .filter(|o| !o.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

/// `[database]`: PostgreSQL.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseSettings {
    /// `postgres://user:password@host:port/db` (secret: it may hold a password).
    pub url: SecretString,
    /// A file holding `url` (a mounted Secret); wins over `url`.
    pub url_file: Option<PathBuf>,
    /// Pool size per replica.
    pub max_connections: usize,
    /// How long to wait for a new connection.
    #[serde(deserialize_with = "duration")]
    pub connect_timeout: Duration,
    /// How long any statement may run, row-lock waits included (0 = no limit).
    #[serde(deserialize_with = "duration")]
    pub statement_timeout: Duration,
    /// Keep each connection's statements prepared (one round trip per
    /// statement after the first). Off: every statement is prepared anew.
    /// Ignored (always off) with `pooler = "transaction"`.
    pub prepared_statements: bool,
    /// What sits between the service and PostgreSQL: `session` (nothing, or
    /// a pooler in session mode) or `transaction` (PgBouncer
    /// `pool_mode = transaction`: every statement in a transaction of its
    /// own, none kept prepared).
    pub pooler: PoolerMode,
    /// Most users' writes combined into one statement and one commit when
    /// several wait at once; 1 runs each write alone (a transaction per
    /// user, as a distributed engine wants).
    pub write_batch_size: usize,
    /// Most combined statements in flight at once per pool.
    pub write_batches: usize,
    /// Most users' reads combined into one statement when several wait at
    /// once; 1 runs each read alone.
    pub read_batch_size: usize,
    /// Most users whose state as this replica last wrote it a change may
    /// decide on without reading first (the write still applies only if
    /// that is the user's state); 0 keeps none.
    pub known_states: usize,
    /// How long after its write such a state is used.
    #[serde(deserialize_with = "duration")]
    pub known_state_ttl: Duration,
}

/// `database.pooler`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PoolerMode {
    /// No pooler, or one that keeps a client on one server connection.
    #[default]
    Session,
    /// A pooler that hands out server connections per transaction.
    Transaction,
}

impl From<PoolerMode> for adapters_postgres::Pooler {
    fn from(mode: PoolerMode) -> Self {
        match mode {
            PoolerMode::Session => Self::Session,
            PoolerMode::Transaction => Self::Transaction,
        }
    }
}

impl DatabaseSettings {
    /// The store's settings from these.
    #[must_use]
    pub fn pg_settings(&self) -> adapters_postgres::PgSettings {
        adapters_postgres::PgSettings {
            url: self.url.clone(),
            max_connections: self.max_connections,
            connect_timeout: self.connect_timeout,
            statement_timeout: self.statement_timeout,
            prepared_statements: self.prepared_statements,
            pooler: self.pooler.into(),
            write_batch_size: self.write_batch_size,
            write_batches: self.write_batches,
            read_batch_size: self.read_batch_size,
            known_states: self.known_states,
            known_state_ttl: self.known_state_ttl,
        }
    }
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: SecretString::from("postgres://postgres@127.0.0.1:5432/otp_service"),
            url_file: None,
            max_connections: 16,
            connect_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(5),
            prepared_statements: true,
            pooler: PoolerMode::Session,
            write_batch_size: 32,
            write_batches: 2,
            read_batch_size: 32,
            known_states: 2048,
            known_state_ttl: Duration::from_secs(300),
        }
    }
}

/// `[auth]`: which tokens are trusted and where identities come from.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// The token issuer (`iss`), e.g. `https://acme.zitadel.cloud`. Required by `serve`.
    pub issuer: String,
    /// A value `aud` must contain (ZITADEL: the project or client id). Required by `serve`.
    pub audience: String,
    /// JWKS address; empty = discovered from `{issuer}/.well-known/openid-configuration`.
    pub jwks_url: String,
    /// Claim carrying the user id.
    pub user_id_claim: String,
    /// Claim carrying the organisation id (`resourceOwner`).
    pub org_id_claim: String,
    /// Claim carrying the login name (the otpauth account).
    pub login_name_claim: String,
    /// Clock leeway for `exp` / `nbf`.
    #[serde(deserialize_with = "duration")]
    pub leeway: Duration,
    /// Shortest pause between two JWKS refetches for unknown key ids.
    #[serde(deserialize_with = "duration")]
    pub jwks_refresh_interval: Duration,
    /// Timeout of discovery and JWKS requests.
    #[serde(deserialize_with = "duration")]
    pub http_timeout: Duration,
    /// Verified JWTs remembered (by SHA-256) so the same token again skips
    /// the signature check; 0 turns the cache off.
    pub token_cache_capacity: usize,
    /// How long a verified JWT is remembered at most (never past its
    /// `exp`); 0 turns the cache off.
    #[serde(deserialize_with = "duration")]
    pub token_cache_max_age: Duration,
    /// Claim carrying the granted scopes (space-separated or an array).
    pub scope_claim: String,
    /// Claim carrying the granted roles: ZITADEL's project roles object
    /// (its keys are the roles), an array or a space-separated string; a
    /// dotted name is a path (Keycloak `realm_access.roles`).
    pub roles_claim: String,
    /// The role that administers the OTP factors of the token's own
    /// organisation (the org claim must equal the factor's resource
    /// owner); empty = nobody.
    pub admin_role: String,
    /// The role that administers every organisation's OTP factors; empty = nobody.
    pub instance_admin_role: String,
    /// A scope that counts as `admin_role` (providers without roles); empty = none.
    pub admin_scope: String,
    /// The scope a trusted caller's token needs for the login check
    /// (`POST /v1/users/{user_id}/otp/_check`).
    pub check_scope: String,
    /// RFC 7662 introspection endpoint for opaque tokens; empty = discovered
    /// (`introspection_endpoint`) when introspection is configured.
    pub introspection_url: String,
    /// Client id for introspection with HTTP Basic client authentication.
    pub introspection_client_id: String,
    /// Its client secret.
    pub introspection_client_secret: SecretString,
    /// A file holding the client secret (a mounted Secret); wins.
    pub introspection_client_secret_file: Option<PathBuf>,
    /// A ZITADEL application key file (JSON) for `private_key_jwt` client
    /// authentication; used instead of the client id + secret when set.
    pub introspection_key_file: Option<PathBuf>,
    /// How long an active introspection answer is reused (never beyond the
    /// token's `exp`); 0 turns the cache off.
    #[serde(deserialize_with = "duration")]
    pub introspection_cache_ttl: Duration,
    /// How long a rejected token's introspection answer is remembered; 0 = never.
    #[serde(deserialize_with = "duration")]
    pub introspection_negative_cache_ttl: Duration,
    /// Introspection requests in flight at most; beyond, 503 at once.
    pub introspection_max_concurrent: usize,
    /// Clients trusted with the login check, matched against the token's
    /// `client_id`, `azp` or `sub`. Empty: no caller may check.
    #[serde(deserialize_with = "string_list")]
    pub check_clients: Vec<String>,
    /// When not empty, a token naming its client (`azp`, else `client_id`)
    /// must name the audience or one of these.
    #[serde(deserialize_with = "string_list")]
    pub allowed_clients: Vec<String>,
    /// Allow `http://` issuer, JWKS and introspection URLs to hosts other
    /// than loopback.
    pub allow_insecure_http: bool,
    /// Add over an existing factor and Remove need a sign-in (`auth_time`)
    /// at most this old; 0 = no age limit.
    #[serde(deserialize_with = "duration")]
    pub recent_auth_max_age: Duration,
    /// Add over an existing factor and Remove need one of these in the
    /// token's `amr` (e.g. `mfa`); empty = no method required.
    #[serde(deserialize_with = "string_list")]
    pub recent_auth_methods: Vec<String>,
}

impl AuthSettings {
    /// Whether opaque tokens are introspected.
    #[must_use]
    pub fn introspection_enabled(&self) -> bool {
        self.introspection_key_file.is_some() || !self.introspection_client_id.trim().is_empty()
    }
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            issuer: String::new(),
            audience: String::new(),
            jwks_url: String::new(),
            user_id_claim: "sub".into(),
            org_id_claim: "urn:zitadel:iam:user:resourceowner:id".into(),
            login_name_claim: "preferred_username".into(),
            leeway: Duration::from_secs(30),
            jwks_refresh_interval: Duration::from_secs(30),
            http_timeout: Duration::from_secs(5),
            token_cache_capacity: 10_000,
            token_cache_max_age: Duration::from_secs(60),
            scope_claim: "scope".into(),
            roles_claim: "urn:zitadel:iam:org:project:roles".into(),
            admin_role: "otp.admin".into(),
            instance_admin_role: "otp.instance_admin".into(),
            admin_scope: String::new(),
            check_scope: TotpSettings::default().check_scope,
            introspection_url: String::new(),
            introspection_client_id: String::new(),
            introspection_client_secret: SecretString::from(""),
            introspection_client_secret_file: None,
            introspection_key_file: None,
            introspection_cache_ttl: Duration::from_secs(30),
            introspection_negative_cache_ttl: Duration::from_secs(10),
            introspection_max_concurrent: 32,
            check_clients: Vec::new(),
            allowed_clients: Vec::new(),
            allow_insecure_http: false,
            recent_auth_max_age: Duration::ZERO,
            recent_auth_methods: Vec::new(),
        }
    }
}

/// `[totp]`: parameters of new factors (enrolled factors keep their own) and
/// the security policy of code checks.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TotpConfig {
    /// The otpauth URL's issuer, the name authenticator apps show.
    pub issuer: String,
    /// SHA1, SHA256 or SHA512.
    pub algorithm: String,
    /// 6 or 8.
    pub digits: u8,
    /// Seconds per step.
    pub period: u32,
    /// Steps accepted either side of now.
    pub skew: u8,
    /// Wrong codes in a row (setup verify and login check) that lock.
    pub max_attempts: u32,
    /// How long a lock lasts after the last wrong code.
    #[serde(deserialize_with = "duration")]
    pub lockout: Duration,
    /// The longest a lock lasts: each wrong code after a lock ends locks
    /// twice as long as the lock before, up to this.
    #[serde(deserialize_with = "duration")]
    pub max_lockout: Duration,
    /// Wrong codes in a row after which the factor is refused until removed.
    pub max_failures: u32,
    /// Add and Remove calls per user per sliding hour (per replica); 0 = off.
    pub max_changes_per_hour: u32,
    /// How long an added factor may stay unverified; after that it counts
    /// as absent and is purged.
    #[serde(deserialize_with = "duration")]
    pub pending_ttl: Duration,
}

impl Default for TotpConfig {
    /// The use cases' defaults ([`TotpSettings::default`]), as configuration:
    /// the values live there once.
    fn default() -> Self {
        let defaults = TotpSettings::default();
        let (params, attempts) = (defaults.params, defaults.attempts);
        let std = |delta: TimeDelta| delta.to_std().unwrap_or_default();
        Self {
            issuer: defaults.issuer,
            algorithm: params.algorithm().as_str().into(),
            digits: params.digits(),
            period: params.period(),
            skew: params.skew(),
            max_attempts: attempts.max_attempts(),
            lockout: std(attempts.lockout()),
            max_lockout: std(attempts.max_lockout()),
            max_failures: attempts.max_failures(),
            max_changes_per_hour: defaults.max_changes_per_hour,
            pending_ttl: std(defaults.pending_ttl),
        }
    }
}

impl TotpConfig {
    /// The checked parameter set.
    ///
    /// # Errors
    /// When a value is outside what the domain allows.
    pub fn params(&self) -> Result<TotpParams, TotpParamsError> {
        TotpParams::new(
            TotpAlgorithm::parse(&self.algorithm)?,
            self.digits,
            self.period,
            self.skew,
        )
    }

    /// The use cases' settings: parameters plus the checked policy.
    ///
    /// # Errors
    /// [`SettingsError::Invalid`] naming the value out of range.
    pub fn use_case_settings(&self, check_scope: &str) -> Result<TotpSettings, SettingsError> {
        let invalid = |what: String| SettingsError::Invalid(format!("totp: {what}"));
        // Named by key, never echoing the value.
        let params = self.params().map_err(|e| {
            SettingsError::Invalid(
                match e {
                    TotpParamsError::Algorithm(_) => {
                        "totp.algorithm must be SHA1, SHA256 or SHA512"
                    }
                    TotpParamsError::Digits(_) => "totp.digits must be 6 or 8",
                    TotpParamsError::Period(_) => "totp.period must be between 10 and 300 seconds",
                    TotpParamsError::Skew(_) => "totp.skew must be between 0 and 2 steps",
                    _ => "totp: invalid parameters",
                }
                .to_owned(),
            )
        })?;
        let lockout =
            TimeDelta::from_std(self.lockout).map_err(|_| invalid("lockout is too long".into()))?;
        let max_lockout = TimeDelta::from_std(self.max_lockout)
            .map_err(|_| invalid("max_lockout is too long".into()))?;
        let attempts =
            AttemptPolicy::escalating(self.max_attempts, lockout, max_lockout, self.max_failures)
                .map_err(|e| invalid(e.to_string()))?;
        let pending_ttl = TimeDelta::from_std(self.pending_ttl)
            .ok()
            .filter(|ttl| *ttl > TimeDelta::zero())
            .ok_or_else(|| invalid("pending_ttl must be longer than zero".into()))?;
        if check_scope.trim().is_empty() {
            return Err(SettingsError::Invalid("auth.check_scope is empty".into()));
        }
        Ok(TotpSettings {
            issuer: self.issuer.clone(),
            params,
            pending_ttl,
            attempts,
            check_scope: check_scope.to_owned(),
            check_clients: CallerAllowlist::default(),
            recent_auth: RecentAuthPolicy::default(),
            max_changes_per_hour: self.max_changes_per_hour,
            admins: AdminPolicy::default(),
            import_allow_legacy_80_bit: false,
        })
    }
}

/// `[recovery]`: recovery codes (their hashes use the `crypto.keys` keyring).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RecoveryConfig {
    /// The most codes one `GenerateRecoveryCodes` may ask for (1 to 100).
    pub max_codes: u32,
}

impl Default for RecoveryConfig {
    fn default() -> Self {
        Self {
            max_codes: RecoverySettings::DEFAULT.max_codes,
        }
    }
}

impl RecoveryConfig {
    /// The use cases' recovery settings.
    ///
    /// # Errors
    /// [`SettingsError::Invalid`] for `max_codes` outside 1..=100.
    pub fn use_case_settings(self) -> Result<RecoverySettings, SettingsError> {
        if !(1..=100).contains(&self.max_codes) {
            return Err(SettingsError::Invalid(
                "recovery.max_codes must be between 1 and 100".into(),
            ));
        }
        Ok(RecoverySettings {
            max_codes: self.max_codes,
        })
    }
}

/// `[crypto]`: keys sealing secrets at rest.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CryptoSettings {
    /// `id:base64-32-bytes`, comma separated; the first seals, all open.
    pub keys: SecretString,
    /// A file holding the keys, comma- or newline-separated (a mounted
    /// Secret); wins over `keys`.
    pub keys_file: Option<PathBuf>,
    /// Also open secrets sealed by versions before the bound format (bound
    /// only to owner and key id): set it while upgrading, run
    /// `otp-service keys rotate`, then unset it (docs/security.md). Off by
    /// default: a database writer could put back an older unbound secret.
    pub accept_unbound: bool,
}

impl Default for CryptoSettings {
    fn default() -> Self {
        Self {
            keys: SecretString::from(""),
            keys_file: None,
            accept_unbound: false,
        }
    }
}

/// Reads a secret from a mounted file: the whole file, without the trailing
/// line break editors and `kubectl create secret --from-file` leave.
fn read_secret_file(key: &str, path: &Path) -> Result<SecretString, SettingsError> {
    let text = std::fs::read_to_string(path).map_err(|error| {
        SettingsError::Invalid(format!(
            "{key}: cannot read the file it names: {}",
            error.kind()
        ))
    })?;
    Ok(SecretString::from(text.trim_end_matches(['\n', '\r'])))
}

/// `[log]`: log lines on stdout.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// `json` (one JSON object per line) or `text`.
    pub format: String,
    /// Filter directives, `RUST_LOG` syntax; `RUST_LOG` wins when set.
    pub filter: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: "json".into(),
            filter: "info".into(),
        }
    }
}

/// A list as a TOML array of strings or one comma-separated string (the
/// form an environment variable takes); blank entries are dropped.
fn string_list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        List(Vec<String>),
        Text(String),
    }
    let items = match Raw::deserialize(deserializer).map_err(|_| {
        serde::de::Error::custom("expected a list of strings or a comma-separated string")
    })? {
        Raw::List(items) => items,
        Raw::Text(text) => text.split(',').map(str::to_owned).collect(),
    };
    Ok(items
        .into_iter()
        .map(|item| item.trim().to_owned())
        .filter(|item| !item.is_empty())
        .collect())
}

/// A duration as `"30s"`, `"5m"`, `"1h 30m"` or a number of seconds.
fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Seconds(u64),
        Text(String),
    }
    // The messages never quote the value: it could be a misplaced secret.
    let not_a_duration =
        || serde::de::Error::custom("expected a duration such as 30s, 5m or 1h 30m");
    match Raw::deserialize(deserializer).map_err(|_| not_a_duration())? {
        Raw::Seconds(seconds) => Ok(Duration::from_secs(seconds)),
        Raw::Text(text) => match text.trim().parse::<u64>() {
            Ok(seconds) => Ok(Duration::from_secs(seconds)),
            Err(_) => humantime::parse_duration(text.trim()).map_err(|_| not_a_duration()),
        },
    }
}

/// A configuration error without the offending value: the key, where it
/// came from and what was expected. Values could be secrets set under the
/// wrong key (a database URL in `OTP__DATABASE__MAX_CONNECTIONS`).
fn describe_config_error(error: &config::ConfigError) -> String {
    use config::ConfigError;
    let at = |key: &Option<String>, origin: &Option<String>| {
        let mut text = String::new();
        if let Some(key) = key {
            text.push_str(&format!(" for key `{key}`"));
        }
        if let Some(origin) = origin {
            text.push_str(&format!(" in {origin}"));
        }
        text
    };
    match error {
        ConfigError::Type {
            origin,
            expected,
            key,
            ..
        } => format!("invalid value (expected {expected}){}", at(key, origin)),
        ConfigError::At { error, origin, key } => {
            format!("{}{}", describe_config_error(error), at(key, origin))
        }
        ConfigError::Message(message) => {
            // Serde's own texts name fields; others may quote the value.
            let safe = ["unknown field", "missing field", "expected "];
            if safe.iter().any(|prefix| message.starts_with(prefix)) {
                message.clone()
            } else {
                "invalid value".to_owned()
            }
        }
        ConfigError::NotFound(key) => format!("missing configuration field {key:?}"),
        // A parser's text quotes the offending line: keep its position only.
        ConfigError::FileParse { uri, cause } => {
            let cause = cause.to_string();
            let position = cause.lines().next().unwrap_or("cannot be parsed");
            match uri {
                Some(uri) => format!("{position} in {uri}"),
                None => position.to_owned(),
            }
        }
        ConfigError::PathParse { .. } => "invalid key path".to_owned(),
        other => other.to_string(),
    }
}

impl Settings {
    /// Loads defaults, then the file (if any), then `OTP__*` variables from `env`.
    ///
    /// # Errors
    /// [`SettingsError`] for an unreadable file, a value of the wrong type or an unknown key.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, SettingsError> {
        let mut builder = config::Config::builder();
        if let Some(file) = file {
            builder = builder.add_source(config::File::from(file).required(true));
        }
        let env: config::Map<String, String> = env
            .into_iter()
            .filter(|(key, _)| key.starts_with("OTP__"))
            .collect();
        builder = builder.add_source(
            config::Environment::with_prefix("OTP")
                .prefix_separator("__")
                .separator("__")
                .source(Some(env)),
        );
        let mut settings: Self = builder
            .build()
            .and_then(config::Config::try_deserialize)
            .map_err(|error| SettingsError::Load(describe_config_error(&error)))?;
        settings.check_listener_limits()?;
        settings.read_secret_files()?;
        settings.use_case_settings()?;
        Ok(settings)
    }

    /// The listener limits that must not be zero.
    fn check_listener_limits(&self) -> Result<(), SettingsError> {
        let (http, grpc) = (&self.http, &self.grpc);
        let zero = [
            ("http.body_timeout", http.body_timeout.is_zero()),
            ("grpc.request_timeout", grpc.request_timeout.is_zero()),
            (
                "grpc.max_concurrent_streams",
                grpc.max_concurrent_streams == 0,
            ),
            (
                "grpc.concurrency_limit_per_connection",
                grpc.concurrency_limit_per_connection == 0,
            ),
            ("grpc.max_connection_age", grpc.max_connection_age.is_zero()),
        ];
        match zero.iter().find(|(_, is_zero)| *is_zero) {
            Some((key, _)) => Err(SettingsError::Invalid(format!("{key} must be above zero"))),
            None => Ok(()),
        }
    }

    /// The use cases' settings: `[totp]` and the caller rules of `[auth]`.
    ///
    /// # Errors
    /// [`SettingsError::Invalid`] naming the value out of range.
    pub fn use_case_settings(&self) -> Result<TotpSettings, SettingsError> {
        let mut totp = self.totp.use_case_settings(&self.auth.check_scope)?;
        totp.check_clients = CallerAllowlist::new(self.auth.check_clients.iter().cloned());
        let max_age = match self.auth.recent_auth_max_age {
            Duration::ZERO => None,
            age => Some(TimeDelta::from_std(age).map_err(|_| {
                SettingsError::Invalid("auth.recent_auth_max_age is too long".into())
            })?),
        };
        totp.recent_auth = RecentAuthPolicy {
            max_age,
            methods: self.auth.recent_auth_methods.clone(),
        };
        let named = |value: &str| Some(value.trim().to_owned()).filter(|v| !v.is_empty());
        totp.admins = AdminPolicy {
            org_role: named(&self.auth.admin_role),
            instance_role: named(&self.auth.instance_admin_role),
            org_scope: named(&self.auth.admin_scope),
        };
        totp.import_allow_legacy_80_bit = self.import.allow_legacy_80_bit;
        Ok(totp)
    }

    /// Replaces each secret whose `<key>_file` is set by that file's content.
    fn read_secret_files(&mut self) -> Result<(), SettingsError> {
        if let Some(path) = &self.database.url_file {
            self.database.url = read_secret_file("database.url_file", path)?;
        }
        if let Some(path) = &self.crypto.keys_file {
            let keys = read_secret_file("crypto.keys_file", path)?;
            // One key per line is as good as comma separated.
            let keys: Vec<&str> = keys
                .expose_secret()
                .split([',', '\n'])
                .map(str::trim)
                .filter(|line| !line.is_empty())
                .collect();
            self.crypto.keys = SecretString::from(keys.join(","));
        }
        if let Some(path) = &self.auth.introspection_client_secret_file {
            self.auth.introspection_client_secret =
                read_secret_file("auth.introspection_client_secret_file", path)?;
        }
        Ok(())
    }

    /// Checks what `serve` needs beyond the defaults.
    ///
    /// # Errors
    /// [`SettingsError::Invalid`] naming the missing keys.
    pub fn require_for_serve(&self) -> Result<(), SettingsError> {
        let mut missing = Vec::new();
        if self.auth.issuer.trim().is_empty() {
            missing.push("auth.issuer (OTP__AUTH__ISSUER)");
        }
        if self.auth.audience.trim().is_empty() {
            missing.push("auth.audience (OTP__AUTH__AUDIENCE)");
        }
        if self.crypto.keys.expose_secret().trim().is_empty() {
            missing
                .push("crypto.keys (OTP__CRYPTO__KEYS; make one with `otp-service keys generate`)");
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(SettingsError::Invalid(format!(
                "missing {}",
                missing.join(", ")
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use secrecy::ExposeSecret;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_alone_load() {
        let settings = Settings::load(None, env(&[])).unwrap();
        assert_eq!(settings.http.addr, "0.0.0.0:8080");
        assert_eq!(settings.totp.params().unwrap(), TotpParams::default());
        assert_eq!(
            settings.auth.org_id_claim,
            "urn:zitadel:iam:user:resourceowner:id"
        );
        assert!(settings.require_for_serve().is_err());
    }

    #[test]
    fn file_then_env_override_in_that_order() {
        let mut file = tempfile();
        writeln!(file, "[http]\naddr = \"127.0.0.1:1\"\n[database]\nmax_connections = 4\nconnect_timeout = \"2s\"\n[auth]\naudience = 1234567890123456789\n[totp]\nissuer = \"ACME\"").unwrap();
        let settings = Settings::load(
            Some(file.path()),
            env(&[
                ("OTP__HTTP__ADDR", "127.0.0.1:2"),
                ("OTP__DATABASE__URL", "postgres://u:hunter2@db/otp"),
                ("OTP__TOTP__DIGITS", "8"),
                ("OTP__AUTH__LEEWAY", "1m"),
                ("OTHER__HTTP__ADDR", "ignored"),
            ]),
        )
        .unwrap();
        assert_eq!(settings.http.addr, "127.0.0.1:2");
        assert_eq!(settings.database.max_connections, 4);
        assert_eq!(settings.database.connect_timeout, Duration::from_secs(2));
        assert_eq!(
            settings.database.url.expose_secret(),
            "postgres://u:hunter2@db/otp"
        );
        assert_eq!(settings.auth.audience, "1234567890123456789");
        assert_eq!(settings.auth.leeway, Duration::from_secs(60));
        assert_eq!(settings.totp.issuer, "ACME");
        assert_eq!(settings.totp.digits, 8);
    }

    #[test]
    fn the_pooler_is_session_by_default_and_transaction_on_request() {
        let settings = Settings::load(None, env(&[])).unwrap();
        assert_eq!(settings.database.pooler, PoolerMode::Session);
        assert_eq!(
            settings.database.pg_settings().pooler,
            adapters_postgres::Pooler::Session
        );
        let pooled =
            Settings::load(None, env(&[("OTP__DATABASE__POOLER", "transaction")])).unwrap();
        assert_eq!(
            pooled.database.pg_settings().pooler,
            adapters_postgres::Pooler::Transaction
        );
        assert!(Settings::load(None, env(&[("OTP__DATABASE__POOLER", "statement")])).is_err());
    }

    #[test]
    fn the_trusted_calls_have_their_own_listeners_by_default() {
        let settings = Settings::load(None, env(&[])).unwrap();
        assert_eq!(settings.http.internal(), Some("0.0.0.0:8082"));
        assert_eq!(settings.grpc.internal(), Some("0.0.0.0:8083"));
        assert_ne!(settings.http.internal(), Some(settings.http.addr.as_str()));
        let shared = Settings::load(
            None,
            env(&[
                ("OTP__HTTP__INTERNAL_ADDR", ""),
                ("OTP__GRPC__INTERNAL_ADDR", " "),
            ]),
        )
        .unwrap();
        assert_eq!(
            (shared.http.internal(), shared.grpc.internal()),
            (None, None)
        );
    }

    #[test]
    fn listener_limits_have_safe_defaults_and_refuse_zero() {
        let settings = Settings::load(None, env(&[])).unwrap();
        let limits = settings.grpc.limits();
        assert_eq!(limits.max_concurrent_streams, 100);
        assert_eq!(limits.max_local_error_reset_streams, 1024);
        assert_eq!(limits.request_timeout, Duration::from_secs(15));
        assert!(settings.grpc.reflection);
        assert_eq!(settings.http.body_timeout, Duration::from_secs(10));
        assert_eq!(settings.http.readiness_cache, Duration::from_secs(1));
        for key in [
            "OTP__HTTP__BODY_TIMEOUT",
            "OTP__GRPC__REQUEST_TIMEOUT",
            "OTP__GRPC__MAX_CONCURRENT_STREAMS",
            "OTP__GRPC__CONCURRENCY_LIMIT_PER_CONNECTION",
            "OTP__GRPC__MAX_CONNECTION_AGE",
        ] {
            assert!(Settings::load(None, env(&[(key, "0")])).is_err(), "{key}");
        }
        let off = Settings::load(None, env(&[("OTP__GRPC__REFLECTION", "false")])).unwrap();
        assert!(!off.grpc.reflection);
    }

    #[test]
    fn unknown_keys_are_errors() {
        let error = Settings::load(None, env(&[("OTP__HTTP__ADRR", "x")])).unwrap_err();
        assert!(error.to_string().contains("adrr"), "{error}");
        assert!(Settings::load(None, env(&[("OTP__NOPE__X", "1")])).is_err());
    }

    #[test]
    fn bad_values_are_errors() {
        assert!(Settings::load(None, env(&[("OTP__TOTP__DIGITS", "7")])).is_err());
        assert!(Settings::load(None, env(&[("OTP__TOTP__DIGITS", "six")])).is_err());
        assert!(Settings::load(None, env(&[("OTP__TOTP__ALGORITHM", "MD5")])).is_err());
        assert!(Settings::load(None, env(&[("OTP__AUTH__LEEWAY", "soon")])).is_err());
    }

    #[test]
    fn secrets_print_redacted() {
        let settings = Settings::load(
            None,
            env(&[
                ("OTP__DATABASE__URL", "postgres://u:hunter2@db/otp"),
                (
                    "OTP__CRYPTO__KEYS",
                    "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
                ),
            ]),
        )
        .unwrap();
        let printed = format!("{settings:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(!printed.contains("AAECAwQF"), "{printed}");
        assert!(printed.contains("REDACTED"));
    }

    #[test]
    fn administrators_come_from_auth_and_empty_turns_a_role_off() {
        let defaults = Settings::load(None, env(&[])).unwrap();
        assert_eq!(
            defaults.use_case_settings().unwrap().admins,
            AdminPolicy::default()
        );
        assert_eq!(
            defaults.auth.roles_claim,
            "urn:zitadel:iam:org:project:roles"
        );
        let mut file = tempfile();
        writeln!(
            file,
            "[auth]\nroles_claim = \"realm_access.roles\"\nadmin_role = \"helpdesk\"\ninstance_admin_role = \"\"\nadmin_scope = \" otp:admin \""
        )
        .unwrap();
        let settings = Settings::load(Some(file.path()), env(&[])).unwrap();
        assert_eq!(settings.auth.roles_claim, "realm_access.roles");
        assert_eq!(
            settings.use_case_settings().unwrap().admins,
            AdminPolicy {
                org_role: Some("helpdesk".into()),
                instance_role: None,
                org_scope: Some("otp:admin".into()),
            }
        );
        let off = Settings::load(None, env(&[("OTP__AUTH__ADMIN_ROLE", "")])).unwrap();
        assert_eq!(off.use_case_settings().unwrap().admins.org_role, None);
    }

    /// A `.toml` file under the system's temporary directory (the loader
    /// takes the format from the extension), removed when dropped.
    fn tempfile() -> tempfile::NamedTempFile {
        tempfile::Builder::new()
            .prefix("otp-settings-")
            .suffix(".toml")
            .tempfile()
            .unwrap()
    }

    #[test]
    fn secrets_can_come_from_mounted_files() {
        let dir = std::env::temp_dir().join(format!("otp-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = dir.join("database-url");
        std::fs::write(&url, "postgres://otp:s3cret@db:5432/otp\n").unwrap();
        let keys = dir.join("keys");
        std::fs::write(&keys, "k2:AAAA\nk1:BBBB\n").unwrap();
        let settings = Settings::load(
            None,
            env(&[
                ("OTP__DATABASE__URL", "postgres://ignored@x/y"),
                ("OTP__DATABASE__URL_FILE", url.to_str().unwrap()),
                ("OTP__CRYPTO__KEYS_FILE", keys.to_str().unwrap()),
            ]),
        )
        .unwrap();
        assert_eq!(
            settings.database.url.expose_secret(),
            "postgres://otp:s3cret@db:5432/otp"
        );
        assert_eq!(settings.crypto.keys.expose_secret(), "k2:AAAA,k1:BBBB");
        let missing = Settings::load(
            None,
            env(&[("OTP__CRYPTO__KEYS_FILE", "/nonexistent/otp-keys")]),
        )
        .unwrap_err();
        assert!(
            missing.to_string().contains("crypto.keys_file"),
            "{missing}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn recovery_max_codes_defaults_to_ten_and_is_bounded() {
        let settings = Settings::load(None, env(&[])).unwrap();
        assert_eq!(settings.recovery.use_case_settings().unwrap().max_codes, 10);
        let settings = Settings::load(None, env(&[("OTP__RECOVERY__MAX_CODES", "25")])).unwrap();
        assert_eq!(settings.recovery.use_case_settings().unwrap().max_codes, 25);
        for refused in ["0", "101"] {
            let settings =
                Settings::load(None, env(&[("OTP__RECOVERY__MAX_CODES", refused)])).unwrap();
            let error = settings.recovery.use_case_settings().unwrap_err();
            assert!(error.to_string().contains("recovery.max_codes"), "{error}");
        }
    }

    #[test]
    fn config_errors_name_the_key_but_never_echo_the_value() {
        let secret = "postgres://u:hunter2@db/otp";
        for (key, value, named) in [
            (
                "OTP__DATABASE__MAX_CONNECTIONS",
                secret,
                "database.max_connections",
            ),
            ("OTP__HTTP__WORKERS", "-hunter2", "http.workers"),
            ("OTP__AUTH__LEEWAY", "hunter2", "auth.leeway"),
            (
                "OTP__AUTH__ALLOW_INSECURE_HTTP",
                "hunter2",
                "auth.allow_insecure_http",
            ),
            ("OTP__TOTP__DIGITS", "hunter2", "totp.digits"),
            ("OTP__TOTP__ALGORITHM", "hunter2", "totp.algorithm"),
            (
                "OTP__DATABASE__URL_FILE",
                "/nonexistent/hunter2",
                "database.url_file",
            ),
        ] {
            let error = Settings::load(None, env(&[(key, value)]))
                .unwrap_err()
                .to_string();
            assert!(!error.contains("hunter2"), "{key}: {error}");
            assert!(error.contains(named), "{key}: {error}");
        }
        // A file that is not TOML: its position, not its line.
        let mut file = tempfile();
        writeln!(file, "[database]\nurl = postgres://u:hunter2@db/otp").unwrap();
        let error = Settings::load(Some(file.path()), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(!error.contains("hunter2"), "{error}");
        assert!(error.contains("line 2"), "{error}");
    }

    #[test]
    fn caller_rules_load_from_lists_or_comma_separated_variables() {
        let settings = Settings::load(
            None,
            env(&[
                ("OTP__AUTH__CHECK_CLIENTS", " login-service, 2345678901 ,,"),
                ("OTP__AUTH__RECENT_AUTH_MAX_AGE", "10m"),
                ("OTP__AUTH__RECENT_AUTH_METHODS", "mfa,otp"),
            ]),
        )
        .unwrap();
        assert_eq!(settings.auth.check_clients, ["login-service", "2345678901"]);
        let totp = settings.use_case_settings().unwrap();
        assert_eq!(
            totp.check_clients.clients(),
            ["login-service", "2345678901"]
        );
        assert_eq!(totp.recent_auth.max_age, Some(TimeDelta::minutes(10)));
        assert_eq!(totp.recent_auth.methods, ["mfa", "otp"]);

        let mut file = tempfile();
        writeln!(
            file,
            "[auth]\ncheck_clients = [\"a\", \"b\"]\nallowed_clients = [\"web\"]"
        )
        .unwrap();
        let settings = Settings::load(Some(file.path()), env(&[])).unwrap();
        assert_eq!(settings.auth.check_clients, ["a", "b"]);
        assert_eq!(settings.auth.allowed_clients, ["web"]);

        // The defaults: nobody may check, no sign-in rule, https only.
        let defaults = Settings::load(None, env(&[])).unwrap();
        let totp = defaults.use_case_settings().unwrap();
        assert!(totp.check_clients.clients().is_empty());
        assert!(!totp.recent_auth.is_enabled());
        assert!(!defaults.auth.allow_insecure_http);
    }

    #[test]
    fn the_security_policy_is_checked_at_load() {
        for (key, value) in [
            ("OTP__TOTP__MAX_ATTEMPTS", "0"),
            ("OTP__TOTP__LOCKOUT", "0s"),
            ("OTP__TOTP__MAX_LOCKOUT", "1m"),
            ("OTP__TOTP__MAX_FAILURES", "4"),
            ("OTP__TOTP__PENDING_TTL", "0s"),
            ("OTP__AUTH__CHECK_SCOPE", " "),
        ] {
            assert!(
                Settings::load(None, env(&[(key, value)])).is_err(),
                "{key}={value}"
            );
        }
        let settings = Settings::load(None, env(&[])).unwrap();
        let totp = settings.totp.use_case_settings("otp.check").unwrap();
        assert_eq!(totp.attempts.max_attempts(), 5);
        assert_eq!(totp.attempts.max_failures(), 100);
        assert_eq!(totp.max_changes_per_hour, 20);
        assert_eq!(totp.attempts.max_lockout(), TimeDelta::hours(1));
        assert_eq!(totp.pending_ttl, chrono::TimeDelta::minutes(10));
        assert_eq!(settings.shutdown.drain_delay, Duration::from_secs(5));
        // Unconfigured, the service runs on the use cases' own defaults.
        assert_eq!(
            settings
                .totp
                .use_case_settings(&settings.auth.check_scope)
                .unwrap(),
            TotpSettings::default()
        );
    }
}
