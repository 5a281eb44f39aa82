//! The gRPC port in-process on the memory store, with fixed test tokens, on
//! 127.0.0.1: the contract's calls and errors over gRPC (HTTP/2) with the
//! generated client, the same over gRPC-web (HTTP/1.1, raw frames), CORS,
//! health, reflection, and unknown methods. (Real tokens and PostgreSQL are
//! exercised by the bootstrap crate's API tests.)

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail the test on any unexpected answer"
)]

use std::net::SocketAddr;
use std::sync::Arc;

use adapters_crypto::{AesGcmCipher, OsSecrets};
use adapters_grpc::proto::google::rpc;
use adapters_grpc::proto::zitadel::auth::v1::auth_service_client::AuthServiceClient;
use adapters_grpc::proto::zitadel::auth::v1::{
    AddMyAuthFactorOtpRequest, AddMyAuthFactorOtpResponse, ListMyAuthFactorsRequest,
    ListMyAuthFactorsResponse, RemoveMyAuthFactorOtpRequest, VerifyMyAuthFactorOtpRequest,
};
use adapters_grpc::proto::zitadel::user::v1::{
    AuthFactor, AuthFactorOtp, AuthFactorState, auth_factor,
};
use adapters_grpc::proto::zitadel::v1::ErrorDetail;
use adapters_grpc::{GrpcError, GrpcSettings, error_detail, serve};
use adapters_memory::MemoryFactorStore;
use application::testing::{FixedClock, StaticTokens, principal};
use application::{Authenticator, OtpFactors, TotpSettings};
use base64::Engine as _;
use domain::{TotpKey, TotpParams, TotpSecret};
use prost::Message;
use secrecy::{ExposeSecret, SecretString};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

/// The service's time in these tests: its clock stands still here (10 s
/// into a 30 s step), and the codes the tests type are computed for it.
const T0: chrono::DateTime<chrono::Utc> = match chrono::DateTime::from_timestamp(1_800_000_010, 0) {
    Some(at) => at,
    None => panic!("a valid time"),
};

const ALLOWED_ORIGIN: &str = "https://console.example.com";
const SERVICE: &str = "zitadel.auth.v1.AuthService";

/// A running server; `stop` shuts it down and checks it ended cleanly.
struct TestServer {
    addr: SocketAddr,
    draining: Option<oneshot::Sender<()>>,
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<Result<(), GrpcError>>,
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
                ..TotpSettings::default()
            },
        );
        let tokens = StaticTokens::default()
            .with("gigi-token", principal("gigi"))
            .with("bob-token", principal("bob"));
        let auth = Authenticator::new(Arc::new(tokens));
        let settings = GrpcSettings {
            cors_allowed_origins: vec![ALLOWED_ORIGIN.into()],
            ..GrpcSettings::default()
        };

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (shutdown, signal) = oneshot::channel();
        let (draining, drain_signal) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(
            listener,
            factors,
            auth,
            &settings,
            async {
                // A dropped sender is no drain: wait for the shutdown instead.
                if drain_signal.await.is_err() {
                    std::future::pending::<()>().await;
                }
            },
            async {
                let _ = signal.await;
            },
        ));
        Self {
            addr,
            draining: Some(draining),
            shutdown,
            task,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn channel(&self) -> Channel {
        Channel::from_shared(self.url(""))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    async fn client(&self) -> AuthServiceClient<Channel> {
        AuthServiceClient::new(self.channel().await)
    }

    async fn stop(self) {
        self.shutdown.send(()).unwrap();
        self.task.await.unwrap().unwrap();
    }
}

/// `message` with `authorization: <header>` metadata.
fn with_auth<T>(message: T, header: &str) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", MetadataValue::try_from(header).unwrap());
    request
}

fn as_gigi<T>(message: T) -> Request<T> {
    with_auth(message, "Bearer gigi-token")
}

fn current_code(secret: &str) -> String {
    let key = TotpKey::new(
        TotpSecret::from_base32(secret).unwrap(),
        TotpParams::default(),
    );
    let now = u64::try_from(T0.timestamp()).unwrap();
    key.code_at(now).expose_secret().to_owned()
}

/// Decodes the details the long way (google.rpc.Status, then the Any), as
/// any gRPC client does, and checks them against the status itself.
fn detail_of(status: &Status) -> Option<ErrorDetail> {
    let decoded = rpc::Status::decode(status.details()).unwrap();
    assert_eq!(decoded.code, status.code() as i32);
    assert_eq!(decoded.message, status.message());
    assert!(decoded.details.len() <= 1, "{:?}", decoded.details);
    let detail = decoded.details.first().map(|any| {
        assert_eq!(any.type_url, "type.googleapis.com/zitadel.v1.ErrorDetail");
        ErrorDetail::decode(any.value.as_slice()).unwrap()
    });
    assert_eq!(detail, error_detail(status), "the helper agrees");
    detail
}

/// The status is the contract's error: code, `"<text> (<id>)"`, ErrorDetail.
#[track_caller]
fn assert_contract_error(status: &Status, code: Code, id: &str, text: &str) {
    assert_eq!(status.code(), code, "{status:?}");
    assert_eq!(status.message(), format!("{text} ({id})"));
    assert_eq!(
        detail_of(status),
        Some(ErrorDetail {
            id: id.into(),
            message: text.into(),
        })
    );
}

const ALREADY_SET_UP: &str = "Multifactor OTP (OneTimePassword) is already set up";
const DOES_NOT_EXIST: &str = "Multifactor OTP (OneTimePassword) doesn't exist";

#[tokio::test]
async fn lifecycle_over_grpc() {
    let server = TestServer::start().await;
    let mut client = server.client().await;

    let added = client
        .add_my_auth_factor_otp(as_gigi(AddMyAuthFactorOtpRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(added.secret.len(), 32);
    assert_eq!(
        added.url,
        format!(
            "otpauth://totp/ZITADEL:gigi@example.com?algorithm=SHA1&digits=6&issuer=ZITADEL&period=30&secret={}",
            added.secret
        )
    );
    let details = added.details.clone().unwrap();
    assert_eq!(details.sequence, 1);
    assert_eq!(details.resource_owner, "org-1");
    assert!(details.change_date.is_some());
    assert_eq!(details.creation_date, details.change_date);

    let listed = client
        .list_my_auth_factors(as_gigi(ListMyAuthFactorsRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        listed,
        ListMyAuthFactorsResponse::default(),
        "pending factors are not listed"
    );

    let verified = client
        .verify_my_auth_factor_otp(as_gigi(VerifyMyAuthFactorOtpRequest {
            code: current_code(&added.secret),
        }))
        .await
        .unwrap()
        .into_inner()
        .details
        .unwrap();
    assert_eq!(verified.sequence, 2);
    assert_eq!(verified.resource_owner, "org-1");
    assert_eq!(verified.creation_date, None);
    let (before, after) = (details.change_date.unwrap(), verified.change_date.unwrap());
    assert!((after.seconds, after.nanos) >= (before.seconds, before.nanos));

    let listed = client
        .list_my_auth_factors(as_gigi(ListMyAuthFactorsRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        listed.result,
        vec![AuthFactor {
            state: AuthFactorState::Ready.into(),
            r#type: Some(auth_factor::Type::Otp(AuthFactorOtp {})),
        }]
    );
    let bob = client
        .list_my_auth_factors(with_auth(ListMyAuthFactorsRequest {}, "Bearer bob-token"))
        .await
        .unwrap()
        .into_inner();
    assert!(bob.result.is_empty(), "a user sees only their own factor");

    let removed = client
        .remove_my_auth_factor_otp(as_gigi(RemoveMyAuthFactorOtpRequest {}))
        .await
        .unwrap()
        .into_inner()
        .details
        .unwrap();
    assert_eq!((removed.sequence, removed.creation_date), (3, None));
    let listed = client
        .list_my_auth_factors(as_gigi(ListMyAuthFactorsRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert!(listed.result.is_empty());

    server.stop().await;
}

#[tokio::test]
async fn every_contract_error_has_its_code_message_and_detail() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let verify = |code: &str| {
        as_gigi(VerifyMyAuthFactorOtpRequest {
            code: code.to_owned(),
        })
    };

    let status = client
        .verify_my_auth_factor_otp(verify("123456"))
        .await
        .unwrap_err();
    assert_contract_error(&status, Code::NotFound, "COMMAND-3Mif9s", DOES_NOT_EXIST);
    let status = client
        .remove_my_auth_factor_otp(as_gigi(RemoveMyAuthFactorOtpRequest {}))
        .await
        .unwrap_err();
    assert_contract_error(&status, Code::NotFound, "COMMAND-Hd9sd", DOES_NOT_EXIST);

    let added = client
        .add_my_auth_factor_otp(as_gigi(AddMyAuthFactorOtpRequest {}))
        .await
        .unwrap()
        .into_inner();
    for wrong in ["abcdef", "12345", "1234567"] {
        let status = client
            .verify_my_auth_factor_otp(verify(wrong))
            .await
            .unwrap_err();
        assert_contract_error(
            &status,
            Code::InvalidArgument,
            "EVENT-8isk2",
            "Invalid code",
        );
    }

    for (code, what) in [
        (String::new(), "empty"),
        ("1".repeat(201), "201 characters"),
    ] {
        let status = client
            .verify_my_auth_factor_otp(verify(&code))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{what}");
        assert_eq!(
            status.message(),
            "invalid VerifyMyAuthFactorOTPRequest.Code: value length must be between 1 and 200 runes"
        );
        assert_eq!(detail_of(&status), None, "field rules carry no error id");
    }

    client
        .verify_my_auth_factor_otp(verify(&current_code(&added.secret)))
        .await
        .unwrap();
    let status = client
        .add_my_auth_factor_otp(as_gigi(AddMyAuthFactorOtpRequest {}))
        .await
        .unwrap_err();
    assert_contract_error(
        &status,
        Code::AlreadyExists,
        "COMMAND-do9se",
        ALREADY_SET_UP,
    );
    let status = client
        .verify_my_auth_factor_otp(verify(&current_code(&added.secret)))
        .await
        .unwrap_err();
    assert_contract_error(
        &status,
        Code::FailedPrecondition,
        "COMMAND-qx4ls",
        ALREADY_SET_UP,
    );

    server.stop().await;
}

/// Calls all four methods with `header` (or none) as `authorization`.
async fn call_all(client: &mut AuthServiceClient<Channel>, header: Option<&str>) -> Vec<Status> {
    fn request<T>(message: T, header: Option<&str>) -> Request<T> {
        match header {
            Some(header) => with_auth(message, header),
            None => Request::new(message),
        }
    }
    vec![
        client
            .add_my_auth_factor_otp(request(AddMyAuthFactorOtpRequest {}, header))
            .await
            .unwrap_err(),
        client
            .verify_my_auth_factor_otp(request(
                VerifyMyAuthFactorOtpRequest {
                    code: "123456".into(),
                },
                header,
            ))
            .await
            .unwrap_err(),
        client
            .remove_my_auth_factor_otp(request(RemoveMyAuthFactorOtpRequest {}, header))
            .await
            .unwrap_err(),
        client
            .list_my_auth_factors(request(ListMyAuthFactorsRequest {}, header))
            .await
            .unwrap_err(),
    ]
}

#[tokio::test]
async fn missing_and_bad_tokens_are_unauthenticated() {
    let server = TestServer::start().await;
    let mut client = server.client().await;

    for status in call_all(&mut client, None).await {
        assert_eq!(status.code(), Code::Unauthenticated);
        assert_eq!(status.message(), "auth header missing");
        assert_eq!(detail_of(&status), None);
    }
    for header in [
        "Bearer nope",
        "Basic Z2lnaTpwdw==",
        "gigi-token",
        "Bearer",
        "bearer  bob-token x",
    ] {
        for status in call_all(&mut client, Some(header)).await {
            assert_contract_error(
                &status,
                Code::Unauthenticated,
                "AUTH-7fs1e",
                "Errors.Token.Invalid",
            );
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn unknown_methods_and_services_are_unimplemented() {
    let server = TestServer::start().await;
    let mut grpc = tonic::client::Grpc::new(server.channel().await);
    for path in [
        "/zitadel.auth.v1.AuthService/GetMyUser",
        "/zitadel.admin.v1.AdminService/Healthz",
    ] {
        grpc.ready().await.unwrap();
        let status = grpc
            .unary::<_, ListMyAuthFactorsResponse, _>(
                as_gigi(ListMyAuthFactorsRequest {}),
                PathAndQuery::from_static(path),
                tonic_prost::ProstCodec::default(),
            )
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unimplemented, "{path}: {status:?}");
    }
    server.stop().await;
}

// ---- gRPC-web over HTTP/1.1, by hand ----

fn http1() -> reqwest::Client {
    reqwest::Client::builder().http1_only().build().unwrap()
}

/// One gRPC-web data frame: flag 0, u32 big-endian length, the message.
fn data_frame(message: &impl Message) -> Vec<u8> {
    let bytes = message.encode_to_vec();
    let mut frame = vec![0];
    frame.extend_from_slice(&u32::try_from(bytes.len()).unwrap().to_be_bytes());
    frame.extend_from_slice(&bytes);
    frame
}

/// Splits a gRPC-web body into (flag, payload) frames.
fn frames(mut body: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut frames = Vec::new();
    while !body.is_empty() {
        assert!(body.len() >= 5, "truncated frame header");
        let length = u32::from_be_bytes(body[1..5].try_into().unwrap()) as usize;
        frames.push((body[0], body[5..5 + length].to_vec()));
        body = &body[5 + length..];
    }
    frames
}

/// The `key:value\r\n` lines of a trailers frame.
fn trailers(payload: &[u8]) -> Vec<(String, String)> {
    std::str::from_utf8(payload)
        .unwrap()
        .split("\r\n")
        .filter(|line| !line.is_empty())
        .map(|line| {
            let (key, value) = line.split_once(':').unwrap();
            (key.trim().to_ascii_lowercase(), value.trim().to_owned())
        })
        .collect()
}

fn trailer<'a>(trailers: &'a [(String, String)], key: &str) -> Option<&'a str> {
    trailers
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// POSTs one gRPC-web call over HTTP/1.1; answers the response headers and
/// the body's frames.
async fn grpc_web_call(
    server: &TestServer,
    method: &str,
    content_type: &str,
    authorization: Option<&str>,
    body: Vec<u8>,
) -> (reqwest::header::HeaderMap, Vec<(u8, Vec<u8>)>) {
    let mut request = http1()
        .post(server.url(&format!("/{SERVICE}/{method}")))
        .header("content-type", content_type)
        .header("x-grpc-web", "1")
        .header("origin", ALLOWED_ORIGIN)
        .body(body);
    if let Some(authorization) = authorization {
        request = request.header("authorization", authorization);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_11);
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    let body = response.bytes().await.unwrap();
    (headers, frames(&body))
}

#[tokio::test]
async fn grpc_web_add_answers_a_data_frame_and_trailers() {
    let server = TestServer::start().await;
    let (headers, frames) = grpc_web_call(
        &server,
        "AddMyAuthFactorOTP",
        "application/grpc-web+proto",
        Some("Bearer gigi-token"),
        data_frame(&AddMyAuthFactorOtpRequest {}),
    )
    .await;
    assert_eq!(headers["content-type"], "application/grpc-web+proto");
    assert_eq!(headers["access-control-allow-origin"], ALLOWED_ORIGIN);
    let exposed = headers["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    for header in ["grpc-status", "grpc-message", "grpc-status-details-bin"] {
        assert!(exposed.contains(header), "{exposed}");
    }

    assert_eq!(frames.len(), 2, "{frames:?}");
    assert_eq!(frames[0].0, 0x00);
    let added = AddMyAuthFactorOtpResponse::decode(frames[0].1.as_slice()).unwrap();
    assert_eq!(added.secret.len(), 32);
    assert!(
        added
            .url
            .starts_with("otpauth://totp/ZITADEL:gigi@example.com?")
    );
    assert_eq!(added.details.unwrap().sequence, 1);
    assert_eq!(frames[1].0, 0x80);
    assert_eq!(trailer(&trailers(&frames[1].1), "grpc-status"), Some("0"));

    // `application/grpc-web` (no `+proto`) is the same wire.
    let (_, frames) = grpc_web_call(
        &server,
        "ListMyAuthFactors",
        "application/grpc-web",
        Some("Bearer gigi-token"),
        data_frame(&ListMyAuthFactorsRequest {}),
    )
    .await;
    assert_eq!(frames.len(), 2, "{frames:?}");
    assert_eq!(
        ListMyAuthFactorsResponse::decode(frames[0].1.as_slice()).unwrap(),
        ListMyAuthFactorsResponse::default()
    );
    assert_eq!(trailer(&trailers(&frames[1].1), "grpc-status"), Some("0"));
    server.stop().await;
}

#[tokio::test]
async fn grpc_web_errors_travel_in_the_trailers_frame() {
    let server = TestServer::start().await;

    let (headers, frames) = grpc_web_call(
        &server,
        "AddMyAuthFactorOTP",
        "application/grpc-web+proto",
        None,
        data_frame(&AddMyAuthFactorOtpRequest {}),
    )
    .await;
    assert!(!headers.contains_key("grpc-status"), "{headers:?}");
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!(frames[0].0, 0x80);
    let fields = trailers(&frames[0].1);
    assert_eq!(trailer(&fields, "grpc-status"), Some("16"));
    assert_eq!(
        trailer(&fields, "grpc-message"),
        Some("auth%20header%20missing")
    );

    let (_, frames) = grpc_web_call(
        &server,
        "VerifyMyAuthFactorOTP",
        "application/grpc-web+proto",
        Some("Bearer nope"),
        data_frame(&VerifyMyAuthFactorOtpRequest {
            code: "123456".into(),
        }),
    )
    .await;
    assert_eq!(frames.len(), 1, "{frames:?}");
    let fields = trailers(&frames[0].1);
    assert_eq!(trailer(&fields, "grpc-status"), Some("16"));
    assert_eq!(
        trailer(&fields, "grpc-message"),
        Some("Errors.Token.Invalid%20(AUTH-7fs1e)")
    );
    let details = trailer(&fields, "grpc-status-details-bin").unwrap();
    let details = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(details.trim_end_matches('='))
        .unwrap();
    let decoded = rpc::Status::decode(details.as_slice()).unwrap();
    assert_eq!(decoded.code, 16);
    assert_eq!(decoded.message, "Errors.Token.Invalid (AUTH-7fs1e)");
    assert_eq!(
        ErrorDetail::decode(decoded.details[0].value.as_slice()).unwrap(),
        ErrorDetail {
            id: "AUTH-7fs1e".into(),
            message: "Errors.Token.Invalid".into(),
        }
    );

    let (_, frames) = grpc_web_call(
        &server,
        "GetMyUser",
        "application/grpc-web+proto",
        Some("Bearer gigi-token"),
        data_frame(&ListMyAuthFactorsRequest {}),
    )
    .await;
    assert_eq!(trailer(&trailers(&frames[0].1), "grpc-status"), Some("12"));
    server.stop().await;
}

#[tokio::test]
async fn cors_preflight_answers_allowed_origins_only() {
    let server = TestServer::start().await;
    let preflight = |origin: &str| {
        http1()
            .request(
                reqwest::Method::OPTIONS,
                server.url(&format!("/{SERVICE}/AddMyAuthFactorOTP")),
            )
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,content-type,x-grpc-web,x-user-agent,grpc-timeout",
            )
            .send()
    };

    let response = preflight(ALLOWED_ORIGIN).await.unwrap();
    assert!(response.status().is_success(), "{response:?}");
    let headers = response.headers();
    assert_eq!(headers["access-control-allow-origin"], ALLOWED_ORIGIN);
    assert!(
        headers["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("POST")
    );
    let allowed = headers["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    for header in [
        "authorization",
        "content-type",
        "x-grpc-web",
        "x-user-agent",
        "grpc-timeout",
    ] {
        assert!(allowed.contains(header), "{allowed}");
    }

    let response = preflight("https://evil.example").await.unwrap();
    assert!(
        !response
            .headers()
            .contains_key("access-control-allow-origin"),
        "{response:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn cors_preflight_allows_the_headers_zitadel_clients_send() {
    let server = TestServer::start().await;
    // What ZITADEL's console sends on every gRPC-web call.
    let response = http1()
        .request(
            reqwest::Method::OPTIONS,
            server.url(&format!("/{SERVICE}/ListMyAuthFactors")),
        )
        .header("origin", ALLOWED_ORIGIN)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type,x-grpc-web,x-user-agent,x-zitadel-orgid",
        )
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{response:?}");
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        ALLOWED_ORIGIN
    );
    let allowed = response.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(
        allowed.split(',').any(|h| h.trim() == "x-zitadel-orgid"),
        "{allowed}"
    );
    // Browsers may reuse the answer for 10 minutes instead of asking before every call.
    assert_eq!(response.headers()["access-control-max-age"], "600");
    server.stop().await;
}

// ---- health and reflection ----

#[tokio::test]
async fn health_reports_serving() {
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};

    let server = TestServer::start().await;
    let mut health = HealthClient::new(server.channel().await);
    for service in ["", SERVICE] {
        let answer = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(answer.status(), ServingStatus::Serving, "{service:?}");
    }
    let unknown = health
        .check(HealthCheckRequest {
            service: "zitadel.admin.v1.AdminService".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    server.stop().await;
}

#[tokio::test]
async fn health_turns_not_serving_when_draining_starts_while_calls_still_work() {
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};

    let mut server = TestServer::start().await;
    let mut health = HealthClient::new(server.channel().await);
    server.draining.take().unwrap().send(()).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    for service in ["", SERVICE, "otp.v1.OtpCheckService"] {
        loop {
            let answer = health
                .check(HealthCheckRequest {
                    service: service.into(),
                })
                .await
                .unwrap()
                .into_inner();
            if answer.status() == ServingStatus::NotServing {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{service:?} still SERVING"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
    // Still accepting calls until the shutdown.
    let listed = server
        .client()
        .await
        .list_my_auth_factors(with_auth(
            ListMyAuthFactorsRequest::default(),
            "Bearer gigi-token",
        ))
        .await;
    assert!(listed.is_ok(), "{listed:?}");
    server.stop().await;
}

#[tokio::test]
async fn reflection_v1_lists_services_and_describes_the_contract() {
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::{ServerReflectionRequest, ServerReflectionResponse};

    let server = TestServer::start().await;
    let mut reflection = ServerReflectionClient::new(server.channel().await);
    let ask = |request: MessageRequest| ServerReflectionRequest {
        host: String::new(),
        message_request: Some(request),
    };
    let requests = vec![
        ask(MessageRequest::ListServices(String::new())),
        ask(MessageRequest::FileContainingSymbol(SERVICE.into())),
    ];
    let mut answers = reflection
        .server_reflection_info(tonic::codegen::tokio_stream::iter(requests))
        .await
        .unwrap()
        .into_inner();

    let Some(ServerReflectionResponse {
        message_response: Some(MessageResponse::ListServicesResponse(list)),
        ..
    }) = answers.message().await.unwrap()
    else {
        panic!("no service list");
    };
    let names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
    for name in [
        SERVICE,
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
    ] {
        assert!(names.iter().any(|n| n == name), "{name} in {names:?}");
    }

    let Some(ServerReflectionResponse {
        message_response: Some(MessageResponse::FileDescriptorResponse(files)),
        ..
    }) = answers.message().await.unwrap()
    else {
        panic!("no file descriptor");
    };
    let file = prost_types::FileDescriptorProto::decode(files.file_descriptor_proto[0].as_slice())
        .unwrap();
    assert_eq!(file.name(), "zitadel/auth.proto");
    assert_eq!(file.package(), "zitadel.auth.v1");
    let methods: Vec<_> = file.service[0].method.iter().map(|m| m.name()).collect();
    assert_eq!(
        methods,
        [
            "AddMyAuthFactorOTP",
            "VerifyMyAuthFactorOTP",
            "RemoveMyAuthFactorOTP",
            "ListMyAuthFactors"
        ]
    );
    server.stop().await;
}

#[tokio::test]
async fn reflection_v1alpha_lists_services() {
    use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;

    let server = TestServer::start().await;
    let mut reflection = ServerReflectionClient::new(server.channel().await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let answer = reflection
        .server_reflection_info(tonic::codegen::tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner()
        .message()
        .await
        .unwrap()
        .unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
        panic!("no service list: {answer:?}");
    };
    let names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
    for name in [
        SERVICE,
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    ] {
        assert!(names.iter().any(|n| n == name), "{name} in {names:?}");
    }
    server.stop().await;
}

#[test]
fn the_descriptor_set_holds_the_contract_files() {
    let set = prost_types::FileDescriptorSet::decode(adapters_grpc::FILE_DESCRIPTOR_SET).unwrap();
    let names: Vec<_> = set.file.iter().map(|f| f.name()).collect();
    for name in [
        "zitadel/object.proto",
        "zitadel/message.proto",
        "zitadel/user.proto",
        "zitadel/auth.proto",
        "google/rpc/status.proto",
        "google/protobuf/timestamp.proto",
    ] {
        assert!(names.contains(&name), "{name} in {names:?}");
    }
}
