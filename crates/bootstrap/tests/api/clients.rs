//! ZITADEL's own clients against the real service: npm `@zitadel/client` and
//! `@zitadel/proto` (installed by `.ci/run` under `tests/clients`) run
//! `tests/clients/scenario.mjs`, the v2 user service over Connect (JSON and
//! binary) and gRPC-web and the v1 management service over gRPC; the same
//! scenario over REST and over native gRPC (tonic) here gives the same
//! outcome: user registers, verifies, admin lists, admin removes, user
//! registers again, a user without the role is refused.

use std::path::PathBuf;
use std::process::Command;

use adapters_grpc::proto::zitadel::management::v1::management_service_client::ManagementServiceClient;
use adapters_grpc::proto::zitadel::management::v1::{
    ListHumanAuthFactorsRequest, RemoveHumanAuthFactorOtpRequest,
};
use adapters_grpc::proto::zitadel::user::v1::AuthFactorState;
use adapters_grpc::proto::zitadel::user::v2::user_service_client::UserServiceClient;
use adapters_grpc::proto::zitadel::user::v2::{
    AuthenticationMethodType, ListAuthenticationMethodTypesRequest, RegisterTotpRequest,
    VerifyTotpRegistrationRequest,
};
use serde_json::{Value, json};
use tonic::Request;
use tonic::metadata::MetadataValue;

use crate::helpers::{TestApp, claims, code_at, settled_now, sign, spawn_app, user};

const ROLES_CLAIM: &str = "urn:zitadel:iam:org:project:roles";

/// An administrator of the test users' organisation.
fn admin_token(app: &TestApp) -> String {
    let mut claims = claims(&app.issuer.url, &user("help-desk"));
    claims[ROLES_CLAIM] = json!({"otp.admin": {"69629023906488334": "acme.zitadel.cloud"}});
    sign(&claims)
}

/// What every transport must answer for the scenario.
fn expected() -> Value {
    json!({
        "registered": {"sequence": 1, "resourceOwner": "69629023906488334", "uri": true},
        "verified": 2,
        "adminMethods": ["TOTP"],
        "adminFactors": ["READY:otp"],
        "adminRemoved": 3,
        "methodsAfterRemoval": 0,
        "registeredAgain": 4,
        "denied": {"code": 7, "id": "AUTH-5mWD2"},
    })
}

/// `tests/clients` with its packages installed, or `None` (one printed line)
/// outside CI.
fn clients_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/clients");
    let installed = dir.join("node_modules/@zitadel/client").exists()
        && Command::new("node").arg("--version").output().is_ok();
    if installed {
        return Some(dir);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "node and tests/clients (npm install --prefix tests/clients) are required in CI"
    );
    eprintln!("SKIPPED: tests/clients not installed (npm install --prefix tests/clients)");
    None
}

fn node_scenario(dir: &PathBuf, app: &TestApp, transport: &str, admin: &str) -> Value {
    let user_id = user(&format!("zc-{transport}"));
    let output = Command::new("node")
        .arg("scenario.mjs")
        .current_dir(dir)
        .env("GRPC_URL", &app.grpc_address)
        .env("TRANSPORT", transport)
        .env("USER_ID", &user_id)
        .env("USER_TOKEN", app.token(&user_id))
        .env("ADMIN_TOKEN", admin)
        .env("OTHER_TOKEN", app.token(&user("no-role")))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{transport}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zitadel_clients_over_connect_and_grpc_web_agree_with_rest_and_grpc() {
    let Some(app) = spawn_app().await else { return };
    let admin = admin_token(&app);
    let mut outcomes = vec![
        ("rest", rest_scenario(&app, &admin).await),
        ("grpc", grpc_scenario(&app, &admin).await),
    ];
    if let Some(dir) = clients_dir() {
        for transport in ["connect-json", "connect-proto", "grpc-web"] {
            let (dir, app_ref, admin) = (dir.clone(), &app, admin.clone());
            // The node client blocks; the service runs on this runtime.
            let outcome =
                tokio::task::block_in_place(|| node_scenario(&dir, app_ref, transport, &admin));
            outcomes.push((transport, outcome));
        }
    }
    for (transport, outcome) in outcomes {
        assert_eq!(outcome, expected(), "{transport}");
    }
}

async fn rest_scenario(app: &TestApp, admin: &str) -> Value {
    use reqwest::Method;
    let user_id = user("zc-rest");
    let own = format!("Bearer {}", app.token(&user_id));
    let admin = format!("Bearer {admin}");
    let other = format!("Bearer {}", app.token(&user("no-role")));
    let totp = format!("/v2/users/{user_id}/totp");
    let methods = format!("/v2/users/{user_id}/authentication_methods");
    let registered = app
        .call(Method::POST, &totp, Some(&own), Some("{}".into()))
        .await
        .body;
    let secret = registered["secret"].as_str().unwrap().to_owned();
    let code = code_at(&secret, settled_now().await);
    let verified = app
        .call(
            Method::POST,
            &format!("{totp}/verify"),
            Some(&own),
            Some(json!({ "code": code }).to_string()),
        )
        .await
        .body;
    let listed = app
        .call(Method::GET, &methods, Some(&admin), None)
        .await
        .body;
    let factors = app
        .call(
            Method::POST,
            &format!("/management/v1/users/{user_id}/auth_factors/_search"),
            Some(&admin),
            Some("{}".into()),
        )
        .await
        .body;
    let removed = app
        .call(
            Method::DELETE,
            &format!("/management/v1/users/{user_id}/auth_factors/otp"),
            Some(&admin),
            None,
        )
        .await
        .body;
    let after = app.call(Method::GET, &methods, Some(&own), None).await.body;
    let again = app
        .call(Method::POST, &totp, Some(&own), Some("{}".into()))
        .await
        .body;
    let denied = app
        .call(Method::POST, &totp, Some(&other), Some("{}".into()))
        .await
        .body;
    let number = |value: &Value| value.as_str().unwrap().parse::<u64>().unwrap();
    json!({
        "registered": {
            "sequence": number(&registered["details"]["sequence"]),
            "resourceOwner": registered["details"]["resourceOwner"],
            "uri": registered["uri"].as_str().unwrap().starts_with("otpauth://totp/")
                && registered["uri"].as_str().unwrap().contains(&secret),
        },
        "verified": number(&verified["details"]["sequence"]),
        "adminMethods": listed["authMethodTypes"].as_array().unwrap().iter()
            .map(|t| t.as_str().unwrap().trim_start_matches("AUTHENTICATION_METHOD_TYPE_"))
            .collect::<Vec<_>>(),
        "adminFactors": factors["result"].as_array().unwrap().iter()
            .map(|f| format!("{}:otp", f["state"].as_str().unwrap().trim_start_matches("AUTH_FACTOR_STATE_")))
            .collect::<Vec<_>>(),
        "adminRemoved": number(&removed["details"]["sequence"]),
        "methodsAfterRemoval": after.get("authMethodTypes").map_or(0, |t| t.as_array().unwrap().len()),
        "registeredAgain": number(&again["details"]["sequence"]),
        "denied": {"code": denied["code"], "id": denied["details"][0]["id"]},
    })
}

fn as_bearer<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        MetadataValue::try_from(format!("Bearer {token}")).unwrap(),
    );
    request
}

async fn grpc_scenario(app: &TestApp, admin: &str) -> Value {
    let user_id = user("zc-grpc");
    let own = app.token(&user_id);
    let channel = tonic::transport::Channel::from_shared(app.grpc_address.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut users = UserServiceClient::new(channel.clone());
    let mut management = ManagementServiceClient::new(channel);
    let register = || RegisterTotpRequest {
        user_id: user_id.clone(),
    };
    let list = || ListAuthenticationMethodTypesRequest {
        user_id: user_id.clone(),
        domain_query: None,
    };
    let registered = users
        .register_totp(as_bearer(register(), &own))
        .await
        .unwrap()
        .into_inner();
    let code = code_at(&registered.secret, settled_now().await);
    let verified = users
        .verify_totp_registration(as_bearer(
            VerifyTotpRegistrationRequest {
                user_id: user_id.clone(),
                code,
            },
            &own,
        ))
        .await
        .unwrap()
        .into_inner();
    let listed = users
        .list_authentication_method_types(as_bearer(list(), admin))
        .await
        .unwrap()
        .into_inner();
    let factors = management
        .list_human_auth_factors(as_bearer(
            ListHumanAuthFactorsRequest {
                user_id: user_id.clone(),
            },
            admin,
        ))
        .await
        .unwrap()
        .into_inner();
    let removed = management
        .remove_human_auth_factor_otp(as_bearer(
            RemoveHumanAuthFactorOtpRequest {
                user_id: user_id.clone(),
            },
            admin,
        ))
        .await
        .unwrap()
        .into_inner();
    let after = users
        .list_authentication_method_types(as_bearer(list(), &own))
        .await
        .unwrap()
        .into_inner();
    let again = users
        .register_totp(as_bearer(register(), &own))
        .await
        .unwrap()
        .into_inner();
    let denied = users
        .register_totp(as_bearer(register(), &app.token(&user("no-role"))))
        .await
        .unwrap_err();
    let details = registered.details.unwrap();
    json!({
        "registered": {
            "sequence": details.sequence,
            "resourceOwner": details.resource_owner,
            "uri": registered.uri.starts_with("otpauth://totp/") && registered.uri.contains(&registered.secret),
        },
        "verified": verified.details.unwrap().sequence,
        "adminMethods": listed.auth_method_types.iter()
            .map(|t| AuthenticationMethodType::try_from(*t).unwrap().as_str_name()
                .trim_start_matches("AUTHENTICATION_METHOD_TYPE_").to_owned())
            .collect::<Vec<_>>(),
        "adminFactors": factors.result.iter()
            .map(|f| format!("{}:otp", AuthFactorState::try_from(f.state).unwrap().as_str_name()
                .trim_start_matches("AUTH_FACTOR_STATE_")))
            .collect::<Vec<_>>(),
        "adminRemoved": removed.details.unwrap().sequence,
        "methodsAfterRemoval": after.auth_method_types.len(),
        "registeredAgain": again.details.unwrap().sequence,
        "denied": {"code": denied.code() as i32, "id": adapters_grpc::error_detail(&denied).unwrap().id},
    })
}
