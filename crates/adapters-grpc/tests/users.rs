//! `zitadel.user.v2.UserService` and `zitadel.management.v1.ManagementService`
//! on the gRPC port, in-process on the memory store with fixed test tokens:
//! the user's lifecycle over gRPC with the generated clients, the
//! authorization matrix for each call, the same factor as the v1 "me"
//! calls, gRPC-web, health and reflection.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail the test on any unexpected answer"
)]

use std::net::SocketAddr;
use std::sync::Arc;

use adapters_crypto::{AesGcmCipher, OsSecrets};
use adapters_grpc::proto::zitadel::auth::v1::AddMyAuthFactorOtpRequest;
use adapters_grpc::proto::zitadel::auth::v1::auth_service_client::AuthServiceClient;
use adapters_grpc::proto::zitadel::management::v1::management_service_client::ManagementServiceClient;
use adapters_grpc::proto::zitadel::management::v1::{
    ListHumanAuthFactorsRequest, RemoveHumanAuthFactorOtpRequest,
};
use adapters_grpc::proto::zitadel::user::v1::{AuthFactorState, auth_factor};
use adapters_grpc::proto::zitadel::user::v2::user_service_client::UserServiceClient;
use adapters_grpc::proto::zitadel::user::v2::{
    AuthenticationMethodType, ListAuthenticationMethodTypesRequest, RegisterTotpRequest,
    RegisterTotpResponse, RemoveTotpRequest, VerifyTotpRegistrationRequest,
};
use adapters_grpc::{GrpcError, GrpcSettings, error_detail, serve};
use adapters_memory::MemoryFactorStore;
use application::testing::{FixedClock, StaticTokens, principal};
use application::{Authenticator, CallerAllowlist, OtpFactors, Principal, TotpSettings};
use domain::{OrgId, TotpKey, TotpParams, TotpSecret};
use prost::Message;
use secrecy::{ExposeSecret, SecretString};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

struct TestServer {
    addr: SocketAddr,
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<Result<(), GrpcError>>,
}

/// The service's time in these tests: its clock stands still here (10 s
/// into a 30 s step), and the codes the tests type are computed for it.
const T0: chrono::DateTime<chrono::Utc> = match chrono::DateTime::from_timestamp(1_800_000_010, 0) {
    Some(at) => at,
    None => panic!("a valid time"),
};

fn in_org(user: &str, org: &str, roles: &[&str]) -> Principal {
    let mut p = principal(user);
    p.org_id = Some(OrgId::parse(org).unwrap());
    p.roles = roles.iter().map(|r| (*r).to_owned()).collect();
    p
}

impl TestServer {
    async fn start() -> Self {
        let cipher = AesGcmCipher::from_config(&SecretString::from(
            "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
        ))
        .unwrap();
        let factors = OtpFactors::new(
            Arc::new(MemoryFactorStore::new()),
            Arc::new(cipher),
            Arc::new(OsSecrets),
            FixedClock::at(T0),
            TotpSettings {
                issuer: "ZITADEL".into(),
                params: TotpParams::default(),
                check_clients: CallerAllowlist::new(["login-app"]),
                max_changes_per_hour: 0,
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
            .with("bob-token", in_org("bob", "org-1", &[]))
            .with("svc-token", login_service);
        for n in 0..8 {
            let id = format!("t{n}");
            tokens = tokens.with(&format!("{id}-token"), in_org(&id, "org-1", &[]));
        }
        let auth = Authenticator::new(Arc::new(tokens));
        let settings = GrpcSettings {
            cors_allowed_origins: vec!["https://console.example.com".into()],
            ..GrpcSettings::default()
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (shutdown, signal) = oneshot::channel();
        let task = tokio::spawn(serve(
            listener,
            factors,
            auth,
            &settings,
            std::future::pending::<()>(),
            async {
                let _ = signal.await;
            },
        ));
        Self {
            addr,
            shutdown,
            task,
        }
    }

    async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    async fn stop(self) {
        self.shutdown.send(()).unwrap();
        self.task.await.unwrap().unwrap();
    }
}

fn with_token<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        MetadataValue::try_from(format!("Bearer {token}")).unwrap(),
    );
    request
}

fn code_of(secret: &str) -> String {
    let key = TotpKey::new(
        TotpSecret::from_base32(secret).unwrap(),
        TotpParams::default(),
    );
    let now = u64::try_from(T0.timestamp()).unwrap();
    key.code_at(now).expose_secret().to_owned()
}

#[track_caller]
fn assert_denied(status: &Status) {
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert_eq!(
        status.message(),
        "No matching permissions found (AUTH-5mWD2)"
    );
    assert_eq!(error_detail(status).unwrap().id, "AUTH-5mWD2");
}

struct Clients {
    users: UserServiceClient<Channel>,
    management: ManagementServiceClient<Channel>,
    me: AuthServiceClient<Channel>,
}

impl Clients {
    async fn of(server: &TestServer) -> Self {
        let channel = server.channel().await;
        Self {
            users: UserServiceClient::new(channel.clone()),
            management: ManagementServiceClient::new(channel.clone()),
            me: AuthServiceClient::new(channel),
        }
    }

    async fn register(&mut self, user: &str, token: &str) -> Result<RegisterTotpResponse, Status> {
        let request = RegisterTotpRequest {
            user_id: user.into(),
        };
        Ok(self
            .users
            .register_totp(with_token(request, token))
            .await?
            .into_inner())
    }
}

#[tokio::test]
async fn the_user_service_lifecycle_over_grpc_shares_the_factor_with_v1() {
    let server = TestServer::start().await;
    let mut c = Clients::of(&server).await;
    let registered = c.register("t0", "t0-token").await.unwrap();
    let details = registered.details.clone().unwrap();
    assert_eq!(
        (details.sequence, details.resource_owner.as_str()),
        (1, "org-1")
    );
    assert!(details.creation_date.is_none() && details.change_date.is_some());
    assert!(
        registered
            .uri
            .starts_with("otpauth://totp/ZITADEL:t0@example.com?")
    );
    assert!(!format!("{registered:?}").contains(&registered.secret));

    // The v1 "me" call sees the same (pending) factor: Add replaces it.
    let again =
        c.me.add_my_auth_factor_otp(with_token(AddMyAuthFactorOtpRequest {}, "t0-token"))
            .await
            .unwrap()
            .into_inner();
    assert_eq!(again.details.unwrap().sequence, 2);
    let verify = VerifyTotpRegistrationRequest {
        user_id: "t0".into(),
        code: code_of(&again.secret),
    };
    assert!(!format!("{verify:?}").contains(&verify.code));
    let verified = c
        .users
        .verify_totp_registration(with_token(verify, "t0-token"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(verified.details.unwrap().sequence, 3);

    let listed = c
        .users
        .list_authentication_method_types(with_token(
            ListAuthenticationMethodTypesRequest {
                user_id: "t0".into(),
                domain_query: None,
            },
            "t0-token",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        listed.auth_method_types,
        [AuthenticationMethodType::Totp as i32]
    );
    assert_eq!(listed.details.unwrap().total_result, 1);

    let factors = c
        .management
        .list_human_auth_factors(with_token(
            ListHumanAuthFactorsRequest {
                user_id: "t0".into(),
            },
            "admin-token",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(factors.result.len(), 1);
    assert_eq!(factors.result[0].state, AuthFactorState::Ready as i32);
    assert!(matches!(
        factors.result[0].r#type,
        Some(auth_factor::Type::Otp(_))
    ));

    let removed = c
        .management
        .remove_human_auth_factor_otp(with_token(
            RemoveHumanAuthFactorOtpRequest {
                user_id: "t0".into(),
            },
            "admin-token",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(removed.details.unwrap().sequence, 4);

    // Gone for every call; the same NOT_FOUND as the v1 Remove.
    let status = c
        .users
        .remove_totp(with_token(
            RemoveTotpRequest {
                user_id: "t0".into(),
            },
            "t0-token",
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(error_detail(&status).unwrap().id, "COMMAND-Hd9sd");
    let registered = c.register("t0", "t0-token").await.unwrap();
    assert_eq!(registered.details.unwrap().sequence, 5);
    server.stop().await;
}

/// Each call by each caller: OK for the allowed, PERMISSION_DENIED else.
#[tokio::test]
async fn the_authorization_matrix_over_grpc() {
    let server = TestServer::start().await;
    let mut c = Clients::of(&server).await;
    // (caller token, may use v2, may use management)
    let callers = [
        (None, true, false),
        (Some("admin-token"), true, true),
        (Some("other-admin-token"), false, false),
        (Some("root-token"), true, true),
        (Some("bob-token"), false, false),
        (Some("svc-token"), false, false),
    ];
    for (n, (token, v2, management)) in callers.into_iter().enumerate() {
        let target = format!("t{}", n + 1);
        let own = format!("{target}-token");
        let token = token.unwrap_or(&own);
        let mut secret = c.register(&target, &own).await.unwrap().secret;

        match c.register(&target, token).await {
            Ok(answer) if v2 => secret = answer.secret,
            Err(status) if !v2 => assert_denied(&status),
            other => panic!("{token} RegisterTOTP: {other:?}"),
        }
        let verified = c
            .users
            .verify_totp_registration(with_token(
                VerifyTotpRegistrationRequest {
                    user_id: target.clone(),
                    code: code_of(&secret),
                },
                token,
            ))
            .await;
        match verified {
            Ok(_) if v2 => {}
            Err(status) if !v2 => {
                assert_denied(&status);
                // The user verifies; the refused call counted nothing.
                c.users
                    .verify_totp_registration(with_token(
                        VerifyTotpRegistrationRequest {
                            user_id: target.clone(),
                            code: code_of(&secret),
                        },
                        &own,
                    ))
                    .await
                    .unwrap();
            }
            other => panic!("{token} VerifyTOTPRegistration: {other:?}"),
        }
        let listed = c
            .users
            .list_authentication_method_types(with_token(
                ListAuthenticationMethodTypesRequest {
                    user_id: target.clone(),
                    domain_query: None,
                },
                token,
            ))
            .await;
        match listed {
            Ok(list) if v2 => assert_eq!(list.into_inner().auth_method_types.len(), 1),
            Err(status) if !v2 => assert_denied(&status),
            other => panic!("{token} ListAuthenticationMethodTypes: {other:?}"),
        }
        let listed = c
            .management
            .list_human_auth_factors(with_token(
                ListHumanAuthFactorsRequest {
                    user_id: target.clone(),
                },
                token,
            ))
            .await;
        match listed {
            Ok(list) if management => assert_eq!(list.into_inner().result.len(), 1),
            Err(status) if !management => assert_denied(&status),
            other => panic!("{token} ListHumanAuthFactors: {other:?}"),
        }
        let removed = c
            .management
            .remove_human_auth_factor_otp(with_token(
                RemoveHumanAuthFactorOtpRequest {
                    user_id: target.clone(),
                },
                token,
            ))
            .await;
        match removed {
            Ok(_) if management => {
                c.register(&target, &own).await.unwrap();
            }
            Err(status) if !management => assert_denied(&status),
            other => panic!("{token} RemoveHumanAuthFactorOTP: {other:?}"),
        }
        let removed = c
            .users
            .remove_totp(with_token(
                RemoveTotpRequest {
                    user_id: target.clone(),
                },
                token,
            ))
            .await;
        match removed {
            Ok(_) if v2 => {}
            Err(status) if !v2 => assert_denied(&status),
            other => panic!("{token} RemoveTOTP: {other:?}"),
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn grpc_web_reaches_the_user_service_and_reflection_lists_it() {
    let server = TestServer::start().await;
    let mut body = vec![0];
    let message = RegisterTotpRequest {
        user_id: "t7".into(),
    }
    .encode_to_vec();
    body.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
    body.extend_from_slice(&message);
    let response = reqwest::Client::builder()
        .http1_only()
        .build()
        .unwrap()
        .post(format!(
            "http://{}/zitadel.user.v2.UserService/RegisterTOTP",
            server.addr
        ))
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .header("authorization", "Bearer t7-token")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let bytes = response.bytes().await.unwrap();
    assert_eq!(bytes[0], 0, "a data frame first");
    let length = u32::from_be_bytes(bytes[1..5].try_into().unwrap()) as usize;
    let answer = RegisterTotpResponse::decode(&bytes[5..5 + length]).unwrap();
    assert_eq!(answer.details.unwrap().sequence, 1);
    let trailers = std::str::from_utf8(&bytes[10 + length..]).unwrap();
    assert!(trailers.contains("grpc-status:0"), "{trailers}");

    let set = prost_types::FileDescriptorSet::decode(adapters_grpc::FILE_DESCRIPTOR_SET).unwrap();
    let services: Vec<String> = set
        .file
        .iter()
        .flat_map(|f| {
            f.service
                .iter()
                .map(move |s| format!("{}.{}", f.package(), s.name()))
        })
        .collect();
    for name in [
        "zitadel.user.v2.UserService",
        "zitadel.management.v1.ManagementService",
        "otp.v1.OtpImportService",
    ] {
        assert!(services.iter().any(|s| s == name), "{name} in {services:?}");
    }
    let mut health = tonic_health::pb::health_client::HealthClient::new(server.channel().await);
    for name in [
        "zitadel.user.v2.UserService",
        "zitadel.management.v1.ManagementService",
        "otp.v1.OtpImportService",
    ] {
        let answer = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: name.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(answer.status, 1, "{name} SERVING");
    }
    server.stop().await;
}

async fn connect_call(
    server: &TestServer,
    procedure: &str,
    content_type: &str,
    token: Option<&str>,
    body: Vec<u8>,
) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let mut request = reqwest::Client::new()
        .post(format!("http://{}/{procedure}", server.addr))
        .header("content-type", content_type)
        .header("connect-protocol-version", "1")
        .header("connect-timeout-ms", "5000")
        .body(body);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.bytes().await.unwrap().to_vec())
}

fn json_body(value: &serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(value).unwrap()
}

fn as_json(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body).unwrap()
}

const REGISTER: &str = "zitadel.user.v2.UserService/RegisterTOTP";
const VERIFY: &str = "zitadel.user.v2.UserService/VerifyTOTPRegistration";

#[tokio::test]
async fn connect_unary_calls_in_json_and_proto() {
    use serde_json::json;
    let server = TestServer::start().await;
    // JSON: proto3 JSON names, uint64 as a string, unknown fields ignored.
    let (status, headers, body) = connect_call(
        &server,
        REGISTER,
        "application/json",
        Some("t1-token"),
        json_body(&json!({"userId": "t1", "someFutureField": 1})),
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(headers["content-type"], "application/json");
    let registered = as_json(&body);
    assert_eq!(registered["details"]["sequence"], "1");
    assert_eq!(registered["details"]["resourceOwner"], "org-1");
    assert!(
        registered["details"]["changeDate"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
    assert!(registered["details"].get("creationDate").is_none());
    assert!(
        registered["uri"]
            .as_str()
            .unwrap()
            .starts_with("otpauth://totp/")
    );
    let secret = registered["secret"].as_str().unwrap().to_owned();

    // Proto: the same call, binary both ways.
    let request = VerifyTotpRegistrationRequest {
        user_id: "t1".into(),
        code: code_of(&secret),
    };
    let (status, headers, body) = connect_call(
        &server,
        VERIFY,
        "application/proto",
        Some("t1-token"),
        request.encode_to_vec(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "application/proto");
    let verified = adapters_grpc::proto::zitadel::user::v2::VerifyTotpRegistrationResponse::decode(
        body.as_slice(),
    )
    .unwrap();
    assert_eq!(verified.details.unwrap().sequence, 2);

    // The v2 list and the management list, in JSON.
    let (status, _, body) = connect_call(
        &server,
        "zitadel.user.v2.UserService/ListAuthenticationMethodTypes",
        "application/json",
        Some("admin-token"),
        json_body(&json!({"userId": "t1"})),
    )
    .await;
    assert_eq!(status, 200);
    let listed = as_json(&body);
    assert_eq!(
        listed["authMethodTypes"],
        json!(["AUTHENTICATION_METHOD_TYPE_TOTP"])
    );
    assert_eq!(listed["details"]["totalResult"], "1");
    let (status, _, body) = connect_call(
        &server,
        "zitadel.management.v1.ManagementService/ListHumanAuthFactors",
        "application/json; charset=utf-8",
        Some("root-token"),
        json_body(&json!({"userId": "t1"})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        as_json(&body),
        json!({"result": [{"state": "AUTH_FACTOR_STATE_READY", "otp": {}}]})
    );
    // The v1 AuthService is reachable the same way; an empty body is `{}`.
    let (status, _, body) = connect_call(
        &server,
        "zitadel.auth.v1.AuthService/ListMyAuthFactors",
        "application/json",
        Some("t1-token"),
        Vec::new(),
    )
    .await;
    assert_eq!(
        (status, as_json(&body)["result"][0]["state"].clone()),
        (200, json!("AUTH_FACTOR_STATE_READY"))
    );
    server.stop().await;
}

#[tokio::test]
async fn connect_errors_are_the_protocols_json_with_the_error_detail() {
    use serde_json::json;
    let server = TestServer::start().await;
    let detail_value = |id: &str, message: &str| {
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD_NO_PAD,
            adapters_grpc::proto::zitadel::v1::ErrorDetail {
                id: id.into(),
                message: message.into(),
            }
            .encode_to_vec(),
        )
    };
    let denied = json!({
        "code": "permission_denied",
        "message": "No matching permissions found (AUTH-5mWD2)",
        "details": [{
            "type": "zitadel.v1.ErrorDetail",
            "value": detail_value("AUTH-5mWD2", "No matching permissions found"),
            "debug": {"id": "AUTH-5mWD2", "message": "No matching permissions found"}
        }]
    });
    // The same error JSON whichever encoding the request used.
    for (content_type, body) in [
        ("application/json", json_body(&json!({"userId": "t2"}))),
        (
            "application/proto",
            RegisterTotpRequest {
                user_id: "t2".into(),
            }
            .encode_to_vec(),
        ),
    ] {
        let (status, headers, answer) =
            connect_call(&server, REGISTER, content_type, Some("bob-token"), body).await;
        assert_eq!(status, 403, "{content_type}");
        assert_eq!(headers["content-type"], "application/json");
        assert_eq!(as_json(&answer), denied, "{content_type}");
    }

    let (status, _, answer) = connect_call(
        &server,
        REGISTER,
        "application/json",
        None,
        json_body(&json!({"userId": "t2"})),
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(
        as_json(&answer),
        json!({"code": "unauthenticated", "message": "auth header missing"})
    );

    let (status, _, answer) = connect_call(
        &server,
        VERIFY,
        "application/json",
        Some("t2-token"),
        json_body(&json!({"userId": "t2", "code": "123456"})),
    )
    .await;
    assert_eq!(status, 404);
    let answer = as_json(&answer);
    assert_eq!(answer["code"], "not_found");
    assert_eq!(answer["details"][0]["debug"]["id"], "COMMAND-3Mif9s");

    for (procedure, body, code, http) in [
        (REGISTER, b"{\"userId\": ".to_vec(), "invalid_argument", 400),
        (
            REGISTER,
            b"{\"userId\": 5}".to_vec(),
            "invalid_argument",
            400,
        ),
        (REGISTER, b"[]".to_vec(), "invalid_argument", 400),
        (
            "zitadel.user.v2.UserService/AddPasskey",
            b"{}".to_vec(),
            "unimplemented",
            501,
        ),
        ("made.up.Service/Call", b"{}".to_vec(), "unimplemented", 501),
    ] {
        let (status, _, answer) = connect_call(
            &server,
            procedure,
            "application/json",
            Some("t2-token"),
            body,
        )
        .await;
        assert_eq!(status, http, "{procedure}");
        assert_eq!(as_json(&answer)["code"], code, "{procedure}");
    }
    // connect-timeout-ms bounds the call: a body announced but never sent.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut socket = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let head = format!(
            "POST /{REGISTER} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
             connect-timeout-ms: 200\r\nauthorization: Bearer t2-token\r\n\
             content-length: 100\r\n\r\n{{\"userId\":"
        );
        socket.write_all(head.as_bytes()).await.unwrap();
        let mut answer = vec![0; 4096];
        let read =
            tokio::time::timeout(std::time::Duration::from_secs(5), socket.read(&mut answer))
                .await
                .expect("answered before the server's own timeout")
                .unwrap();
        let answer = String::from_utf8_lossy(&answer[..read]);
        assert!(answer.starts_with("HTTP/1.1 504"), "{answer}");
        assert!(answer.contains("deadline_exceeded"), "{answer}");
    }
    // A body over the message limit.
    let big = json_body(&json!({"userId": "x".repeat(70 * 1024)}));
    let (status, _, answer) =
        connect_call(&server, REGISTER, "application/json", Some("t2-token"), big).await;
    assert_eq!(
        (status, as_json(&answer)["code"].clone()),
        (429, json!("resource_exhausted"))
    );
    server.stop().await;
}
