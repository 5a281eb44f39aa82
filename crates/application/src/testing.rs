//! Test doubles shared by the adapters' tests: a clock that only moves when
//! told, deterministic secrets, and the contract suite every [`FactorStore`]
//! must pass.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};

use domain::{TotpSecret, UserId};

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};

use crate::authenticate::Principal;
use crate::ports::{Clock, SecretSource, TokenError, TokenVerifier};

/// A clock that stands still until moved.
#[derive(Debug)]
pub struct FixedClock(Mutex<DateTime<Utc>>);

impl FixedClock {
    /// A clock showing `at`.
    #[must_use]
    pub fn at(at: DateTime<Utc>) -> Arc<Self> {
        Arc::new(Self(Mutex::new(at)))
    }

    /// Moves the clock by `by`.
    pub fn advance(&self, by: Duration) {
        let mut now = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *now += by;
    }
}

impl Clock for FixedClock {
    fn now(&self) -> DateTime<Utc> {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Secrets 0x01.., 0x02.., ... in turn: each call a different, predictable one.
#[derive(Debug, Default)]
pub struct SeededSecrets(AtomicU64);

impl SecretSource for SeededSecrets {
    fn generate(&self) -> TotpSecret {
        let n = self.0.fetch_add(1, Ordering::Relaxed) + 1;
        let mut bytes = vec![0_u8; TotpSecret::GENERATED_LEN];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = (n as u8).wrapping_mul(31).wrapping_add(i as u8);
        }
        match TotpSecret::from_bytes(bytes) {
            Ok(secret) => secret,
            Err(error) => unreachable!("20 bytes is a valid secret length: {error}"),
        }
    }
}

/// A user id no other test uses, so tests can share one store.
#[must_use]
pub fn unique_user(prefix: &str) -> UserId {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::UNIX_EPOCH
        .elapsed()
        .map_or(0, |d| d.subsec_nanos());
    match UserId::parse(format!("{prefix}-{}-{n}-{nanos}", std::process::id())) {
        Ok(user) => user,
        Err(error) => unreachable!("generated ids are valid: {error}"),
    }
}

/// A verifier that knows a fixed set of tokens, for adapter tests that are
/// not about token validation.
#[derive(Debug, Default)]
pub struct StaticTokens(std::collections::HashMap<String, Principal>);

impl StaticTokens {
    /// Accepts `token` as `principal`.
    #[must_use]
    pub fn with(mut self, token: &str, principal: Principal) -> Self {
        self.0.insert(token.to_owned(), principal);
        self
    }
}

#[async_trait]
impl TokenVerifier for StaticTokens {
    async fn verify(&self, token: &SecretString) -> Result<Principal, TokenError> {
        self.0
            .get(token.expose_secret())
            .cloned()
            .ok_or_else(|| TokenError::Invalid("unknown test token".into()))
    }
}

/// A principal with the given user id, organisation `org-1` and login name
/// `<user>@example.com`.
#[must_use]
pub fn principal(user: &str) -> Principal {
    fn parse<T>(value: Result<T, domain::IdentityError>) -> T {
        value.unwrap_or_else(|e| unreachable!("test identities are valid: {e}"))
    }
    Principal {
        user_id: parse(UserId::parse(user)),
        org_id: Some(parse(domain::OrgId::parse("org-1"))),
        login_name: Some(parse(domain::LoginName::parse(format!(
            "{user}@example.com"
        )))),
        scopes: Vec::new(),
        client_id: None,
        authorized_party: None,
        auth_time: None,
        amr: Vec::new(),
        roles: Vec::new(),
    }
}

pub mod store_contract;
