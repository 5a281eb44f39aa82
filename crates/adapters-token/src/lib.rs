//! Bearer-token verification (the `TokenVerifier` port) against an OpenID
//! Connect issuer such as ZITADEL:
//!
//! - [`JwtVerifier`]: JWTs checked locally against the issuer's JWKS;
//! - [`IntrospectionVerifier`]: any token (opaque ones in particular) asked
//!   of the issuer's introspection endpoint (RFC 7662), authenticated with
//!   [`ClientAuth`] (client secret or `private_key_jwt`), active answers
//!   cached briefly;
//! - [`BearerVerifier`]: both, JWTs tried locally first;
//! - [`DevIssuer`]: the built-in development issuer of `otp-service dev`.
//!
//! Every verifier fills [`application::Principal`] from the same
//! [`ClaimNames`], scopes included.
//!
//! Only asymmetric algorithms are accepted (RS256, RS384, RS512, PS256,
//! ES256, ES384, EdDSA); `none` and HMAC never are, and no symmetric key is
//! ever loaded. Rejection reasons name what failed and never contain the token
//! or key material; client secrets, private keys and tokens never appear in
//! `Debug` output, logs or errors.
//!
//! Telemetry: each discovery or JWKS request runs in a `token.jwks_fetch`
//! client span, each introspection request in a `token.introspect` client
//! span; counters are `tracing` events with target `otp.metrics`
//! (`monotonic_counter.otp.token_keys.refreshes` by `outcome` `ok`/`error`,
//! `monotonic_counter.otp.token.introspections` by `outcome`
//! `active`/`inactive`/`error`/`cached`/`cached_inactive`/`shed`), for `tracing-opentelemetry`'s
//! `MetricsLayer`. An introspection counts as `inactive` whenever the token
//! is rejected (inactive, expired, wrong audience ...), `error` when the
//! endpoint could not give a usable answer.

mod bearer;
mod claims;
mod client_auth;
mod dev;
mod fetch;
mod introspection;
mod keys;
mod settings;
mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
mod verified;
mod verifier;

pub use bearer::BearerVerifier;
pub use client_auth::ClientAuth;
pub use dev::DevIssuer;
pub use introspection::IntrospectionVerifier;
pub use settings::{
    ClaimNames, DEFAULT_LOGIN_NAME_CLAIM, DEFAULT_ORG_ID_CLAIM, DEFAULT_SCOPE_CLAIM,
    DEFAULT_USER_ID_CLAIM, IntrospectionSettings, JwtSettings, TokenConfigError,
};
pub use verifier::{JwtVerifier, MAX_TOKEN_LEN};
