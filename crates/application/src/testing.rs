//! Test doubles shared by the adapters' tests: a clock that only moves when
//! told, deterministic secrets, the use cases wired over them ([`World`]),
//! and the contract suite every [`FactorStore`] must pass.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};

use domain::{TotpKey, TotpParams, TotpSecret, UserId};

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};

use crate::authenticate::Principal;
use crate::ports::{Clock, FactorStore, SecretCipher, SecretSource, TokenError, TokenVerifier};
use crate::use_cases::{OtpFactors, TotpSettings};

/// The change an Add decides on `current`: a pending factor of `secret`
/// with the default parameters, created `at`, and its `otp.added` event
/// (refused as the domain refuses an Add over a READY factor). The stores'
/// tests write with it.
///
/// # Errors
/// The domain's refusal of the Add.
pub fn add_change(
    current: &crate::Current<'_>,
    secret: domain::SealedSecret,
    at: DateTime<Utc>,
) -> Result<crate::Change, crate::ApplicationError> {
    Ok(crate::Change::accepted(
        crate::FactorWrite::Put(domain::OtpFactor::add(
            current.factor,
            secret,
            TotpParams::default(),
            at,
        )?),
        domain::EventKind::OtpAdded,
    ))
}

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
    #[allow(
        clippy::disallowed_methods,
        reason = "a source of distinct names across processes, not of time"
    )]
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
        org_id: Some(parse(domain::OrgId::parse("org-1"))),
        login_name: Some(parse(domain::LoginName::parse(format!(
            "{user}@example.com"
        )))),
        ..Principal::of(parse(UserId::parse(user)))
    }
}

pub mod store_contract;

/// The use cases over a given store and cipher, with a [`FixedClock`] at a
/// given time and [`SeededSecrets`]: the one way tests wire [`OtpFactors`].
pub struct World<S> {
    /// The use cases.
    pub factors: OtpFactors,
    /// The store they write to, for tests that look inside it.
    pub store: Arc<S>,
    /// Their clock, for tests that move time.
    pub clock: Arc<FixedClock>,
}

impl<S> std::fmt::Debug for World<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("World")
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

impl<S: FactorStore + 'static> World<S> {
    /// Wires [`OtpFactors`] over `store` and `cipher` with `settings`, the
    /// clock standing at `at`.
    #[must_use]
    pub fn new(
        store: Arc<S>,
        cipher: Arc<dyn SecretCipher>,
        settings: TotpSettings,
        at: DateTime<Utc>,
    ) -> Self {
        let clock = FixedClock::at(at);
        let factors = OtpFactors::new(
            store.clone(),
            cipher,
            Arc::new(SeededSecrets::default()),
            clock.clone(),
            settings,
        );
        Self {
            factors,
            store,
            clock,
        }
    }

    /// The code of `secret` (default parameters) `offset_steps` time steps
    /// from the clock's time.
    ///
    /// # Panics
    /// When `secret` is not base32 (a test's own mistake).
    #[must_use]
    pub fn code(&self, secret: &SecretString, offset_steps: i64) -> String {
        #[allow(clippy::expect_used, reason = "test helper")]
        let secret =
            TotpSecret::from_base32(secret.expose_secret()).expect("a secret the service issued");
        let key = TotpKey::new(secret, TotpParams::default());
        let at = self.clock.now() + Duration::seconds(30 * offset_steps);
        key.code_at(u64::try_from(at.timestamp()).unwrap_or_default())
            .expose_secret()
            .to_owned()
    }

    /// A six-digit code that is wrong for `secret` within one step of the
    /// clock's time.
    #[must_use]
    pub fn wrong_code(&self, secret: &SecretString) -> String {
        let window: Vec<String> = (-1..=1).map(|o| self.code(secret, o)).collect();
        (0..10)
            .map(|d| format!("{d}{d}{d}{d}{d}{d}"))
            .find(|c| !window.contains(c))
            .unwrap_or_default()
    }

    /// Adds and verifies a factor for `user`; answers its secret.
    ///
    /// # Panics
    /// When adding or verifying fails (the test's world is broken).
    pub async fn enrolled(&self, user: &Principal) -> SecretString {
        #[allow(clippy::expect_used, reason = "test helper")]
        let added = self.factors.add_otp(user).await.expect("add");
        #[allow(clippy::expect_used, reason = "test helper")]
        self.factors
            .verify_otp(user, &self.code(&added.secret, 0))
            .await
            .expect("verify");
        added.secret
    }
}
