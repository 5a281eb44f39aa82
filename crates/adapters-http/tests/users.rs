//! ZITADEL's user service v2 TOTP calls and the v1 management calls over
//! REST, on real PostgreSQL (skipped without a server, required in CI) and
//! on the memory store: JSON shapes, the authorization matrix (self, admin
//! of the same org, admin of another org, instance admin, user without
//! role, trusted login-check caller) for each call, refusals that read and
//! count nothing, administrators as the events' actor, and one factor
//! shared with the v1 "me" calls.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test helpers")]

use std::sync::Arc;
use std::time::Duration;

use actix_web::body::to_bytes;
use actix_web::dev::ServiceResponse;
use actix_web::{App, test};
use adapters_crypto::{AesGcmCipher, OsSecrets};
use adapters_http::{HttpState, routes};
use adapters_memory::MemoryFactorStore;
use adapters_postgres::testing::TestDatabase;
use adapters_postgres::{PgFactorStore, PgSettings};
use application::testing::{FixedClock, StaticTokens, principal};
use application::{
    Authenticator, CallerAllowlist, FactorStore, OtpFactors, Principal, Readiness, TotpSettings,
};
use domain::{OrgId, TotpKey, TotpParams, TotpSecret, UserId};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

/// The callers of the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    /// The target user themself.
    Own,
    /// `otp.admin` in the target's organisation.
    OrgAdmin,
    /// `otp.admin` in another organisation.
    OtherOrgAdmin,
    /// `otp.instance_admin`, in a third organisation.
    InstanceAdmin,
    /// A user of the target's organisation without a role.
    NoRole,
    /// The trusted login-check caller (scope `otp.check`, allowed client).
    LoginService,
}

/// The service's time in these tests: its clock stands still here (10 s
/// into a 30 s step), and the codes the tests type are computed for it.
const T0: chrono::DateTime<chrono::Utc> = match chrono::DateTime::from_timestamp(1_800_000_010, 0) {
    Some(at) => at,
    None => panic!("a valid time"),
};

const CALLERS: [Caller; 6] = [
    Caller::Own,
    Caller::OrgAdmin,
    Caller::OtherOrgAdmin,
    Caller::InstanceAdmin,
    Caller::NoRole,
    Caller::LoginService,
];

impl Caller {
    fn token(self) -> &'static str {
        match self {
            Self::Own => unreachable!("the target's own token is per target"),
            Self::OrgAdmin => "admin-token",
            Self::OtherOrgAdmin => "other-admin-token",
            Self::InstanceAdmin => "root-token",
            Self::NoRole => "bob-token",
            Self::LoginService => "svc-token",
        }
    }

    /// May act through the v2 user service calls.
    fn v2_allowed(self) -> bool {
        matches!(self, Self::Own | Self::OrgAdmin | Self::InstanceAdmin)
    }

    /// May act through the v1 management calls.
    fn management_allowed(self) -> bool {
        matches!(self, Self::OrgAdmin | Self::InstanceAdmin)
    }
}

fn in_org(user: &str, org: &str, roles: &[&str]) -> Principal {
    let mut p = principal(user);
    p.org_id = Some(OrgId::parse(org).unwrap());
    p.roles = roles.iter().map(|r| (*r).to_owned()).collect();
    p
}

/// Targets `t0`..`t<n>` of org-1, each with token `<id>-token`.
const TARGETS: usize = 12;

fn state(
    store: Arc<dyn FactorStore>,
    readiness: Arc<dyn Readiness>,
    max_changes: u32,
) -> HttpState {
    let cipher = AesGcmCipher::from_config(&SecretString::from(
        "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
    ))
    .unwrap();
    let factors = OtpFactors::new(
        store,
        Arc::new(cipher),
        Arc::new(OsSecrets),
        FixedClock::at(T0),
        TotpSettings {
            issuer: "ZITADEL".into(),
            params: TotpParams::default(),
            check_clients: CallerAllowlist::new(["login-app"]),
            max_changes_per_hour: max_changes,
            ..TotpSettings::default()
        },
    );
    let mut login_service = in_org("login-service", "org-1", &[]);
    login_service.scopes = vec!["otp.check".into()];
    login_service.client_id = Some("login-app".into());
    let mut tokens = StaticTokens::default()
        .with("admin-token", in_org("admin", "org-1", &["otp.admin"]))
        .with(
            "other-admin-token",
            in_org("other-admin", "org-2", &["otp.admin"]),
        )
        .with(
            "root-token",
            in_org("root", "org-9", &["otp.instance_admin"]),
        )
        .with("bob-token", in_org("bob", "org-1", &["viewer"]))
        .with("svc-token", login_service);
    for n in 0..TARGETS {
        let id = format!("t{n}");
        tokens = tokens.with(&format!("{id}-token"), in_org(&id, "org-1", &[]));
    }
    HttpState {
        factors,
        auth: Authenticator::new(Arc::new(tokens)),
        readiness,
    }
}

async fn pg_store() -> Option<(TestDatabase, Arc<PgFactorStore>)> {
    let db = TestDatabase::create().await?;
    let store = PgFactorStore::connect(&PgSettings {
        url: db.url.clone(),
        max_connections: 4,
        connect_timeout: Duration::from_secs(10),
        statement_timeout: Duration::from_secs(10),
        prepared_statements: true,
        pooler: adapters_postgres::Pooler::Session,
        write_batch_size: 32,
        write_batches: 2,
        read_batch_size: 32,
        known_states: 1024,
        known_state_ttl: std::time::Duration::from_secs(60),
    })
    .unwrap();
    Some((db, Arc::new(store)))
}

async fn json_of(response: ServiceResponse) -> (u16, Value) {
    let status = response.status().as_u16();
    let bytes = to_bytes(response.into_body()).await.unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// Calls the app and reads the answer as (status, JSON).
macro_rules! call {
    ($app:expr, $request:expr $(,)?) => {
        json_of(test::call_service($app, $request.to_request()).await).await
    };
}

fn with_token(request: test::TestRequest, token: &str) -> test::TestRequest {
    request.insert_header(("Authorization", format!("Bearer {token}")))
}

fn register(user: &str, token: &str) -> test::TestRequest {
    with_token(
        test::TestRequest::post()
            .uri(&format!("/v2/users/{user}/totp"))
            .set_payload("{}"),
        token,
    )
}

fn verify(user: &str, token: &str, code: &str) -> test::TestRequest {
    with_token(
        test::TestRequest::post()
            .uri(&format!("/v2/users/{user}/totp/verify"))
            .set_json(json!({ "code": code })),
        token,
    )
}

fn remove(user: &str, token: &str) -> test::TestRequest {
    with_token(
        test::TestRequest::delete().uri(&format!("/v2/users/{user}/totp")),
        token,
    )
}

fn methods(user: &str, token: &str) -> test::TestRequest {
    with_token(
        test::TestRequest::get().uri(&format!("/v2/users/{user}/authentication_methods")),
        token,
    )
}

fn management_list(user: &str, token: &str) -> test::TestRequest {
    with_token(
        test::TestRequest::post()
            .uri(&format!("/management/v1/users/{user}/auth_factors/_search"))
            .set_payload("{}"),
        token,
    )
}

fn management_remove(user: &str, token: &str) -> test::TestRequest {
    with_token(
        test::TestRequest::delete().uri(&format!("/management/v1/users/{user}/auth_factors/otp")),
        token,
    )
}

fn me_add(token: &str) -> test::TestRequest {
    with_token(
        test::TestRequest::post().uri("/auth/v1/users/me/auth_factors/otp"),
        token,
    )
}

fn me_list(token: &str) -> test::TestRequest {
    with_token(
        test::TestRequest::post().uri("/auth/v1/users/me/auth_factors/_search"),
        token,
    )
}

fn code_of(secret: &str) -> String {
    let key = TotpKey::new(
        TotpSecret::from_base32(secret).unwrap(),
        TotpParams::default(),
    );
    let now = u64::try_from(T0.timestamp()).unwrap();
    key.code_at(now).expose_secret().to_owned()
}

fn assert_denied((status, body): &(u16, Value), what: &str) {
    assert_eq!(*status, 403, "{what}: {body}");
    assert_eq!(
        *body,
        json!({"code": 7, "message": "No matching permissions found (AUTH-5mWD2)",
               "details": [{"@type": "type.googleapis.com/zitadel.v1.ErrorDetail",
                            "id": "AUTH-5mWD2", "message": "No matching permissions found"}]}),
        "{what}"
    );
}

/// Every call by every caller on a target of org-1 whose factor exists:
/// allowed callers get the call's answer, the others 403 with nothing changed.
async fn authorization_matrix(store: Arc<dyn FactorStore>, readiness: Arc<dyn Readiness>) {
    let app = test::init_service(App::new().configure(routes(state(store, readiness, 0)))).await;
    for (n, caller) in CALLERS.into_iter().enumerate() {
        let target = format!("t{n}");
        let own = format!("{target}-token");
        let token = if caller == Caller::Own {
            own.clone()
        } else {
            caller.token().to_owned()
        };
        let what = |call: &str| format!("{caller:?} {call}");

        // The target enrols through v1 "me": the factor's owner is org-1.
        let (status, added) = call!(&app, me_add(&own));
        assert_eq!(status, 200, "{added}");
        let mut secret = added["secret"].as_str().unwrap().to_owned();

        // RegisterTOTP (replaces the pending factor when allowed).
        let answer = call!(&app, register(&target, &token));
        if caller.v2_allowed() {
            let (status, body) = &answer;
            assert_eq!(*status, 200, "{}: {body}", what("RegisterTOTP"));
            assert_eq!(body["details"]["sequence"], "2", "{body}");
            assert_eq!(body["details"]["resourceOwner"], "org-1", "{body}");
            assert!(body["details"].get("creationDate").is_none(), "{body}");
            assert_eq!(
                body.as_object().unwrap().keys().collect::<Vec<_>>(),
                ["details", "secret", "uri"]
            );
            secret = body["secret"].as_str().unwrap().to_owned();
            let account = if caller == Caller::Own {
                format!("{target}@example.com")
            } else {
                target.clone()
            };
            assert_eq!(
                body["uri"],
                format!(
                    "otpauth://totp/ZITADEL:{account}?algorithm=SHA1&digits=6&issuer=ZITADEL&period=30&secret={secret}"
                )
            );
        } else {
            assert_denied(&answer, &what("RegisterTOTP"));
        }

        // VerifyTOTPRegistration with the right code: a denied caller's
        // attempt neither verifies nor counts.
        let answer = call!(&app, verify(&target, &token, &code_of(&secret)));
        let mut sequence = 2;
        if caller.v2_allowed() {
            sequence = 3;
            assert_eq!(answer.0, 200, "{}: {}", what("Verify"), answer.1);
            assert_eq!(
                answer.1,
                json!({"details": {"sequence": "3", "changeDate": answer.1["details"]["changeDate"],
                                   "resourceOwner": "org-1"}})
            );
        } else {
            assert_denied(&answer, &what("Verify"));
            let (_, listed) = call!(&app, me_list(&own));
            assert_eq!(listed, json!({}), "{}: still pending", what("Verify"));
            let (status, verified) = call!(&app, verify(&target, &own, &code_of(&secret)));
            assert_eq!(
                (status, &verified["details"]["sequence"]),
                (200, &json!("2")),
                "{verified}"
            );
        }

        // ListAuthenticationMethodTypes.
        let answer = call!(&app, methods(&target, &token));
        if caller.v2_allowed() {
            let (status, body) = &answer;
            assert_eq!(*status, 200, "{body}");
            assert_eq!(
                body["authMethodTypes"],
                json!(["AUTHENTICATION_METHOD_TYPE_TOTP"])
            );
            assert_eq!(body["details"]["totalResult"], "1");
            assert!(
                body["details"]["timestamp"]
                    .as_str()
                    .unwrap()
                    .ends_with('Z')
            );
        } else {
            assert_denied(&answer, &what("ListAuthenticationMethodTypes"));
        }

        // ListHumanAuthFactors (administrators only).
        let answer = call!(&app, management_list(&target, &token));
        if caller.management_allowed() {
            assert_eq!(
                answer,
                (
                    200,
                    json!({"result": [{"state": "AUTH_FACTOR_STATE_READY", "otp": {}}]})
                )
            );
        } else {
            assert_denied(&answer, &what("ListHumanAuthFactors"));
        }

        // RemoveHumanAuthFactorOTP (administrators only).
        let answer = call!(&app, management_remove(&target, &token));
        if caller.management_allowed() {
            sequence += 1;
            assert_eq!(answer.0, 200, "{}", answer.1);
            assert_eq!(answer.1["details"]["sequence"], sequence.to_string());
            assert_eq!(answer.1["details"]["resourceOwner"], "org-1");
            let (_, listed) = call!(&app, me_list(&own));
            assert_eq!(listed, json!({}), "removed for the v1 calls too");
            let (status, _) = call!(&app, me_add(&own));
            assert_eq!(status, 200);
            sequence += 1;
        } else {
            assert_denied(&answer, &what("RemoveHumanAuthFactorOTP"));
        }

        // RemoveTOTP.
        let answer = call!(&app, remove(&target, &token));
        if caller.v2_allowed() {
            sequence += 1;
            assert_eq!(answer.0, 200, "{}", answer.1);
            assert_eq!(answer.1["details"]["sequence"], sequence.to_string());
        } else {
            assert_denied(&answer, &what("RemoveTOTP"));
            // Nothing was appended by any refused call.
            let (status, removed) = call!(&app, remove(&target, &own));
            assert_eq!(status, 200, "{removed}");
            assert_eq!(removed["details"]["sequence"], (sequence + 1).to_string());
        }
    }
}

#[actix_web::test]
async fn authorization_matrix_on_postgres() {
    let Some((_db, store)) = pg_store().await else {
        return;
    };
    authorization_matrix(store.clone(), store).await;
}

#[actix_web::test]
async fn authorization_matrix_on_the_memory_store() {
    let store = Arc::new(MemoryFactorStore::new());
    authorization_matrix(store.clone(), store).await;
}

#[actix_web::test]
async fn refused_callers_are_not_counted_and_unknown_users_belong_to_no_org() {
    let Some((_db, store)) = pg_store().await else {
        return;
    };
    // Two changes per user per hour.
    let app =
        test::init_service(App::new().configure(routes(state(store.clone(), store, 2)))).await;
    for _ in 0..5 {
        assert_denied(&call!(&app, register("t0", "bob-token")), "no role");
        assert_denied(
            &call!(&app, register("t0", "other-admin-token")),
            "other org",
        );
    }
    // t0 was never seen: no organisation owns it yet, so an org admin may
    // not act; the instance admin may (and records no owner).
    assert_denied(&call!(&app, register("t0", "admin-token")), "unknown user");
    let (status, body) = call!(&app, register("t0", "root-token"));
    assert_eq!(status, 200, "{body}");
    assert!(body["details"].get("resourceOwner").is_none(), "{body}");
    assert_eq!(
        body["details"]["sequence"], "1",
        "the refusals used no sequence"
    );
    // The user's own call records org-1; then the org admin may act.
    let (status, body) = call!(&app, register("t0", "t0-token"));
    assert_eq!(
        (status, &body["details"]["resourceOwner"]),
        (200, &json!("org-1"))
    );
    let (status, body) = call!(&app, register("t0", "admin-token"));
    assert_eq!(status, 429, "the third change of the hour: {body}");
}

#[actix_web::test]
async fn administrators_are_the_events_actor_and_errors_match_v1() {
    let store = Arc::new(MemoryFactorStore::new());
    let app =
        test::init_service(App::new().configure(routes(state(store.clone(), store.clone(), 0))))
            .await;
    let (status, _) = call!(&app, me_add("t1-token"));
    assert_eq!(status, 200);
    let (status, _) = call!(&app, register("t1", "admin-token"));
    assert_eq!(status, 200);
    let (status, _) = call!(&app, management_remove("t1", "root-token"));
    assert_eq!(status, 200);
    let actors: Vec<(String, Option<String>)> = store
        .events(&UserId::parse("t1").unwrap())
        .into_iter()
        .map(|e| {
            (
                e.actor.as_str().to_owned(),
                e.resource_owner.map(|o| o.as_str().to_owned()),
            )
        })
        .collect();
    let org = Some("org-1".to_owned());
    assert_eq!(
        actors,
        [
            ("t1".to_owned(), org.clone()),
            ("admin".to_owned(), org.clone()),
            ("root".to_owned(), org)
        ]
    );

    // The same situations answer the same errors as the v1 calls.
    let v1_remove = with_token(
        test::TestRequest::delete().uri("/auth/v1/users/me/auth_factors/otp"),
        "t1-token",
    );
    let v1 = call!(&app, v1_remove);
    assert_eq!(v1.0, 404);
    assert_eq!(call!(&app, remove("t1", "t1-token")), v1);
    assert_eq!(call!(&app, management_remove("t1", "admin-token")), v1);
    let v1_verify = with_token(
        test::TestRequest::post()
            .uri("/auth/v1/users/me/auth_factors/otp/_verify")
            .set_json(json!({"code": "123456"})),
        "t1-token",
    );
    let v1 = call!(&app, v1_verify);
    assert_eq!(call!(&app, verify("t1", "t1-token", "123456")), v1);
    let (status, body) = call!(&app, verify("t1", "t1-token", ""));
    assert_eq!(status, 400);
    assert_eq!(
        body["message"],
        "invalid VerifyTOTPRegistrationRequest.Code: value length must be between 1 and 200 runes"
    );
    let (status, body) = call!(&app, methods("t1", "t1-token"));
    assert_eq!(status, 200);
    assert!(body.get("authMethodTypes").is_none(), "{body}");
    assert!(body["details"].get("totalResult").is_none(), "{body}");
}

#[actix_web::test]
async fn bad_ids_tokens_and_methods() {
    let store = Arc::new(MemoryFactorStore::new());
    let app =
        test::init_service(App::new().configure(routes(state(store.clone(), store, 0)))).await;
    let (status, body) = call!(&app, register("a%0Ab", "admin-token"));
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["code"], 3);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("invalid RegisterTOTPRequest.UserId"),
        "{body}"
    );
    let (status, body) = call!(&app, test::TestRequest::post().uri("/v2/users/t1/totp"));
    assert_eq!(
        (status, body),
        (401, json!({"code": 16, "message": "auth header missing"}))
    );
    let (status, _) = call!(
        &app,
        with_token(
            test::TestRequest::put().uri("/v2/users/t1/totp"),
            "t1-token",
        ),
    );
    assert_eq!(status, 405);
    let (status, _) = call!(
        &app,
        with_token(
            test::TestRequest::post().uri("/v2/users/t1/authentication_methods"),
            "t1-token",
        ),
    );
    assert_eq!(status, 405);
    let (status, body) = call!(
        &app,
        with_token(
            test::TestRequest::post()
                .uri("/v2/users/t1/totp/verify")
                .set_payload("[1]"),
            "t1-token",
        ),
    );
    assert_eq!((status, &body["code"]), (400, &json!(3)));
}
