//! Importing existing TOTP secrets: the administrators' call over REST,
//! gRPC and Connect, its refusals, the bulk `otp-service import` on a
//! generated file (a bad line, a re-run that skips everything, a resumed
//! run), secrets made by pyotp verified with codes from oathtool, and no
//! imported secret in a database dump or in the command's output.

use std::io::Write as _;
use std::process::{Command, Output};

use adapters_grpc::proto::otp::v1::ImportTotpRequest;
use adapters_grpc::proto::otp::v1::otp_import_service_client::OtpImportServiceClient;
use data_encoding::{BASE32_NOPAD, HEXLOWER};
use reqwest::Method;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use tonic::Request;
use tonic::metadata::MetadataValue;

use crate::helpers::{
    AUDIENCE, TEST_KEYS, TestApp, assert_error, claims, code_at, settled_now, sign, spawn_app,
    spawn_app_with, user,
};
use crate::interop::oathtool_with;

const ROLES_CLAIM: &str = "urn:zitadel:iam:org:project:roles";
/// 160 bits (RFC 6238's test key "12345678901234567890").
const SECRET: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";

/// An instance administrator: may import for any user, also one never seen.
fn instance_admin(app: &TestApp) -> String {
    let mut claims = claims(&app.issuer.url, "import-admin");
    claims[ROLES_CLAIM] =
        json!({"otp.instance_admin": {"69629023906488334": "acme.zitadel.cloud"}});
    sign(&claims)
}

async fn import(app: &TestApp, token: &str, user_id: &str, body: &Value) -> crate::helpers::Answer {
    app.call(
        Method::POST,
        &format!("/v2/users/{user_id}/totp/_import"),
        Some(&format!("Bearer {token}")),
        Some(body.to_string()),
    )
    .await
}

/// The trusted login check with the code an app shows now for `secret`.
async fn check_now(app: &TestApp, user_id: &str, secret: &str) -> crate::helpers::Answer {
    let key = domain::TotpKey::new(
        domain::TotpSecret::from_imported_base32(secret, true).unwrap(),
        domain::TotpParams::default(),
    );
    let code = key.code_at(settled_now().await as u64);
    app.check(
        &app.service_token("login-service"),
        user_id,
        code.expose_secret(),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_import_ready_checks_at_login_and_not_ready_waits_for_the_first_code() {
    let Some(app) = spawn_app().await else { return };
    let admin = instance_admin(&app);

    let ready = user("imp-ready");
    let answer = import(
        &app,
        &admin,
        &ready,
        &json!({"secret": SECRET, "verified": true}),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["details"]["sequence"], "1");
    assert!(answer.body["details"]["changeDate"].is_string());
    assert!(!answer.body.to_string().contains(SECRET));
    let checked = check_now(&app, &ready, SECRET).await;
    assert_eq!(checked.status, 200, "{}", checked.body);

    // A READY factor refuses another import with Add's error, and Add too.
    let again = import(
        &app,
        &admin,
        &ready,
        &json!({"secret": SECRET, "verified": true}),
    )
    .await;
    assert_error(&again, 409, 6, "COMMAND-do9se");

    // Not verified: NOT_READY, no login check, until the user's first code.
    let pending = user("imp-pending");
    let written = "gezd gnbv gy3t qojq gezd gnbv gy3t qojq";
    let answer = import(
        &app,
        &admin,
        &pending,
        &json!({"secret": written, "algorithm": "sha1", "digits": 6, "period": 30}),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let methods = app
        .call(
            Method::GET,
            &format!("/v2/users/{pending}/authentication_methods"),
            Some(&format!("Bearer {admin}")),
            None,
        )
        .await;
    assert_eq!(
        methods.body.get("authMethodTypes"),
        None,
        "{}",
        methods.body
    );
    let refused = check_now(&app, &pending, SECRET).await;
    assert_error(&refused, 404, 5, "COMMAND-3Mif9s");
    let own = app.token(&pending);
    let code = code_at(SECRET, settled_now().await);
    let verified = app
        .call(
            Method::POST,
            &format!("/v2/users/{pending}/totp/verify"),
            Some(&format!("Bearer {own}")),
            Some(json!({"code": code}).to_string()),
        )
        .await;
    assert_eq!(verified.status, 200, "{}", verified.body);

    // Importing over a pending factor replaces it, as Add does.
    let replaced = user("imp-replace");
    let added = app
        .call(
            Method::POST,
            &format!("/v2/users/{replaced}/totp"),
            Some(&format!("Bearer {}", app.token(&replaced))),
            Some("{}".into()),
        )
        .await;
    assert_eq!(added.status, 200, "{}", added.body);
    let answer = import(
        &app,
        &admin,
        &replaced,
        &json!({"secret": SECRET, "verified": true}),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["details"]["sequence"], "2");
    assert_eq!(check_now(&app, &replaced, SECRET).await.status, 200);

    // An 8-digit SHA256 factor with a 60 s period: oathtool's codes verify.
    let sha256 = user("imp-sha256");
    let answer = import(&app, &admin, &sha256, &json!({"secret": SECRET, "algorithm": "SHA256", "digits": 8, "period": 60, "verified": true})).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    settled_now().await;
    if let Some(code) = oathtool_with(&[
        "--totp=sha256",
        "--digits=8",
        "--time-step-size=60s",
        "-b",
        SECRET,
    ]) {
        let checked = app
            .check(&app.service_token("login-service"), &sha256, &code)
            .await;
        assert_eq!(checked.status, 200, "{}", checked.body);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_contract_errors() {
    let Some(app) = spawn_app().await else { return };
    let admin = instance_admin(&app);
    let target = user("imp-refused");
    let invalid = |answer: &crate::helpers::Answer, field: &str| {
        assert_eq!(answer.status, 400, "{}", answer.body);
        assert_eq!(answer.body["code"], 3, "{}", answer.body);
        let message = answer.body["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("ImportTOTPRequest.{field}")),
            "{message}"
        );
        assert!(!message.contains("JBSW"), "{message}");
    };
    // 80 bits: refused unless `import.allow_legacy_80_bit`.
    let short = import(
        &app,
        &admin,
        &target,
        &json!({"secret": "JBSWY3DPEHPK3PXP"}),
    )
    .await;
    invalid(&short, "Secret");
    assert!(short.body["message"].as_str().unwrap().contains("80 bits"));
    invalid(
        &import(
            &app,
            &admin,
            &target,
            &json!({"secret": "JBSWY3DP!HPK3PXPJBSWY3DPEHPK3PXP"}),
        )
        .await,
        "Secret",
    );
    invalid(&import(&app, &admin, &target, &json!({})).await, "Secret");
    invalid(
        &import(
            &app,
            &admin,
            &target,
            &json!({"secret": SECRET, "algorithm": "MD5"}),
        )
        .await,
        "Algorithm",
    );
    invalid(
        &import(
            &app,
            &admin,
            &target,
            &json!({"secret": SECRET, "digits": 7}),
        )
        .await,
        "Digits",
    );
    invalid(
        &import(
            &app,
            &admin,
            &target,
            &json!({"secret": SECRET, "period": 5}),
        )
        .await,
        "Period",
    );
    let malformed = import(
        &app,
        &admin,
        &target,
        &json!({"secret": SECRET, "digits": "six"}),
    )
    .await;
    assert_eq!(
        (malformed.status, &malformed.body["code"]),
        (400, &json!(3)),
        "{}",
        malformed.body
    );

    // The user themself may not import, nor may anyone without a token.
    let own = import(
        &app,
        &app.token(&target),
        &target,
        &json!({"secret": SECRET}),
    )
    .await;
    assert_error(&own, 403, 7, "AUTH-5mWD2");
    let anonymous = app
        .call(
            Method::POST,
            &format!("/v2/users/{target}/totp/_import"),
            None,
            Some("{}".into()),
        )
        .await;
    assert_eq!(anonymous.status, 401);
    let wrong_method = app
        .call(
            Method::GET,
            &format!("/v2/users/{target}/totp/_import"),
            Some(&format!("Bearer {admin}")),
            None,
        )
        .await;
    assert_eq!(wrong_method.status, 405);
    // Nothing was stored by any of them.
    assert_error(
        &check_now(&app, &target, SECRET).await,
        404,
        5,
        "COMMAND-3Mif9s",
    );

    // With the legacy setting, an 80-bit secret imports and checks.
    let Some(legacy) = spawn_app_with(&[("OTP__IMPORT__ALLOW_LEGACY_80_BIT", "true")]).await else {
        return;
    };
    let admin = instance_admin(&legacy);
    let old = user("imp-legacy");
    let answer = import(
        &legacy,
        &admin,
        &old,
        &json!({"secret": "JBSWY3DPEHPK3PXP", "verified": true}),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(
        check_now(&legacy, &old, "JBSWY3DPEHPK3PXP").await.status,
        200
    );
    invalid(
        &import(&legacy, &admin, &old, &json!({"secret": "AEBAGBAFAYDQQ"})).await,
        "Secret",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_and_connect_import() {
    let Some(app) = spawn_app().await else { return };
    let admin = instance_admin(&app);
    let channel = tonic::transport::Channel::from_shared(app.grpc_address.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = OtpImportServiceClient::new(channel);
    let bearer = |message: ImportTotpRequest, token: &str| {
        let mut request = Request::new(message);
        request.metadata_mut().insert(
            "authorization",
            MetadataValue::try_from(format!("Bearer {token}")).unwrap(),
        );
        request
    };
    let ready = user("imp-grpc");
    let answer = client
        .import_totp(bearer(
            ImportTotpRequest {
                user_id: ready.clone(),
                secret: SECRET.into(),
                verified: true,
                ..ImportTotpRequest::default()
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.details.unwrap().sequence, 1);
    assert_eq!(check_now(&app, &ready, SECRET).await.status, 200);
    let again = client
        .import_totp(bearer(
            ImportTotpRequest {
                user_id: ready.clone(),
                secret: SECRET.into(),
                ..ImportTotpRequest::default()
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(again.code(), tonic::Code::AlreadyExists);
    let short = client
        .import_totp(bearer(
            ImportTotpRequest {
                user_id: user("imp-grpc-short"),
                secret: "JBSWY3DPEHPK3PXP".into(),
                ..ImportTotpRequest::default()
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(short.code(), tonic::Code::InvalidArgument);
    assert!(!short.message().contains("JBSW"), "{}", short.message());
    let own = client
        .import_totp(bearer(
            ImportTotpRequest {
                user_id: ready.clone(),
                secret: SECRET.into(),
                ..ImportTotpRequest::default()
            },
            &app.token(&ready),
        ))
        .await
        .unwrap_err();
    assert_eq!(own.code(), tonic::Code::PermissionDenied);

    // Connect (JSON over HTTP/1.1): NOT_READY, then the user's first code.
    let pending = user("imp-connect");
    let response = app
        .client
        .post(format!("{}/otp.v1.OtpImportService/ImportTOTP", app.grpc_address))
        .header("Content-Type", "application/json")
        .header("Authorization", format!("Bearer {admin}"))
        .body(json!({"userId": pending, "secret": SECRET, "digits": 6, "period": 30, "verified": false}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["details"]["sequence"], "1", "{body}");
    let code = code_at(SECRET, settled_now().await);
    let verified = app
        .call(
            Method::POST,
            &format!("/v2/users/{pending}/totp/verify"),
            Some(&format!("Bearer {}", app.token(&pending))),
            Some(json!({"code": code}).to_string()),
        )
        .await;
    assert_eq!(verified.status, 200, "{}", verified.body);
}

/// `otp-service import --file <path>` (plus `extra` arguments) on `app`'s database.
fn run_import(app: &TestApp, path: &std::path::Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_otp-service"))
        .arg("import")
        .arg("--file")
        .arg(path)
        .args(extra)
        .env("OTP__DATABASE__URL", app.db.url.expose_secret())
        .env("OTP__AUTH__ISSUER", &app.issuer.url)
        .env("OTP__AUTH__AUDIENCE", AUDIENCE)
        .env("OTP__CRYPTO__KEYS", TEST_KEYS)
        .env("OTEL_SDK_DISABLED", "true")
        .env_remove("OTP__LOG__FILTER")
        .output()
        .unwrap()
}

/// A 160-bit base32 secret of its own for user number `n`.
fn secret_of(n: usize) -> String {
    let mut bytes = [0_u8; 20];
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::try_from((n * 31 + i * 7 + 11) % 251).unwrap();
    }
    BASE32_NOPAD.encode(&bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_import_is_idempotent_resumable_and_reports_lines_never_secrets() {
    let Some(app) = spawn_app().await else { return };
    let prefix = user("bulk");
    let users: Vec<String> = (0..60).map(|n| format!("{prefix}-{n}")).collect();
    let mut file = temp_file("bulk.jsonl");
    let mut secrets = Vec::new();
    for (n, id) in users.iter().enumerate() {
        let secret = secret_of(n);
        let line = match n % 3 {
            0 => json!({"user_id": id, "org_id": "69629023906488334", "login_name": format!("{id}@acme.test"), "secret": secret, "algorithm": "SHA1", "digits": 6, "period": 30}).to_string(),
            1 => json!({"user_id": id, "otpauth": format!("otpauth://totp/Old%20IdP:{id}?secret={secret}&issuer=Old%20IdP")}).to_string(),
            _ => json!({"user_id": id, "secret": secret.to_lowercase()}).to_string(),
        };
        writeln!(file, "{line}").unwrap();
        secrets.push(secret);
        if n == 10 {
            writeln!(
                file,
                "{{\"user_id\": \"{prefix}-bad\", \"secret\": \"{}\"",
                secret_of(99)
            )
            .unwrap();
            writeln!(file).unwrap();
            writeln!(file, "# a comment").unwrap();
            writeln!(
                file,
                "{}",
                json!({"user_id": format!("{prefix}-short"), "secret": "JBSWY3DPEHPK3PXP"})
            )
            .unwrap();
        }
    }
    file.flush().unwrap();
    // Users 0..=10 are lines 1..=11; then the bad line 12, blank 13, comment
    // 14, the short secret 15; user n > 10 is line n + 5.
    let out = |output: &Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    };
    let first = run_import(&app, file.path(), &[]);
    let text = out(&first);
    assert_eq!(first.status.code(), Some(1), "{text}");
    assert!(
        text.contains("done: 64 line(s) read: imported 60, skipped 0, refused 2"),
        "{text}"
    );
    assert!(
        text.contains("line 12: refused: not a JSON object"),
        "{text}"
    );
    assert!(text.contains("line 15: refused: user "), "{text}");
    assert!(text.contains("80 bits"), "{text}");
    assert!(text.contains("2 line(s) refused"), "{text}");
    for secret in secrets.iter().chain([&secret_of(99)]) {
        assert!(
            !text.contains(secret.as_str())
                && !text.to_lowercase().contains(&secret.to_lowercase()),
            "secret in the output: {text}"
        );
    }

    // Each imported factor is READY: a code checks at login.
    for n in [0, 1, 2, 59] {
        let checked = check_now(&app, &users[n], &secrets[n]).await;
        assert_eq!(checked.status, 200, "user {n}: {}", checked.body);
    }

    // Running it again skips every imported user and refuses the same lines.
    let second = run_import(&app, file.path(), &[]);
    let text = out(&second);
    assert_eq!(second.status.code(), Some(1), "{text}");
    assert!(text.contains("imported 0, skipped 60, refused 2"), "{text}");

    // From line 16 on, after one user's factor was replaced by another
    // secret: that line is refused with its reason, the rest skipped.
    let changed = &users[20];
    let token = app.token(changed);
    let removed = app
        .call(
            Method::DELETE,
            &format!("/v2/users/{changed}/totp"),
            Some(&format!("Bearer {token}")),
            None,
        )
        .await;
    assert_eq!(removed.status, 200, "{}", removed.body);
    let other = import(
        &app,
        &instance_admin(&app),
        changed,
        &json!({"secret": SECRET, "verified": true}),
    )
    .await;
    assert_eq!(other.status, 200, "{}", other.body);
    let resumed = run_import(
        &app,
        file.path(),
        &["--from-line", "16", "--concurrency", "2"],
    );
    let text = out(&resumed);
    assert_eq!(resumed.status.code(), Some(1), "{text}");
    assert!(text.contains("imported 0, skipped 48, refused 1"), "{text}");
    assert!(
        text.contains(&format!(
            "line 25: refused: user {changed}: another factor is already set up"
        )),
        "{text}"
    );

    // A clean file exits 0.
    let mut clean = temp_file("clean.jsonl");
    writeln!(
        clean,
        "{}",
        json!({"user_id": format!("{prefix}-clean"), "secret": SECRET})
    )
    .unwrap();
    clean.flush().unwrap();
    let ok = run_import(&app, clean.path(), &[]);
    assert!(ok.status.success(), "{}", out(&ok));
    assert!(out(&ok).contains("imported 1, skipped 0, refused 0"));

    // No imported secret is in the database in clear.
    let dump_text = app.dump();
    assert!(
        dump_text.contains("otp.imported"),
        "the dump must hold the events"
    );
    for secret in &secrets {
        let raw = BASE32_NOPAD.decode(secret.as_bytes()).unwrap();
        assert!(!dump_text.contains(secret.as_str()));
        assert!(!dump_text.contains(&secret.to_lowercase()));
        assert!(!dump_text.contains(&HEXLOWER.encode(&raw)));
    }
}

/// A file under the system's temporary directory whose name ends in
/// `name`, removed when dropped.
fn temp_file(name: &str) -> tempfile::NamedTempFile {
    tempfile::Builder::new()
        .prefix("otp-import-")
        .suffix(&format!("-{name}"))
        .tempfile()
        .unwrap()
}

/// pyotp (`OTP_PYTHON`, as `.ci/run` sets it) runs `script`: its stdout, or
/// `None` after a printed line outside CI.
fn pyotp(script: &str) -> Option<String> {
    let python = std::env::var("OTP_PYTHON").unwrap_or_else(|_| "python3".into());
    match Command::new(&python).args(["-c", script]).output() {
        Ok(output) if output.status.success() => {
            Some(String::from_utf8(output.stdout).unwrap().trim().to_owned())
        }
        outcome => {
            assert!(
                std::env::var_os("CI").is_none(),
                "pyotp is required in CI (OTP_PYTHON): {outcome:?}"
            );
            eprintln!(
                "SKIPPED: pyotp not available (set OTP_PYTHON); pyotp import interop did not run"
            );
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_made_by_pyotp_import_and_verify_with_oathtool() {
    let Some(app) = spawn_app().await else { return };
    let script = "import pyotp\n\
        s = pyotp.random_base32()\n\
        print(s)\n\
        print(pyotp.TOTP(pyotp.random_base32()).provisioning_uri(name='alice@old.example', issuer_name='Old IdP'))";
    let Some(made) = pyotp(script) else { return };
    let mut lines = made.lines();
    let (secret, url) = (
        lines.next().unwrap().to_owned(),
        lines.next().unwrap().to_owned(),
    );
    let url_secret = url
        .split(['?', '&'])
        .find_map(|pair| pair.strip_prefix("secret="))
        .unwrap()
        .to_owned();
    assert!(url.starts_with("otpauth://totp/"), "{url}");

    // The bare secret over REST, the URL through the bulk import (a bare
    // otpauth line: the label's account is the user id).
    let by_rest = user("pyotp-rest");
    let answer = import(
        &app,
        &instance_admin(&app),
        &by_rest,
        &json!({"secret": secret, "verified": true}),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let mut file = temp_file("pyotp.jsonl");
    writeln!(file, "{url}").unwrap();
    file.flush().unwrap();
    let output = run_import(&app, file.path(), &[]);
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(text.contains("imported 1"), "{text}");
    assert!(!text.contains(&url_secret), "{text}");

    settled_now().await;
    let service = app.service_token("login-service");
    for (user_id, secret) in [
        (by_rest.as_str(), &secret),
        ("alice@old.example", &url_secret),
    ] {
        let Some(code) = oathtool_with(&["--totp", "-b", secret]) else {
            return;
        };
        let checked = app.check(&service, user_id, &code).await;
        assert_eq!(checked.status, 200, "{user_id}: {}", checked.body);
    }
}

/// Keycloak's realm export shape (`users[].credentials[]` of type `otp`,
/// `secretData` `{"value": <the secret as text>}`, whose UTF-8 bytes are the
/// key unless `credentialData.secretEncoding` is `BASE32`, as Keycloak's
/// `OTPCredentialModel.getDecodedSecret` reads it, and `credentialData` with `subType`, `digits`, `period`,
/// `algorithm` `HmacSHA1`), through `deploy/tools/keycloak-otp-export.py`:
/// the imported factor accepts oathtool's code for the key's bytes (hex).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keycloak_realm_export_imports_and_verifies_with_oathtool() {
    let Some(app) = spawn_app().await else { return };
    let prefix = user("kc");
    // Keycloak generates 20 characters of [A-Za-z0-9]; a base32 one is
    // marked `secretEncoding: BASE32` (newer versions, imported secrets).
    let (text_secret, base32_secret) = ("Gx7vQ2mK9pL4sT8wZ1cR", SECRET);
    let realm = json!({
        "realm": "old",
        "users": [
            {"id": format!("{prefix}-alice"), "username": "alice", "credentials": [
                {"id": "p1", "type": "password", "secretData": "{\"value\":\"hash\",\"salt\":\"salt\"}",
                 "credentialData": "{\"hashIterations\":27500,\"algorithm\":\"pbkdf2-sha256\"}"},
                {"id": "o1", "type": "otp", "userLabel": "phone", "createdDate": 1_700_000_000_000_u64,
                 "secretData": json!({"value": text_secret}).to_string(),
                 "credentialData": "{\"subType\":\"totp\",\"digits\":6,\"counter\":0,\"period\":30,\"algorithm\":\"HmacSHA1\"}"}]},
            {"id": format!("{prefix}-bob"), "username": "bob", "credentials": [
                {"id": "o2", "type": "otp", "secretData": json!({"value": base32_secret}).to_string(),
                 "credentialData": "{\"subType\":\"totp\",\"digits\":8,\"counter\":0,\"period\":30,\"algorithm\":\"HmacSHA256\",\"secretEncoding\":\"BASE32\"}"}]},
            {"id": format!("{prefix}-carol"), "username": "carol", "credentials": []},
        ],
    });
    let mut export = temp_file("realm-export.json");
    write!(export, "{realm}").unwrap();
    export.flush().unwrap();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy/tools/keycloak-otp-export.py");
    let python = std::env::var("OTP_PYTHON").unwrap_or_else(|_| "python3".into());
    let converted = Command::new(&python)
        .arg(&script)
        .arg(export.path())
        .output()
        .unwrap();
    assert!(
        converted.status.success(),
        "{}",
        String::from_utf8_lossy(&converted.stderr)
    );
    let jsonl = temp_file("keycloak.jsonl");
    std::fs::write(jsonl.path(), &converted.stdout).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&converted.stdout).lines().count(),
        2
    );

    let output = run_import(&app, jsonl.path(), &[]);
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(text.contains("imported 2, skipped 0, refused 0"), "{text}");
    assert!(!text.contains(text_secret), "{text}");

    settled_now().await;
    let service = app.service_token("login-service");
    let alice_key = HEXLOWER.encode(text_secret.as_bytes());
    let Some(alice) = oathtool_with(&["--totp", &alice_key]) else {
        return;
    };
    let checked = app
        .check(&service, &format!("{prefix}-alice"), &alice)
        .await;
    assert_eq!(checked.status, 200, "{}", checked.body);
    let Some(bob) = oathtool_with(&["--totp=sha256", "--digits=8", "-b", base32_secret]) else {
        return;
    };
    let checked = app.check(&service, &format!("{prefix}-bob"), &bob).await;
    assert_eq!(checked.status, 200, "{}", checked.body);
}
