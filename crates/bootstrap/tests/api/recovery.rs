//! Recovery codes end to end on real PostgreSQL: REST, gRPC and Connect for
//! generate / remove / redeem; one code redeemed at most once under parallel
//! redemptions across two `otp-service serve` processes; wrong codes sharing
//! the OTP lockout; no code in a database dump or in the logs.

use adapters_grpc::proto::otp::v1::CheckRecoveryCodeRequest;
use adapters_grpc::proto::otp::v1::otp_check_service_client::OtpCheckServiceClient;
use adapters_grpc::proto::zitadel::user::v2::user_service_client::UserServiceClient;
use adapters_grpc::proto::zitadel::user::v2::{
    AuthenticationMethodType, GenerateRecoveryCodesRequest, ListAuthenticationMethodTypesRequest,
};
use futures::future::join_all;
use serde_json::{Value, json};
use tonic::metadata::MetadataValue;

use crate::helpers::{
    Answer, TestApp, VERIFY, assert_error, claims, code_at, settled_now, sign, spawn_app,
    spawn_app_with, spawn_issuer, user,
};
use crate::processes::serve;
use adapters_postgres::testing::TestDatabase;

/// `sub` with a READY factor on `app`; answers the secret.
async fn ready(app: &TestApp, token: &str) -> String {
    let secret = app.add(token).await.body["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let answer = app
        .verify(token, &code_at(&secret, settled_now().await))
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    secret
}

async fn generate(app: &TestApp, token: &str, sub: &str, count: Value) -> Answer {
    app.call(
        reqwest::Method::POST,
        &format!("/v2/users/{sub}/recovery_codes"),
        Some(&format!("Bearer {token}")),
        Some(json!({ "count": count }).to_string()),
    )
    .await
}

async fn redeem_at(app: &TestApp, address: &str, sub: &str, code: &str) -> Answer {
    app.call_at(
        address,
        reqwest::Method::POST,
        &format!("/v1/users/{sub}/recovery_codes/_check"),
        Some(&format!("Bearer {}", app.service_token("svc-login"))),
        Some(json!({ "code": code }).to_string()),
    )
    .await
}

fn codes_of(answer: &Answer) -> Vec<String> {
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.body["recoveryCodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|code| code.as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_generate_list_redeem_and_remove() {
    let Some(app) = spawn_app().await else { return };
    let sub = user("rc-rest");
    let token = app.token(&sub);
    // No READY factor yet: nothing to back up.
    assert_error(
        &generate(&app, &token, &sub, json!(3)).await,
        400,
        9,
        "OTP-RECOVERY-NO-FACTOR",
    );
    ready(&app, &token).await;
    for count in [json!(0), json!(11)] {
        let answer = generate(&app, &token, &sub, count).await;
        assert_eq!(
            (answer.status, &answer.body["code"]),
            (400, &json!(3)),
            "{}",
            answer.body
        );
    }
    let answer = generate(&app, &token, &sub, json!(3)).await;
    let codes = codes_of(&answer);
    assert_eq!(codes.len(), 3);
    for code in &codes {
        assert_eq!(code.len(), 11, "{code}");
        assert_eq!(&code[5..6], "-");
    }
    assert!(answer.body["details"]["sequence"].is_string());

    let list = app
        .call(
            reqwest::Method::GET,
            &format!("/v2/users/{sub}/authentication_methods"),
            Some(&format!("Bearer {token}")),
            None,
        )
        .await;
    assert_eq!(
        list.body["authMethodTypes"],
        json!([
            "AUTHENTICATION_METHOD_TYPE_TOTP",
            "AUTHENTICATION_METHOD_TYPE_RECOVERY_CODE"
        ]),
        "{}",
        list.body
    );
    assert_eq!(list.body["recoveryCodesRemaining"], 3);
    // v1 ListMyAuthFactors keeps its wire: the OTP factor only.
    assert_eq!(
        app.list(&token).await.body["result"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Redeemed on the internal listener, in any spelling, once.
    let redeemed = redeem_at(&app, &app.internal_address, &sub, &codes[0].to_lowercase()).await;
    assert_eq!(redeemed.status, 200, "{}", redeemed.body);
    assert_eq!(redeemed.body["remaining"], 2);
    assert!(redeemed.body["details"]["sequence"].is_string());
    assert_error(
        &redeem_at(&app, &app.internal_address, &sub, &codes[0]).await,
        400,
        3,
        "EVENT-8isk2",
    );
    // Not on the public listener when an internal one is configured.
    assert_eq!(
        redeem_at(&app, &app.address, &sub, &codes[1]).await.status,
        404
    );
    // The user's own token is no trusted caller's.
    let own = app
        .call_at(
            &app.internal_address,
            reqwest::Method::POST,
            &format!("/v1/users/{sub}/recovery_codes/_check"),
            Some(&format!("Bearer {token}")),
            Some(json!({ "code": codes[1] }).to_string()),
        )
        .await;
    assert_error(&own, 403, 7, "AUTH-5mWD2");

    let path = format!("/v2/users/{sub}/recovery_codes");
    let removed = app
        .call(
            reqwest::Method::DELETE,
            &path,
            Some(&format!("Bearer {token}")),
            None,
        )
        .await;
    assert_eq!(removed.status, 200, "{}", removed.body);
    assert_error(
        &redeem_at(&app, &app.internal_address, &sub, &codes[1]).await,
        404,
        5,
        "OTP-RECOVERY-NONE",
    );
    let again = app
        .call(
            reqwest::Method::DELETE,
            &path,
            Some(&format!("Bearer {token}")),
            None,
        )
        .await;
    assert_error(&again, 404, 5, "OTP-RECOVERY-NONE");
    // Another user may not generate them.
    let stranger = app.token(&user("rc-stranger"));
    assert_error(
        &generate(&app, &stranger, &sub, json!(1)).await,
        403,
        7,
        "AUTH-5mWD2",
    );

    // Removing the factor takes the codes along.
    let fresh = codes_of(&generate(&app, &token, &sub, json!(1)).await);
    assert_eq!(app.remove(&token).await.status, 200);
    assert_error(
        &redeem_at(&app, &app.internal_address, &sub, &fresh[0]).await,
        404,
        5,
        "OTP-RECOVERY-NONE",
    );
    let kinds = app
        .db
        .query(&format!(
            "SELECT kind FROM otp_events WHERE user_id = '{sub}' AND kind LIKE 'recovery%' ORDER BY sequence"
        ))
        .await;
    assert_eq!(
        kinds,
        [
            "recovery_codes.generated",
            "recovery_codes.redeemed",
            "recovery_codes.check.failed",
            "recovery_codes.removed",
            "recovery_codes.generated",
            "recovery_codes.removed",
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_recovery_codes_count_towards_the_otp_lockout() {
    let Some(app) = spawn_app_with(&[("OTP__TOTP__MAX_ATTEMPTS", "3")]).await else {
        return;
    };
    let sub = user("rc-lockout");
    let token = app.token(&sub);
    let secret = ready(&app, &token).await;
    let codes = codes_of(&generate(&app, &token, &sub, json!(2)).await);
    let service = app.service_token("svc-login");
    // One wrong OTP code, two wrong recovery codes: locked.
    assert_error(
        &app.check(&service, &sub, "000000").await,
        400,
        3,
        "EVENT-8isk2",
    );
    for _ in 0..2 {
        assert_error(
            &redeem_at(&app, &app.internal_address, &sub, "AAAAA-AAAAA").await,
            400,
            3,
            "EVENT-8isk2",
        );
    }
    assert_error(
        &redeem_at(&app, &app.internal_address, &sub, &codes[0]).await,
        400,
        9,
        "COMMAND-SF3fg",
    );
    let now = settled_now().await;
    assert_error(
        &app.check(&service, &sub, &code_at(&secret, now)).await,
        400,
        9,
        "COMMAND-SF3fg",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_and_connect_generate_redeem_and_remove() {
    let Some(app) = spawn_app().await else { return };
    let sub = user("rc-grpc");
    let token = app.token(&sub);
    ready(&app, &token).await;
    let bearer = MetadataValue::try_from(format!("Bearer {token}")).unwrap();

    let mut users = UserServiceClient::connect(app.grpc_address.clone())
        .await
        .unwrap();
    let mut request = tonic::Request::new(GenerateRecoveryCodesRequest {
        user_id: sub.clone(),
        count: 2,
    });
    request
        .metadata_mut()
        .insert("authorization", bearer.clone());
    let generated = users
        .generate_recovery_codes(request)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(generated.recovery_codes.len(), 2);
    assert!(generated.details.unwrap().sequence > 0);

    let mut request = tonic::Request::new(ListAuthenticationMethodTypesRequest {
        user_id: sub.clone(),
        domain_query: None,
    });
    request
        .metadata_mut()
        .insert("authorization", bearer.clone());
    let list = users
        .list_authentication_method_types(request)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        list.auth_method_types,
        [
            AuthenticationMethodType::Totp as i32,
            AuthenticationMethodType::RecoveryCode as i32
        ]
    );
    assert_eq!(list.recovery_codes_remaining, 2);

    // The check over gRPC, on the internal listener.
    let mut checks = OtpCheckServiceClient::connect(app.internal_grpc_address.clone())
        .await
        .unwrap();
    let service =
        MetadataValue::try_from(format!("Bearer {}", app.service_token("svc-login"))).unwrap();
    let check = |code: &str| {
        let mut request = tonic::Request::new(CheckRecoveryCodeRequest {
            user_id: sub.clone(),
            code: code.to_owned(),
        });
        request
            .metadata_mut()
            .insert("authorization", service.clone());
        request
    };
    let redeemed = checks
        .check_recovery_code(check(&generated.recovery_codes[0]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(redeemed.remaining, 1);
    let again = checks
        .check_recovery_code(check(&generated.recovery_codes[0]))
        .await
        .unwrap_err();
    assert_eq!(again.code(), tonic::Code::InvalidArgument);

    // Connect (JSON) on the internal listener for the check, public for the rest.
    let connect = |address: &str, method: &str, auth: String, body: Value| {
        app.client
            .post(format!("{address}/{method}"))
            .header("content-type", "application/json")
            .header("authorization", auth)
            .body(body.to_string())
            .send()
    };
    let response = connect(
        &app.internal_grpc_address,
        "otp.v1.OtpCheckService/CheckRecoveryCode",
        format!("Bearer {}", app.service_token("svc-login")),
        json!({ "userId": sub, "code": generated.recovery_codes[1] }),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert!(body["details"]["sequence"].is_string(), "{body}");
    assert_eq!(body.get("remaining"), None, "zero is left out: {body}");

    let response = connect(
        &app.grpc_address,
        "zitadel.user.v2.UserService/GenerateRecoveryCodes",
        format!("Bearer {token}"),
        json!({ "userId": sub, "count": 4 }),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["recoveryCodes"].as_array().unwrap().len(), 4, "{body}");

    let response = connect(
        &app.grpc_address,
        "zitadel.user.v2.UserService/RemoveRecoveryCodes",
        format!("Bearer {token}"),
        json!({ "userId": sub }),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    let response = connect(
        &app.grpc_address,
        "zitadel.user.v2.UserService/RemoveRecoveryCodes",
        format!("Bearer {token}"),
        json!({ "userId": sub }),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "not_found", "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_code_in_a_database_dump() {
    let Some(app) = spawn_app().await else { return };
    let sub = user("rc-at-rest");
    let token = app.token(&sub);
    ready(&app, &token).await;
    let codes = codes_of(&generate(&app, &token, &sub, json!(10)).await);
    let dump = app.dump();
    assert!(
        dump.contains(&sub) && dump.contains("recovery"),
        "the dump holds the user's rows"
    );
    for code in &codes {
        let canonical = code.replace('-', "");
        for needle in [
            code.clone(),
            canonical.clone(),
            canonical.to_lowercase(),
            code.to_lowercase(),
        ] {
            assert!(
                !dump.contains(&needle),
                "a recovery code is in the dump as {needle}"
            );
        }
    }
    // The hashes are there, as 32-byte values (one per code).
    let stored = app
        .db
        .query(&format!(
            "SELECT array_length(recovery_hashes, 1)::text || ' ' || octet_length(recovery_hashes[1])::text \
             FROM otp_user_streams WHERE user_id = '{sub}'"
        ))
        .await;
    assert_eq!(stored, ["10 32"]);
}

/// Two replicas on one database: of 16 parallel redemptions of one code,
/// spread over both, exactly one succeeds; no code reaches their logs.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_code_is_redeemed_once_across_two_processes() {
    let Some(db) = TestDatabase::create_empty().await else {
        return;
    };
    let issuer = spawn_issuer().await;
    let env = [
        ("OTP__LOG__FILTER", "debug"),
        ("OTP__TOTP__MAX_ATTEMPTS", "100"),
    ];
    let (a, b) = tokio::join!(serve(&db, &issuer, &env), serve(&db, &issuer, &env));
    let client = reqwest::Client::new();
    let sub = user("rc-two");
    let token = sign(&claims(&issuer.url, &sub));
    let post = |url: String, token: String, body: Value| {
        let client = client.clone();
        async move {
            let response = client
                .post(url)
                .header("Authorization", format!("Bearer {token}"))
                .header("Content-Type", "application/json")
                .body(body.to_string())
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let (status, body) = post(
        format!("{}/auth/v1/users/me/auth_factors/otp", a.address),
        token.clone(),
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let secret = body["secret"].as_str().unwrap().to_owned();
    let (status, body) = post(
        format!("{}{VERIFY}", b.address),
        token.clone(),
        json!({ "code": code_at(&secret, settled_now().await) }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = post(
        format!("{}/v2/users/{sub}/recovery_codes", a.address),
        token.clone(),
        json!({ "count": 10 }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let codes: Vec<String> = body["recoveryCodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();

    let mut service_claims = claims(&issuer.url, "svc-login");
    service_claims["scope"] = json!("otp.check");
    let service = sign(&service_claims);
    let internal = [a.internal_address.clone(), b.internal_address.clone()];
    let redeems = (0..16).map(|i| {
        post(
            format!("{}/v1/users/{sub}/recovery_codes/_check", internal[i % 2]),
            service.clone(),
            json!({ "code": codes[3] }),
        )
    });
    let answers = join_all(redeems).await;
    let ok: Vec<_> = answers
        .iter()
        .filter(|(status, _)| *status == 200)
        .collect();
    assert_eq!(ok.len(), 1, "{answers:?}");
    assert_eq!(ok[0].1["remaining"], 9);
    for (status, body) in answers.iter().filter(|(status, _)| *status != 200) {
        assert_eq!(
            (*status, body["details"][0]["id"].as_str()),
            (400, Some("EVENT-8isk2")),
            "{body}"
        );
    }
    let stored = db
        .query(&format!(
            "SELECT count(*)::text FROM otp_events WHERE user_id = '{sub}' AND kind = 'recovery_codes.redeemed' \
             UNION ALL SELECT array_length(recovery_hashes, 1)::text FROM otp_user_streams WHERE user_id = '{sub}'"
        ))
        .await;
    assert_eq!(stored, ["1", "9"]);

    let logs = format!("{}{}", a.logs(), b.logs());
    assert!(
        logs.contains("recovery_codes.redeemed"),
        "the audit log names the event"
    );
    for code in &codes {
        let canonical = code.replace('-', "");
        assert!(
            !logs.contains(code.as_str()) && !logs.contains(&canonical),
            "a recovery code is in the logs"
        );
    }
}
