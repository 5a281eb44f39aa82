//! Bearer-token verification (the `TokenVerifier` port): JWTs signed by an
//! OpenID Connect issuer such as ZITADEL, checked against its JWKS, and the
//! built-in development issuer of `otp-service dev`. Every verifier fills
//! [`application::Principal`] from the same [`ClaimNames`], scopes included.
//!
//! Only asymmetric algorithms are accepted (RS256, RS384, RS512, PS256,
//! ES256, ES384, EdDSA); `none` and HMAC never are, and no symmetric key is
//! ever loaded. Rejection reasons name what failed and never contain the token
//! or key material.
//!
//! Telemetry: each discovery or JWKS request runs in a `token.jwks_fetch`
//! client span; each key-set fetch emits a counter event with target
//! `otp.metrics` (`monotonic_counter.otp.token_keys.refreshes` by `outcome`
//! `ok`/`error`) for `tracing-opentelemetry`'s `MetricsLayer`.

mod claims;
mod dev;
mod fetch;
mod keys;
mod settings;
mod telemetry;
mod verifier;

pub use dev::DevIssuer;
pub use settings::{
    ClaimNames, DEFAULT_LOGIN_NAME_CLAIM, DEFAULT_ORG_ID_CLAIM, DEFAULT_SCOPE_CLAIM,
    DEFAULT_USER_ID_CLAIM, JwtSettings, TokenConfigError,
};
pub use verifier::{JwtVerifier, MAX_TOKEN_LEN};
