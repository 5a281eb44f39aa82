//! Bearer-token verification (the `TokenVerifier` port): JWTs signed by an
//! OpenID Connect issuer such as ZITADEL, checked against its JWKS, and the
//! built-in development issuer of `otp-service dev`.
//!
//! Only asymmetric algorithms are accepted (RS256, RS384, RS512, PS256,
//! ES256, ES384, EdDSA); `none` and HMAC never are, and no symmetric key is
//! ever loaded. Rejection reasons name what failed and never contain the token
//! or key material.

mod dev;
mod fetch;
mod keys;
mod settings;
mod verifier;

pub use dev::DevIssuer;
pub use settings::{
    ClaimNames, DEFAULT_LOGIN_NAME_CLAIM, DEFAULT_ORG_ID_CLAIM, DEFAULT_USER_ID_CLAIM, JwtSettings,
    TokenConfigError,
};
pub use verifier::{JwtVerifier, MAX_TOKEN_LEN};
