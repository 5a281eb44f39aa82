//! The token and caller rules (docs/security.md) end to end: the login check's client
//! allowlist, a recent sign-in for Remove and Add over a factor, and load
//! shedding of introspection.

use futures::future::join_all;
use serde_json::{Value, json};

use crate::helpers::{
    INTROSPECTION_CLIENT, TestApp, assert_error, claims, code_at, settled_now, sign,
    spawn_app_with, user,
};

async fn enrolled(app: &TestApp, token: &str) -> (String, i64) {
    let secret = app.add(token).await.body["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let now = settled_now().await;
    let verified = app.verify(token, &code_at(&secret, now)).await;
    assert_eq!(verified.status, 200, "{}", verified.body);
    (secret, now)
}

/// A token for `sub` with extra claims.
fn token_with(app: &TestApp, sub: &str, extra: &Value) -> String {
    let mut claims = claims(&app.issuer.url, sub);
    for (name, value) in extra.as_object().unwrap() {
        claims[name] = value.clone();
    }
    sign(&claims)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_check_scope_alone_is_not_enough_the_client_must_be_listed() {
    let Some(app) = spawn_app_with(&[("OTP__AUTH__CHECK_CLIENTS", "login-app")]).await else {
        return;
    };
    let sub = user("check-clients");
    let (secret, now) = enrolled(&app, &app.token(&sub)).await;

    // An end user who obtained a token with `otp.check` (ZITADEL #10408):
    // refused, and the refusal counts no attempt against the victim.
    let smuggled = token_with(
        &app,
        &user("attacker"),
        &json!({ "scope": "openid otp.check", "azp": "device-app", "client_id": "device-app" }),
    );
    for _ in 0..6 {
        let denied = app.check(&smuggled, &sub, "000000").await;
        assert_error(&denied, 403, 7, "AUTH-5mWD2");
    }
    // The listed client (by `client_id`, as client-credentials tokens carry it).
    let trusted = token_with(
        &app,
        "machine-user-1",
        &json!({ "scope": "otp.check", "client_id": "login-app" }),
    );
    let checked = app.check(&trusted, &sub, &code_at(&secret, now + 30)).await;
    assert_eq!(checked.status, 200, "{}", checked.body);

    // Nobody is listed (the default): nobody may check.
    let Some(closed) = spawn_app_with(&[("OTP__AUTH__CHECK_CLIENTS", "")]).await else {
        return;
    };
    let sub = user("check-closed");
    let (secret, now) = enrolled(&closed, &closed.token(&sub)).await;
    let trusted = token_with(
        &closed,
        "login-service",
        &json!({ "scope": "otp.check", "client_id": "login-app" }),
    );
    let denied = closed
        .check(&trusted, &sub, &code_at(&secret, now + 30))
        .await;
    assert_error(&denied, 403, 7, "AUTH-5mWD2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stolen_token_cannot_remove_or_replace_the_factor_when_recent_sign_in_is_required() {
    let Some(app) = spawn_app_with(&[
        ("OTP__AUTH__RECENT_AUTH_MAX_AGE", "5m"),
        ("OTP__AUTH__RECENT_AUTH_METHODS", "mfa,otp"),
    ])
    .await
    else {
        return;
    };
    let now = chrono::Utc::now().timestamp();
    let sub = user("recent");
    // A first enrolment needs no recent sign-in.
    let (_, _) = enrolled(&app, &app.token(&sub)).await;

    let stolen = token_with(
        &app,
        &sub,
        &json!({ "auth_time": now - 3600, "amr": ["pwd", "mfa"] }),
    );
    let weak = token_with(&app, &sub, &json!({ "auth_time": now, "amr": ["pwd"] }));
    for (name, token) in [
        ("old", &stolen),
        ("weak", &weak),
        ("no claims", &app.token(&sub)),
    ] {
        for answer in [app.remove(token).await, app.add(token).await] {
            assert_error(&answer, 401, 16, "OTP-RECENT-AUTH");
            assert!(
                answer
                    .www_authenticate
                    .as_deref()
                    .is_some_and(|c| c.contains("insufficient_user_authentication")),
                "{name}: {:?}",
                answer.www_authenticate
            );
        }
    }
    // Still there, untouched: listed, and the next event is sequence 3.
    assert_eq!(
        app.list(&stolen).await.body["result"][0]["otp"],
        json!({}),
        "the factor is still listed"
    );
    let fresh = token_with(
        &app,
        &sub,
        &json!({ "auth_time": now, "amr": ["pwd", "mfa"] }),
    );
    let removed = app.remove(&fresh).await;
    assert_eq!(removed.status, 200, "{}", removed.body);
    assert_eq!(removed.body["details"]["sequence"], "3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn introspection_beyond_its_bound_is_shed_with_503_not_queued() {
    let Some(app) = spawn_app_with(&[
        ("OTP__AUTH__INTROSPECTION_CLIENT_ID", INTROSPECTION_CLIENT.0),
        (
            "OTP__AUTH__INTROSPECTION_CLIENT_SECRET",
            INTROSPECTION_CLIENT.1,
        ),
        ("OTP__AUTH__INTROSPECTION_MAX_CONCURRENT", "1"),
    ])
    .await
    else {
        return;
    };
    // Each of these takes the endpoint 1.5 s: one runs, the other is shed.
    let answers = join_all(
        ["opaque-slow-a", "opaque-slow-b"]
            .into_iter()
            .map(|token| app.list(token)),
    )
    .await;
    let mut statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 503]);
    let shed = answers.iter().find(|a| a.status == 503).unwrap();
    assert_error(shed, 503, 14, "OTP-UNAVAILABLE");
}

#[test]
fn keys_generate_refuses_ids_that_serve_would_refuse() {
    use secrecy::SecretString;
    let generate = |id: Option<&str>| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_otp-service"));
        command
            .args(["keys", "generate"])
            .env("OTEL_SDK_DISABLED", "true");
        if let Some(id) = id {
            command.args(["--id", id]);
        }
        command.output().unwrap()
    };
    for bad in ["", " k1", "k1,k2", "k1:x", "k 1", "ключ", &"k".repeat(65)] {
        let output = generate(Some(bad));
        assert!(!output.status.success(), "{bad:?} was accepted");
        let printed = String::from_utf8_lossy(&output.stdout);
        assert!(
            !printed.lines().any(|line| {
                adapters_crypto::AesGcmCipher::from_config(&SecretString::from(line.trim())).is_ok()
            }),
            "{bad:?}: no key line is printed: {printed}"
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("key id"), "{bad:?}: {stderr}");
    }
    for good in [Some("k2026-12.a_b"), None] {
        let output = generate(good);
        assert!(output.status.success(), "{good:?}");
        let line = String::from_utf8(output.stdout).unwrap();
        // What it printed is what `serve` loads, under the id asked for.
        let ring =
            adapters_crypto::AesGcmCipher::from_config(&SecretString::from(line.trim())).unwrap();
        let active = application::SecretCipher::active_key_id(&ring).to_owned();
        if let Some(good) = good {
            assert_eq!(active, good);
        }
    }
}
