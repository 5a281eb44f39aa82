//! Every row of the contract's behaviour table, over HTTP on PostgreSQL.

use reqwest::Method;
use serde_json::json;

use crate::helpers::{
    OTP, SEARCH, assert_error, code_at, settled_now, spawn_app, spawn_app_with, user,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_answers_the_seed_shape_with_the_seed_url() {
    let Some(app) = spawn_app().await else { return };
    let token = app.token("gigi");
    let added = app.add(&token).await;
    assert_eq!(added.status, 200, "{}", added.body);
    let secret = added.body["secret"].as_str().unwrap();
    assert_eq!(secret.len(), 32);
    assert!(
        secret
            .chars()
            .all(|c| c.is_ascii_uppercase() || ('2'..='7').contains(&c)),
        "{secret}"
    );
    assert_eq!(
        added.body["url"],
        format!(
            "otpauth://totp/ZITADEL:gigi@acme.zitadel.cloud?algorithm=SHA1&digits=6&issuer=ZITADEL&period=30&secret={secret}"
        )
    );
    let details = &added.body["details"];
    assert_eq!(details["sequence"], "1");
    assert_eq!(details["resourceOwner"], "69629023906488334");
    assert_eq!(details["creationDate"], details["changeDate"]);
    let date = details["changeDate"].as_str().unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(date).is_ok() && date.ends_with('Z'),
        "{date}"
    );
    let keys: Vec<&String> = added.body.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 3, "only url, secret and details: {keys:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_curl_and_an_empty_body_both_add() {
    let Some(app) = spawn_app().await else { return };
    let token = app.token(&user("seed-curl"));
    // curl -X POST .../otp -H 'Content-Type: application/json' -H 'Accept: application/json' -H 'Authorization: Bearer ...' -d '{}'
    let seed = app
        .client
        .post(format!("{}{OTP}", app.address))
        .header("Content-Type", "application/json")
        .header("Accept", "application/json")
        .header("Authorization", format!("Bearer {token}"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(seed.status(), 200);
    assert_eq!(seed.headers()["content-type"], "application/json");
    let empty = app
        .call(Method::POST, OTP, Some(&format!("Bearer {token}")), None)
        .await;
    assert_eq!(empty.status, 200, "{}", empty.body);
    assert_eq!(empty.body["details"]["sequence"], "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_row_of_the_behaviour_table() {
    // Many wrong codes on purpose: the attempt limit is not what this checks.
    let Some(app) = spawn_app_with(&[("OTP__TOTP__MAX_ATTEMPTS", "100")]).await else {
        return;
    };
    let token = app.token(&user("table"));

    // Verify | none
    assert_error(
        &app.verify(&token, "123456").await,
        404,
        5,
        "COMMAND-3Mif9s",
    );
    // Remove | none
    assert_error(&app.remove(&token).await, 404, 5, "COMMAND-Hd9sd");
    // Add | none
    let first = app.add(&token).await;
    assert_eq!(
        (first.status, &first.body["details"]["sequence"]),
        (200, &json!("1"))
    );
    // Add | NOT_READY: a new secret; the older one stops working
    let second = app.add(&token).await;
    assert_eq!(
        (second.status, &second.body["details"]["sequence"]),
        (200, &json!("2"))
    );
    let (old, new) = (
        first.body["secret"].as_str().unwrap(),
        second.body["secret"].as_str().unwrap(),
    );
    assert_ne!(old, new);
    // List | NOT_READY: nothing listed
    assert_eq!(app.list(&token).await.body, json!({}));
    // Verify | NOT_READY, wrong code (the old secret's, and codes of the wrong shape)
    let now = settled_now().await;
    let (old_code, right) = (code_at(old, now), code_at(new, now));
    if old_code != right {
        assert_error(&app.verify(&token, &old_code).await, 400, 3, "EVENT-8isk2");
    }
    for bad in ["12345", "1234567", "abcdef", "12 456"] {
        assert_error(&app.verify(&token, bad).await, 400, 3, "EVENT-8isk2");
    }
    // Verify | NOT_READY, right code
    let verified = app.verify(&token, &right).await;
    assert_eq!(verified.status, 200, "{}", verified.body);
    assert_eq!(verified.body["details"]["sequence"], "3");
    assert_eq!(
        verified.body["details"]["resourceOwner"],
        "69629023906488334"
    );
    assert!(verified.body["details"]["changeDate"].is_string());
    assert!(verified.body["details"].get("creationDate").is_none());
    // Verify | READY
    assert_error(&app.verify(&token, &right).await, 400, 9, "COMMAND-qx4ls");
    // Add | READY
    assert_error(&app.add(&token).await, 409, 6, "COMMAND-do9se");
    // List | READY
    assert_eq!(
        app.list(&token).await.body,
        json!({"result": [{"state": "AUTH_FACTOR_STATE_READY", "otp": {}}]})
    );
    // Remove | READY
    let removed = app.remove(&token).await;
    assert_eq!(
        (removed.status, &removed.body["details"]["sequence"]),
        (200, &json!("4"))
    );
    assert_eq!(app.list(&token).await.body, json!({}));
    assert_error(&app.remove(&token).await, 404, 5, "COMMAND-Hd9sd");
    // Remove | NOT_READY
    assert_eq!(app.add(&token).await.body["details"]["sequence"], "5");
    assert_eq!(app.remove(&token).await.body["details"]["sequence"], "6");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_accepts_steps_t_minus_one_to_t_plus_one_only() {
    let Some(app) = spawn_app().await else { return };
    for (offset, accepted) in [
        (-90_i64, false),
        (-60, false),
        (60, false),
        (-30, true),
        (0, true),
        (30, true),
    ] {
        let token = app.token(&user("window"));
        let secret = app.add(&token).await.body["secret"]
            .as_str()
            .unwrap()
            .to_owned();
        let now = settled_now().await;
        let answer = app.verify(&token, &code_at(&secret, now + offset)).await;
        assert_eq!(
            answer.status == 200,
            accepted,
            "offset {offset}: {}",
            answer.body
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_never_see_each_others_factor() {
    let Some(app) = spawn_app().await else { return };
    let (alice, bob) = (app.token(&user("alice")), app.token(&user("bob")));
    let secret = app.add(&alice).await.body["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let code = code_at(&secret, settled_now().await);
    assert_error(&app.verify(&bob, &code).await, 404, 5, "COMMAND-3Mif9s");
    assert_error(&app.remove(&bob).await, 404, 5, "COMMAND-Hd9sd");
    assert_eq!(app.verify(&alice, &code).await.status, 200);
    assert_eq!(app.list(&bob).await.body, json!({}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bodies_get_400_and_change_nothing() {
    let Some(app) = spawn_app().await else { return };
    let token = app.token(&user("bodies"));
    let bearer = format!("Bearer {token}");
    app.add(&token).await;
    let huge = format!(r#"{{"code":"{}"}}"#, "9".repeat(100 * 1024));
    for body in [
        r#"{"code": 123456}"#,
        r#"{"code": ["1"]}"#,
        "{",
        "code=123456",
        huge.as_str(),
    ] {
        let answer = app
            .call(
                Method::POST,
                crate::helpers::VERIFY,
                Some(&bearer),
                Some(body.to_owned()),
            )
            .await;
        assert_eq!(
            (answer.status, &answer.body["code"]),
            (400, &json!(3)),
            "{body:.30}: {}",
            answer.body
        );
    }
    let too_long = app.verify(&token, &"1".repeat(201)).await;
    assert_eq!((too_long.status, &too_long.body["code"]), (400, &json!(3)));
    let wrong_method = app.call(Method::PUT, OTP, Some(&bearer), None).await;
    assert_eq!(
        (wrong_method.status, &wrong_method.body["code"]),
        (405, &json!(12))
    );
    let unknown = app
        .call(
            Method::POST,
            "/auth/v1/users/me/nothing",
            Some(&bearer),
            None,
        )
        .await;
    assert_eq!((unknown.status, &unknown.body["code"]), (404, &json!(5)));
    let search_get = app.call(Method::GET, SEARCH, Some(&bearer), None).await;
    assert_eq!(search_get.status, 405);
    // Still exactly one pending factor, at sequence 1: a fresh add is sequence 2.
    assert_eq!(app.add(&token).await.body["details"]["sequence"], "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_answer() {
    let Some(app) = spawn_app().await else { return };
    assert_eq!(
        app.call(Method::GET, "/healthz", None, None).await.status,
        200
    );
    let ready = app.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(
        (ready.status, &ready.body["status"]),
        (200, &json!("ready"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_database_is_503_never_500() {
    let Some(app) = spawn_app().await else { return };
    let url = secrecy::SecretString::from("postgres://postgres@127.0.0.1:1/nowhere");
    let mut settings = crate::helpers::settings(&url, &app.issuer.url);
    settings.database.connect_timeout = std::time::Duration::from_secs(1);
    let broken = crate::helpers::start(&settings);
    let address = format!("http://127.0.0.1:{}", broken.port());
    tokio::spawn(broken.run_until_stopped());
    let token = app.token(&user("no-db"));
    let client = &app.client;
    let ready = client
        .get(format!("{address}/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let add = client
        .post(format!("{address}{OTP}"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(add.status(), 503);
    let body: serde_json::Value = add.json().await.unwrap();
    assert_eq!(body["code"], 14);
    assert!(!body.to_string().contains("127.0.0.1:1"), "{body}");
    assert_eq!(
        client
            .get(format!("{address}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}
