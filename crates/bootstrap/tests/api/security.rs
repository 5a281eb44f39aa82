//! The security rules (docs/security.md) end to end: replay protection, attempt limits (exact under
//! concurrency, across replicas), the trusted-caller login check over REST
//! and gRPC, and per-factor parameters against oathtool.

use futures::future::join_all;
use serde_json::json;

use crate::helpers::{
    assert_checked_then_locked, assert_error, code_at, settings_with, settled_now, spawn_app_with,
    start, user,
};
use crate::interop::oathtool_with;

async fn enrolled(app: &crate::helpers::TestApp, sub: &str) -> (String, i64) {
    let token = app.token(sub);
    let secret = app.add(&token).await.body["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let now = settled_now().await;
    let verified = app.verify(&token, &code_at(&secret, now)).await;
    assert_eq!(verified.status, 200, "{}", verified.body);
    (secret, now)
}

fn wrong(secret: &str, now: i64) -> String {
    let window: Vec<String> = [-30, 0, 30]
        .iter()
        .map(|o| code_at(secret, now + o))
        .collect();
    (0..10)
        .map(|d| format!("{d}").repeat(6))
        .find(|c| !window.contains(c))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_setup_code_cannot_be_replayed_at_the_check_but_the_next_step_passes() {
    let Some(app) = spawn_app_with(&[]).await else {
        return;
    };
    let sub = user("check-replay");
    let (secret, now) = enrolled(&app, &sub).await;
    let service = app.service_token("login-service");

    let replay = app.check(&service, &sub, &code_at(&secret, now)).await;
    assert_error(&replay, 400, 3, "TOTP-Auw0a");
    // The authenticator's next code (one step ahead, inside the window) passes.
    let next = app.check(&service, &sub, &code_at(&secret, now + 30)).await;
    assert_eq!(next.status, 200, "{}", next.body);
    assert_eq!(next.body["details"]["sequence"], "4", "{}", next.body);
    assert!(next.body["details"]["changeDate"].is_string());
    assert!(next.body["details"].get("resourceOwner").is_none());
    let again = app.check(&service, &sub, &code_at(&secret, now + 30)).await;
    assert_error(&again, 400, 3, "TOTP-Auw0a");

    // The events, with the caller as actor.
    let rows = app
        .db
        .query(&format!(
            "SELECT kind || ':' || actor FROM otp_events WHERE user_id = '{sub}' ORDER BY sequence"
        ))
        .await;
    assert_eq!(
        rows,
        [
            format!("otp.added:{sub}"),
            format!("otp.verified:{sub}"),
            "otp.check.failed:login-service".to_owned(),
            "otp.check.succeeded:login-service".to_owned(),
            "otp.check.failed:login-service".to_owned(),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_check_needs_a_token_with_the_check_scope() {
    let Some(app) = spawn_app_with(&[]).await else {
        return;
    };
    let sub = user("check-scope");
    let (secret, now) = enrolled(&app, &sub).await;
    let code = code_at(&secret, now + 30);
    // The user's own token has no `otp.check`.
    let denied = app.check(&app.token(&sub), &sub, &code).await;
    assert_error(&denied, 403, 7, "AUTH-5mWD2");
    let missing = app
        .call_at(
            &app.internal_address,
            reqwest::Method::POST,
            &format!("/v1/users/{sub}/otp/_check"),
            None,
            Some(json!({ "code": code }).to_string()),
        )
        .await;
    assert_eq!((missing.status, &missing.body["code"]), (401, &json!(16)));
    let get = app
        .call_at(
            &app.internal_address,
            reqwest::Method::GET,
            &format!("/v1/users/{sub}/otp/_check"),
            None,
            None,
        )
        .await;
    assert_eq!(get.status, 405);
    let service = app.service_token("login-service");
    assert_error(
        &app.check(&service, &user("nobody"), &code).await,
        404,
        5,
        "COMMAND-3Mif9s",
    );
    assert_eq!(app.check(&service, &sub, &code).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_attempts_lock_and_the_lock_ends_by_itself() {
    let Some(app) = spawn_app_with(&[
        ("OTP__TOTP__MAX_ATTEMPTS", "3"),
        ("OTP__TOTP__LOCKOUT", "3s"),
    ])
    .await
    else {
        return;
    };
    let sub = user("lockout");
    let (secret, now) = enrolled(&app, &sub).await;
    let service = app.service_token("login-service");
    for _ in 0..3 {
        assert_error(
            &app.check(&service, &sub, &wrong(&secret, now)).await,
            400,
            3,
            "EVENT-8isk2",
        );
    }
    // The right code during the lockout is refused unchecked, saying until when.
    let right = code_at(&secret, now + 30);
    let locked = app.check(&service, &sub, &right).await;
    assert_error(&locked, 400, 9, "COMMAND-SF3fg");
    let text = locked.body["details"][0]["message"].as_str().unwrap();
    let until = text.strip_prefix("User is locked until ").unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(until).is_ok(),
        "{text}"
    );

    tokio::time::sleep(std::time::Duration::from_millis(3200)).await;
    let after = app.check(&service, &sub, &right).await;
    assert_eq!(after.status, 200, "{}", after.body);
    let kinds = app
        .db
        .query(&format!(
            "SELECT kind FROM otp_events WHERE user_id = '{sub}' AND kind = 'otp.locked'"
        ))
        .await;
    assert_eq!(kinds.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_wrong_codes_across_two_replicas_never_exceed_the_limit() {
    let Some(app) = spawn_app_with(&[("OTP__TOTP__MAX_ATTEMPTS", "5")]).await else {
        return;
    };
    // A second replica over the same database.
    let replica = start(&settings_with(&app.db.url, &app.issuer.url, &[]));
    let replica_address = format!("http://127.0.0.1:{}", replica.internal_port().unwrap());
    tokio::spawn(replica.run_until_stopped());

    let sub = user("lockout-race");
    let (secret, now) = enrolled(&app, &sub).await;
    let service = app.service_token("login-service");
    let bad = wrong(&secret, now);
    let calls = (0..24).map(|i| {
        let address = if i % 2 == 0 {
            &app.internal_address
        } else {
            &replica_address
        };
        app.check_at(address, &service, &sub, &bad)
    });
    let answers = join_all(calls).await;
    // Each check reads and raises the count while holding the user's stream
    // row lock, so checks of one user are serialised across replicas: exactly
    // max_attempts wrong codes are looked at and every later one finds the
    // user locked. (Without that lock, up to the number of concurrent
    // requests could read the same count and all be checked.)
    assert_checked_then_locked(answers.iter().map(|answer| &answer.body), 5, 19);
    let count = app
        .db
        .query(&format!(
            "SELECT failed_attempts::text FROM otp_user_streams WHERE user_id = '{sub}'"
        ))
        .await;
    assert_eq!(count, ["5"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sha256_8_digit_factor_verifies_oathtool_and_survives_a_config_change() {
    let Some(app) = spawn_app_with(&[
        ("OTP__TOTP__ALGORITHM", "SHA256"),
        ("OTP__TOTP__DIGITS", "8"),
    ])
    .await
    else {
        return;
    };
    let sub = user("sha256");
    let token = app.token(&sub);
    let added = app.add(&token).await;
    let secret = added.body["secret"].as_str().unwrap().to_owned();
    assert!(
        added.body["url"]
            .as_str()
            .unwrap()
            .contains("algorithm=SHA256&digits=8"),
        "{}",
        added.body
    );
    let now = settled_now().await;
    let at = |unix: i64| format!("@{unix}");
    let Some(code) = oathtool_with(&["--totp=sha256", "--digits=8", "-b", &secret, "-N", &at(now)])
    else {
        return;
    };
    assert_eq!(code.len(), 8);
    let verified = app.verify(&token, &code).await;
    assert_eq!(verified.status, 200, "{}", verified.body);

    // The configuration goes back to SHA1/6: a replica started with it still
    // checks this factor with its own parameters.
    let sha1 = start(&settings_with(&app.db.url, &app.issuer.url, &[]));
    let sha1_address = format!("http://127.0.0.1:{}", sha1.internal_port().unwrap());
    tokio::spawn(sha1.run_until_stopped());
    let next = oathtool_with(&[
        "--totp=sha256",
        "--digits=8",
        "-b",
        &secret,
        "-N",
        &at(now + 30),
    ])
    .unwrap();
    let service = app.service_token("login-service");
    let answer = app.check_at(&sha1_address, &service, &sub, &next).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_check_over_grpc_answers_as_over_rest() {
    use adapters_grpc::proto::otp::v1::CheckOtpRequest;
    use adapters_grpc::proto::otp::v1::otp_check_service_client::OtpCheckServiceClient;
    use tonic::metadata::MetadataValue;

    let Some(app) = spawn_app_with(&[]).await else {
        return;
    };
    let sub = user("check-grpc");
    let (secret, now) = enrolled(&app, &sub).await;
    let mut client = OtpCheckServiceClient::connect(app.internal_grpc_address.clone())
        .await
        .unwrap();
    let call = |token: String, code: String| {
        let mut request = tonic::Request::new(CheckOtpRequest {
            user_id: sub.clone(),
            code,
        });
        request.metadata_mut().insert(
            "authorization",
            MetadataValue::try_from(format!("Bearer {token}")).unwrap(),
        );
        request
    };
    let denied = client
        .check_otp(call(app.token(&sub), code_at(&secret, now + 30)))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    let service = app.service_token("login-service");
    let replay = client
        .check_otp(call(service.clone(), code_at(&secret, now)))
        .await
        .unwrap_err();
    assert_eq!(replay.code(), tonic::Code::InvalidArgument);
    assert!(
        replay.message().ends_with("(TOTP-Auw0a)"),
        "{}",
        replay.message()
    );
    let ok = client
        .check_otp(call(service, code_at(&secret, now + 30)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ok.details.unwrap().sequence, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotate_reseals_so_the_old_key_can_go() {
    use secrecy::ExposeSecret;
    const K2: &str = "k2:ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";

    let Some(app) = spawn_app_with(&[]).await else {
        return;
    };
    let subs: Vec<String> = (0..3).map(|i| user(&format!("rotate-{i}"))).collect();
    let mut enrolled_secrets = Vec::new();
    for sub in &subs {
        enrolled_secrets.push(enrolled(&app, sub).await);
    }
    let keys = app
        .db
        .query("SELECT DISTINCT key_id FROM otp_factors")
        .await;
    assert_eq!(keys, ["k1"]);

    // The new key first: it seals, k1 still opens. Small batches.
    let rotate = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_otp-service"))
            .args(["keys", "rotate", "--batch-size", "2"])
            .env("OTP__DATABASE__URL", app.db.url.expose_secret())
            .env(
                "OTP__CRYPTO__KEYS",
                format!("{K2},{}", crate::helpers::TEST_KEYS),
            )
            .env("OTP__LOG__FILTER", "warn")
            .output()
            .unwrap()
    };
    let output = rotate();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("batch 2: scanned 3, to re-seal 3, re-sealed 3"),
        "{stdout}"
    );
    assert!(
        stdout
            .contains("done: scanned 3, to re-seal 3, re-sealed 3, changed meanwhile 0, failed 0"),
        "{stdout}"
    );
    assert!(!stdout.contains("AAECAw"), "no key material in the output");
    let keys = app
        .db
        .query("SELECT DISTINCT key_id FROM otp_factors")
        .await;
    assert_eq!(keys, ["k2"]);
    // Run again: nothing left.
    let again = rotate();
    assert!(String::from_utf8_lossy(&again.stdout).contains("done: scanned 3, to re-seal 0"));

    // k1 removed: a replica with only k2 checks every factor.
    let k2_only = start(&settings_with(
        &app.db.url,
        &app.issuer.url,
        &[("OTP__CRYPTO__KEYS", K2)],
    ));
    let address = format!("http://127.0.0.1:{}", k2_only.internal_port().unwrap());
    tokio::spawn(k2_only.run_until_stopped());
    let service = app.service_token("login-service");
    for (sub, (secret, now)) in subs.iter().zip(&enrolled_secrets) {
        let answer = app
            .check_at(&address, &service, sub, &code_at(secret, now + 30))
            .await;
        assert_eq!(answer.status, 200, "{}", answer.body);
    }
}

/// `keys rotate` with the test key only, as an operator runs it.
fn rotate_with_test_key(db_url: &secrecy::SecretString) -> String {
    use secrecy::ExposeSecret;
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_otp-service"))
        .args(["keys", "rotate"])
        .env("OTP__DATABASE__URL", db_url.expose_secret())
        .env("OTP__CRYPTO__KEYS", crate::helpers::TEST_KEYS)
        .env("OTP__LOG__FILTER", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_secrets_are_bound_to_the_factor_and_rotate_binds_older_ones() {
    use secrecy::SecretString;
    let Some(app) = spawn_app_with(&[]).await else {
        return;
    };
    let sub = user("bound");
    let (secret, now) = enrolled(&app, &sub).await;
    let service = app.service_token("login-service");
    let marker = format!(
        "SELECT encode(substring(sealed_secret from 1 for 4), 'hex') FROM otp_factors WHERE user_id = '{sub}'"
    );
    assert_eq!(app.db.query(&marker).await, ["4f545002"], "bound format");

    // A database writer downgrades the parameters or moves the creation
    // time: the secret no longer opens, so no code is accepted. (It moves
    // the stream's version, as the schema asks of every writer: else a
    // replica that wrote the user last decides on what it wrote, and its
    // next write puts that back.)
    let update = |set: &str| {
        format!(
            "WITH v AS (UPDATE otp_user_streams SET version = version + 1 \
             WHERE user_id = '{sub}') \
             UPDATE otp_factors SET {set} WHERE user_id = '{sub}' RETURNING 'ok'"
        )
    };
    for (tamper, undo) in [
        ("digits = 8", "digits = 6"),
        ("period = 60", "period = 30"),
        ("skew = 2", "skew = 1"),
        (
            "created_at = created_at - interval '1 microsecond'",
            "created_at = created_at + interval '1 microsecond'",
        ),
    ] {
        assert_eq!(app.db.query(&update(tamper)).await, ["ok"]);
        let answer = app.check(&service, &sub, &code_at(&secret, now + 30)).await;
        assert_eq!(answer.status, 500, "{tamper}: {}", answer.body);
        assert_eq!(answer.body["code"], json!(13), "{tamper}");
        assert_eq!(app.db.query(&update(undo)).await, ["ok"]);
    }

    // A secret sealed the way earlier versions did (bound to owner and key
    // id only) opens only where crypto.accept_unbound is set.
    let unbound = adapters_crypto::seal_unbound_for_tests(
        &SecretString::from(crate::helpers::TEST_KEYS),
        &domain::UserId::parse(sub.clone()).unwrap(),
        &domain::TotpSecret::from_base32(&secret).unwrap(),
    )
    .unwrap();
    let hex: String = unbound.sealed.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        app.db
            .query(&update(&format!("sealed_secret = '\\x{hex}'::bytea")))
            .await,
        ["ok"]
    );
    let strict = app.check(&service, &sub, &code_at(&secret, now + 30)).await;
    assert_eq!(strict.status, 500, "{}", strict.body);
    let lenient = start(&settings_with(
        &app.db.url,
        &app.issuer.url,
        &[("OTP__CRYPTO__ACCEPT_UNBOUND", "true")],
    ));
    let lenient_address = format!("http://127.0.0.1:{}", lenient.internal_port().unwrap());
    tokio::spawn(lenient.run_until_stopped());
    // It opens there: the code verified at enrollment is refused as a
    // replay (400), not as a secret that will not open (500).
    let answer = app
        .check_at(&lenient_address, &service, &sub, &code_at(&secret, now))
        .await;
    assert_eq!(answer.status, 400, "{}", answer.body);

    // `keys rotate` re-seals it bound, under the same key; then the strict
    // replica accepts it again.
    let stdout = rotate_with_test_key(&app.db.url);
    assert!(
        stdout
            .contains("done: scanned 1, to re-seal 1, re-sealed 1, changed meanwhile 0, failed 0"),
        "{stdout}"
    );
    assert_eq!(app.db.query(&marker).await, ["4f545002"]);
    let answer = app.check(&service, &sub, &code_at(&secret, now + 30)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(rotate_with_test_key(&app.db.url).contains("done: scanned 1, to re-seal 0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opaque_tokens_are_introspected() {
    use crate::helpers::INTROSPECTION_CLIENT;
    let client = [
        ("OTP__AUTH__INTROSPECTION_CLIENT_ID", INTROSPECTION_CLIENT.0),
        (
            "OTP__AUTH__INTROSPECTION_CLIENT_SECRET",
            INTROSPECTION_CLIENT.1,
        ),
    ];
    let Some(app) = spawn_app_with(&client).await else {
        return;
    };
    let sub = user("opaque");
    let active = format!("opaque-active-{sub}");
    let added = app.add(&active).await;
    assert_eq!(added.status, 200, "{}", added.body);
    // JWTs keep working beside opaque tokens.
    assert_eq!(app.list(&app.token(&sub)).await.status, 200);
    for refused in [format!("opaque-expired-{sub}"), "opaque-unknown".to_owned()] {
        let answer = app.list(&refused).await;
        assert_eq!(
            (answer.status, &answer.body["code"]),
            (401, &json!(16)),
            "{refused}"
        );
    }
    // A service account's opaque token with the scope may check.
    let secret = added.body["secret"].as_str().unwrap().to_owned();
    let now = settled_now().await;
    assert_eq!(
        app.verify(&active, &code_at(&secret, now)).await.status,
        200
    );
    let checked = app
        .check("opaque-active-svc-login", &sub, &code_at(&secret, now + 30))
        .await;
    assert_eq!(checked.status, 200, "{}", checked.body);

    // Wrong client credentials or an unreachable endpoint: 503, never 401 or 500.
    for extra in [
        [
            ("OTP__AUTH__INTROSPECTION_CLIENT_SECRET", "wrong"),
            ("OTP__AUTH__INTROSPECTION_URL", ""),
        ],
        [
            (
                "OTP__AUTH__INTROSPECTION_CLIENT_SECRET",
                INTROSPECTION_CLIENT.1,
            ),
            (
                "OTP__AUTH__INTROSPECTION_URL",
                "http://127.0.0.1:1/introspect",
            ),
        ],
    ] {
        let extra: Vec<_> = [("OTP__AUTH__INTROSPECTION_CLIENT_ID", INTROSPECTION_CLIENT.0)]
            .into_iter()
            .chain(extra)
            .collect();
        let broken = start(&settings_with(&app.db.url, &app.issuer.url, &extra));
        let address = format!("http://127.0.0.1:{}", broken.port());
        tokio::spawn(broken.run_until_stopped());
        let answer = app
            .call_at(
                &address,
                reqwest::Method::POST,
                "/auth/v1/users/me/auth_factors/_search",
                Some(&format!("Bearer {active}")),
                Some("{}".into()),
            )
            .await;
        assert_eq!(answer.status, 503, "{}", answer.body);
        let body = answer.body;
        assert_eq!(body["details"][0]["id"], "OTP-UNAVAILABLE", "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locks_escalate_refusals_are_recorded_and_max_failures_disable_until_removed() {
    let Some(app) = spawn_app_with(&[
        ("OTP__TOTP__MAX_ATTEMPTS", "1"),
        ("OTP__TOTP__LOCKOUT", "1s"),
        ("OTP__TOTP__MAX_LOCKOUT", "1m"),
        ("OTP__TOTP__MAX_FAILURES", "3"),
    ])
    .await
    else {
        return;
    };
    let sub = user("escalation");
    let (secret, now) = enrolled(&app, &sub).await;
    let service = app.service_token("login-service");
    let bad = wrong(&secret, now);
    // First wrong code: locked for 1 s.
    assert_error(
        &app.check(&service, &sub, &bad).await,
        400,
        3,
        "EVENT-8isk2",
    );
    assert_error(
        &app.check(&service, &sub, &bad).await,
        400,
        9,
        "COMMAND-SF3fg",
    );
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    // Second: locked for 2 s, so still locked after 1.1 s.
    assert_error(
        &app.check(&service, &sub, &bad).await,
        400,
        3,
        "EVENT-8isk2",
    );
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_error(
        &app.check(&service, &sub, &bad).await,
        400,
        9,
        "COMMAND-SF3fg",
    );
    tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
    // Third in a row reaches max_failures: refused for good, unchecked.
    assert_error(
        &app.check(&service, &sub, &bad).await,
        400,
        3,
        "EVENT-8isk2",
    );
    let now = settled_now().await;
    let disabled = app.check(&service, &sub, &code_at(&secret, now)).await;
    assert_error(&disabled, 400, 9, "OTP-DISABLED");

    let rows = app
        .db
        .query(&format!(
            "SELECT kind || ':' || actor FROM otp_events WHERE user_id = '{sub}' \
             AND kind LIKE 'otp.check.%' ORDER BY sequence"
        ))
        .await;
    let failed = "otp.check.failed:login-service".to_owned();
    let refused = "otp.check.refused_locked:login-service".to_owned();
    assert_eq!(
        rows,
        [
            failed.clone(),
            refused.clone(),
            failed.clone(),
            refused.clone(),
            failed,
            refused
        ]
    );
    let count = app
        .db
        .query(&format!(
            "SELECT failed_attempts::text FROM otp_user_streams WHERE user_id = '{sub}'"
        ))
        .await;
    assert_eq!(count, ["3"], "refusals while locked do not count");

    // Removing restarts the count; a new factor works.
    let token = app.token(&sub);
    let removed = app.remove(&token).await;
    assert_eq!(removed.status, 200, "{}", removed.body);
    let (secret, now) = enrolled(&app, &sub).await;
    let ok = app.check(&service, &sub, &code_at(&secret, now + 30)).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn factor_changes_per_user_are_rate_limited() {
    let Some(app) = spawn_app_with(&[("OTP__TOTP__MAX_CHANGES_PER_HOUR", "3")]).await else {
        return;
    };
    let sub = user("add-loop");
    let token = app.token(&sub);
    for _ in 0..3 {
        let added = app.add(&token).await;
        assert_eq!(added.status, 200, "{}", added.body);
    }
    let refused = app.add(&token).await;
    assert_error(&refused, 429, 8, "OTP-RATE-LIMITED");
    assert_error(&app.remove(&token).await, 429, 8, "OTP-RATE-LIMITED");
    let events = app
        .db
        .query(&format!(
            "SELECT count(*)::text FROM otp_events WHERE user_id = '{sub}'"
        ))
        .await;
    assert_eq!(events, ["3"], "refused changes append nothing");
    // Another user is not affected.
    let other = app.token(&user("add-loop-other"));
    assert_eq!(app.add(&other).await.status, 200);
}
