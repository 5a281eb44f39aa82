//! One factor per user and verify-once, under parallel requests.

use std::collections::BTreeMap;

use adapters_grpc::proto::zitadel::auth::v1::AddMyAuthFactorOtpRequest;
use adapters_grpc::proto::zitadel::auth::v1::auth_service_client::AuthServiceClient;
use futures::future::join_all;

use crate::helpers::{code_at, settled_now, spawn_app, spawn_app_with, user};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_parallel_adds_leave_one_factor_and_only_the_latest_secret_verifies() {
    // Many wrong codes on purpose: the attempt limit is not what this checks.
    // 64 adds by one user: the per-user change limit is not what is tested.
    let Some(app) = spawn_app_with(&[
        ("OTP__TOTP__MAX_ATTEMPTS", "100"),
        ("OTP__TOTP__MAX_CHANGES_PER_HOUR", "0"),
    ])
    .await
    else {
        return;
    };
    let token = app.token(&user("parallel-adds"));
    let answers = join_all((0..64).map(|_| app.add(&token))).await;
    let mut by_sequence = BTreeMap::new();
    for answer in answers {
        assert_eq!(answer.status, 200, "{}", answer.body);
        let sequence: u64 = answer.body["details"]["sequence"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        by_sequence.insert(sequence, answer.body["secret"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        by_sequence.keys().copied().collect::<Vec<_>>(),
        (1..=64).collect::<Vec<_>>()
    );
    let (_, latest) = by_sequence.pop_last().unwrap();
    let now = settled_now().await;
    let latest_code = code_at(&latest, now);
    for secret in by_sequence.values() {
        let code = code_at(secret, now);
        if code != latest_code {
            assert_eq!(
                app.verify(&token, &code).await.status,
                400,
                "an older secret must not verify"
            );
        }
    }
    assert_eq!(app.verify(&token, &latest_code).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_parallel_verifies_of_one_code_succeed_once() {
    let Some(app) = spawn_app().await else { return };
    let token = app.token(&user("parallel-verifies"));
    let secret = app.add(&token).await.body["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let code = code_at(&secret, settled_now().await);
    let answers = join_all((0..16).map(|_| app.verify(&token, &code))).await;
    let ok = answers.iter().filter(|a| a.status == 200).count();
    assert_eq!(
        ok,
        1,
        "{:?}",
        answers
            .iter()
            .map(|a| a.body.to_string())
            .collect::<Vec<_>>()
    );
    for answer in answers.iter().filter(|a| a.status != 200) {
        crate::helpers::assert_error(answer, 400, 9, "COMMAND-qx4ls");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_two_parallel_adds_of_different_users_all_succeed() {
    let Some(app) = spawn_app().await else { return };
    let tokens: Vec<String> = (0..32)
        .map(|i| app.token(&user(&format!("parallel-users-{i}"))))
        .collect();
    let answers = join_all(tokens.iter().map(|token| app.add(token))).await;
    for answer in &answers {
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(answer.body["details"]["sequence"], "1", "{}", answer.body);
    }
    let stored = app
        .db
        .query("SELECT count(*)::text FROM otp_factors WHERE user_id LIKE 'parallel-users-%'")
        .await;
    assert_eq!(stored, ["32"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_can_never_serialise_a_change_answers_503_not_500() {
    let Some(app) = spawn_app().await else { return };
    // Every write of a stream row is rolled back as a serialization failure.
    app.db
        .query(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
             RAISE EXCEPTION 'could not serialize access' USING ERRCODE = '40001'; END $$",
        )
        .await;
    app.db
        .query(
            "CREATE TRIGGER refuse BEFORE INSERT OR UPDATE ON otp_user_streams \
             FOR EACH ROW EXECUTE FUNCTION refuse()",
        )
        .await;
    let token = app.token(&user("never-serialised"));
    let answer = app.add(&token).await;
    crate::helpers::assert_error(&answer, 503, 14, "OTP-UNAVAILABLE");
    // The same over gRPC: UNAVAILABLE (14), never INTERNAL.
    let mut client = AuthServiceClient::connect(app.grpc_address.clone())
        .await
        .unwrap();
    let mut request = tonic::Request::new(AddMyAuthFactorOtpRequest {});
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let status = client.add_my_auth_factor_otp(request).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    // Reads are untouched: the user simply has no factor.
    assert_eq!(app.list(&token).await.status, 200);
}
