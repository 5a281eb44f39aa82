//! Codes from an independent implementation verify: `oathtool --totp -b`.

use std::process::Command;

use crate::helpers::{settled_now, spawn_app, user};

/// `oathtool` is installed by `.ci/run`; elsewhere the test says it skipped.
fn oathtool(secret: &str) -> Option<String> {
    oathtool_with(&["--totp", "-b", secret])
}

/// `oathtool` with `args`: its code, or `None` (skipped) outside CI.
pub fn oathtool_with(args: &[&str]) -> Option<String> {
    match Command::new("oathtool").args(args).output() {
        Ok(output) if output.status.success() => {
            Some(String::from_utf8(output.stdout).unwrap().trim().to_owned())
        }
        Ok(output) => panic!(
            "oathtool failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ),
        Err(error) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "oathtool is required in CI: {error}"
            );
            eprintln!(
                "SKIPPED: oathtool not installed (apt-get install oathtool); interop test did not run"
            );
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_from_oathtool_verifies() {
    let Some(app) = spawn_app().await else { return };
    let token = app.token(&user("oathtool"));
    let secret = app.add(&token).await.body["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    settled_now().await;
    let Some(code) = oathtool(&secret) else {
        return;
    };
    assert_eq!(code.len(), 6);
    let answer = app.verify(&token, &code).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
}

/// `buf` (npm `@bufbuild/buf`, installed by `.ci/run` under `.ci/node`), or
/// `None` after one printed line outside CI.
fn buf() -> Option<std::path::PathBuf> {
    let local = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../.ci/node/node_modules/.bin/buf");
    let candidate = if local.exists() { local } else { "buf".into() };
    match Command::new(&candidate).arg("--version").output() {
        Ok(output) if output.status.success() => Some(candidate),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "buf is required in CI (npm @bufbuild/buf)"
            );
            eprintln!(
                "SKIPPED: buf not installed (npm install @bufbuild/buf); independent gRPC client test did not run"
            );
            None
        }
    }
}

fn buf_curl(
    buf: &std::path::Path,
    protocol: &str,
    url: &str,
    token: &str,
    body: &str,
) -> serde_json::Value {
    let mut command = Command::new(buf);
    command.args([
        "curl",
        "--protocol",
        protocol,
        "-H",
        &format!("authorization: Bearer {token}"),
        "-d",
        body,
    ]);
    if protocol == "grpc" {
        command.arg("--http2-prior-knowledge");
    }
    if protocol == "connect" {
        // Server reflection is a streaming call, which the Connect side of
        // the gRPC port does not serve: the schema comes from the protos.
        let protos =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../adapters-grpc/proto");
        command.arg("--schema").arg(protos);
    }
    let output = command.arg(url).output().unwrap();
    assert!(
        output.status.success(),
        "buf curl {protocol} {url}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buf_curl_adds_over_grpc_and_verifies_over_grpc_web_through_reflection() {
    let Some(app) = spawn_app().await else { return };
    let Some(buf) = buf() else { return };
    let token = app.token(&user("buf-curl"));
    let service = format!("{}/zitadel.auth.v1.AuthService", app.grpc_address);
    let (buf_add, add_url) = (buf.clone(), format!("{service}/AddMyAuthFactorOTP"));
    let add_token = token.clone();
    let added =
        tokio::task::spawn_blocking(move || buf_curl(&buf_add, "grpc", &add_url, &add_token, "{}"))
            .await
            .unwrap();
    let secret = added["secret"].as_str().unwrap().to_owned();
    assert!(
        added["url"]
            .as_str()
            .unwrap()
            .starts_with("otpauth://totp/ZITADEL:"),
        "{added}"
    );
    assert_eq!(added["details"]["sequence"], "1");

    let code = crate::helpers::code_at(&secret, settled_now().await);
    let verify_url = format!("{service}/VerifyMyAuthFactorOTP");
    let body = format!(r#"{{"code":"{code}"}}"#);
    let verified =
        tokio::task::spawn_blocking(move || buf_curl(&buf, "grpcweb", &verify_url, &token, &body))
            .await
            .unwrap();
    assert_eq!(verified["details"]["sequence"], "2", "{verified}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buf_curl_registers_over_connect_and_an_admin_lists_over_grpc() {
    let Some(app) = spawn_app().await else { return };
    let Some(buf) = buf() else { return };
    let user_id = user("buf-connect");
    let token = app.token(&user_id);
    let mut admin = crate::helpers::claims(&app.issuer.url, &user("buf-admin"));
    admin["urn:zitadel:iam:org:project:roles"] =
        serde_json::json!({"otp.admin": {"69629023906488334": "acme.zitadel.cloud"}});
    let admin = crate::helpers::sign(&admin);
    let register = format!(
        "{}/zitadel.user.v2.UserService/RegisterTOTP",
        app.grpc_address
    );
    let body = format!(r#"{{"userId":"{user_id}"}}"#);
    let (buf_connect, connect_body) = (buf.clone(), body.clone());
    let registered = tokio::task::spawn_blocking(move || {
        buf_curl(&buf_connect, "connect", &register, &token, &connect_body)
    })
    .await
    .unwrap();
    assert_eq!(registered["details"]["sequence"], "1", "{registered}");
    assert!(
        registered["uri"]
            .as_str()
            .unwrap()
            .starts_with("otpauth://totp/")
    );
    let list = format!(
        "{}/zitadel.management.v1.ManagementService/ListHumanAuthFactors",
        app.grpc_address
    );
    let listed = tokio::task::spawn_blocking(move || buf_curl(&buf, "grpc", &list, &admin, &body))
        .await
        .unwrap();
    assert_eq!(
        listed,
        serde_json::json!({}),
        "a pending factor is not listed"
    );
}
