//! The bodies of the `cargo fuzz` targets under `fuzz/` (one function per
//! target, each taking the fuzzer's bytes), kept here, in the main workspace,
//! so that `tests/corpus.rs` replays every file of `fuzz/corpus/<target>/`
//! and `fuzz/regressions/<target>/` through the very function the target
//! calls, on stable Rust in `cargo test --workspace` (no nightly, no
//! libFuzzer). Each function panics exactly when the code under test breaks
//! a property: a panic inside it, a wrong kind of answer, a round trip that
//! does not come back.
//!
//! Test tooling only: nothing depends on this crate. It uses the adapters'
//! public API (and `adapters_http::decode_*_body`, exposed for it), never
//! their internals.

use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use actix_web::ResponseError;
use async_trait::async_trait;
use base64::Engine as _;
use http_body_util::BodyExt as _;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use tonic::codegen::Service as _;
use tower_layer::Layer as _;

use adapters_crypto::AesGcmCipher;
use adapters_grpc::{AuthServiceImpl, OtpCheckServiceImpl, grpc_web_status_frame};
use adapters_token::{BearerVerifier, ClaimNames, DevIssuer, JwtVerifier};
use application::testing::{StaticTokens, principal};
use application::{
    ApplicationError, Authenticator, CipherError, OtpFactors, Principal, SealBinding, SecretCipher,
    TokenError, TokenVerifier, TotpSettings,
};
use domain::{
    CodeLengthError, SealedSecret, SubmittedCode, TotpAlgorithm, TotpKey, TotpParams, TotpSecret,
    UserId, otpauth_url,
};

/// A fuzz target's body: the fuzzer's bytes in, a panic on a failure.
pub type Target = fn(&[u8]);

/// The fuzz targets, by the name of their `fuzz/fuzz_targets/<name>.rs` and
/// corpus directory, with their bodies.
pub const TARGETS: [(&str, Target); 7] = [
    ("json_body", json_body),
    ("grpc_request", grpc_request),
    ("bearer_header", bearer_header),
    ("jwt", jwt),
    ("submitted_code", submitted_code),
    ("otpauth_url", otpauth_url_builder),
    ("sealed_secret", sealed_secret),
];

/// One current-thread runtime per thread, for the async code under test.
fn block_on<F: Future>(future: F) -> F::Output {
    thread_local! {
        static RUNTIME: Option<tokio::runtime::Runtime> = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok();
    }
    RUNTIME.with(|runtime| match runtime {
        Some(runtime) => runtime.block_on(future),
        None => panic!("no tokio runtime for the fuzz target"),
    })
}

// ---------------------------------------------------------------- json_body

/// The REST adapter's request-body decoding (`adapters-http`): never a
/// panic; a body is refused with 400 / code 3 exactly when it is not
/// whitespace and not a JSON object (or its `code` is neither a string nor
/// `null`), and an accepted body yields its `code` unchanged.
pub fn json_body(data: &[u8]) {
    let expected: Result<Option<String>, ()> = if data.iter().all(u8::is_ascii_whitespace) {
        Ok(None)
    } else {
        match serde_json::from_slice::<Value>(data) {
            Ok(Value::Object(object)) => match object.get("code") {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(code)) => Ok(Some(code.clone())),
                Some(_) => Err(()),
            },
            _ => Err(()),
        }
    };

    let verify = adapters_http::decode_verify_body(data);
    match (&verify, &expected) {
        (Ok(code), Ok(want)) => assert_eq!(
            code.as_ref().map(|code| code.expose_secret().to_owned()),
            *want
        ),
        (Err(error), Err(())) => assert_bad_request(error),
        _ => panic!(
            "verify body decoding disagrees with JSON: got ok={}, want ok={}",
            verify.is_ok(),
            expected.is_ok()
        ),
    }

    // Bodies of messages without fields: any object (or nothing) is fine.
    let is_object = data.iter().all(u8::is_ascii_whitespace)
        || matches!(serde_json::from_slice::<Value>(data), Ok(Value::Object(_)));
    match adapters_http::decode_empty_body(data) {
        Ok(()) => assert!(is_object, "a non-object body was accepted"),
        Err(error) => {
            assert!(!is_object, "an object body was refused");
            assert_bad_request(&error);
        }
    }
}

fn assert_bad_request(error: &adapters_http::ApiError) {
    assert_eq!(error.status_code().as_u16(), 400, "{error:?}");
    let response = error.error_response();
    let body = block_on(actix_web::body::to_bytes(response.into_body()))
        .unwrap_or_else(|_| panic!("the error body does not render"));
    let status: Value = serde_json::from_slice(&body)
        .unwrap_or_else(|_| panic!("the error body is not JSON: {body:?}"));
    assert_eq!(status["code"], 3, "{status}");
    assert!(status["message"].is_string(), "{status}");
}

// ------------------------------------------------------------- grpc_request

const GRPC_METHODS: [&str; 5] = [
    "/zitadel.auth.v1.AuthService/AddMyAuthFactorOTP",
    "/zitadel.auth.v1.AuthService/VerifyMyAuthFactorOTP",
    "/zitadel.auth.v1.AuthService/RemoveMyAuthFactorOTP",
    "/zitadel.auth.v1.AuthService/ListMyAuthFactors",
    "/otp.v1.OtpCheckService/CheckOTP",
];

const GRPC_CONTENT_TYPES: [&str; 4] = [
    "application/grpc",
    "application/grpc-web+proto",
    "application/grpc-web-text+proto",
    "application/grpc-web",
];

/// A call of the gRPC port in process (`AuthService` and `OtpCheckService`
/// on the memory store, behind tonic-web and [`adapters_grpc::GrpcWebStatusFrameLayer`] as
/// the server stacks them): the first byte picks the method (bits 0-2), the
/// encoding (bits 3-4: gRPC, gRPC-web binary, `-text`, bare `grpc-web`) and
/// whether the rest is sent base64-encoded for `-text` (bit 5); the rest is
/// the request body, framing included. Never a panic or a hang; every answer
/// is HTTP 200 (or a 4xx of tonic-web for a request it cannot read) with one
/// valid `grpc-status`, never UNKNOWN, never the service's own INTERNAL
/// (`OTP-INTERNAL`), and over gRPC-web the body is well-formed frames ending
/// in the trailers frame.
pub fn grpc_request(data: &[u8]) {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let method = GRPC_METHODS[usize::from(selector & 0x07) % GRPC_METHODS.len()];
    let content_type = GRPC_CONTENT_TYPES[usize::from((selector >> 3) & 0x03)];
    let text = content_type.contains("-text");
    let body = if text && selector & 0x20 != 0 {
        base64::engine::general_purpose::STANDARD
            .encode(body)
            .into_bytes()
    } else {
        body.to_vec()
    };
    block_on(async move {
        let answer = tokio::time::timeout(
            Duration::from_secs(10),
            grpc_call(method, content_type, body),
        )
        .await
        .unwrap_or_else(|_| panic!("the gRPC call hung"));
        check_grpc_answer(content_type, answer);
    });
}

struct GrpcAnswer {
    status: http::StatusCode,
    headers: http::HeaderMap,
    data: Vec<Vec<u8>>,
    trailers: Option<http::HeaderMap>,
}

fn grpc_factors() -> Option<(OtpFactors, Authenticator)> {
    let cipher =
        AesGcmCipher::from_config(&SecretString::from(CIPHER_KEYS.split(',').next()?)).ok()?;
    let mut settings = TotpSettings {
        issuer: "ZITADEL".into(),
        ..TotpSettings::default()
    };
    settings.check_clients = application::CallerAllowlist::new(["svc-login"]);
    settings.max_changes_per_hour = 0;
    let factors = OtpFactors::new(
        Arc::new(adapters_memory::MemoryFactorStore::new()),
        Arc::new(cipher),
        Arc::new(application::testing::SeededSecrets::default()),
        Arc::new(adapters_clock::SystemClock),
        settings,
    );
    let mut service = principal("svc-login");
    service.scopes = vec!["openid".into(), "otp.check".into()];
    let tokens = StaticTokens::default()
        .with("gigi-token", principal("gigi"))
        .with("svc-token", service);
    Some((factors, Authenticator::new(Arc::new(tokens))))
}

async fn grpc_call(method: &str, content_type: &str, body: Vec<u8>) -> GrpcAnswer {
    let Some((factors, auth)) = grpc_factors() else {
        panic!("the test factors do not build");
    };
    let routes = tonic::service::Routes::new(
        AuthServiceImpl::new(factors.clone(), auth.clone()).into_server(),
    )
    .add_service(OtpCheckServiceImpl::new(factors, auth).into_server());
    let mut service = grpc_web_status_frame().layer(tonic_web::GrpcWebLayer::new().layer(routes));

    let token = if method.starts_with("/otp.") {
        "Bearer svc-token"
    } else {
        "Bearer gigi-token"
    };
    let version = if content_type == "application/grpc" {
        http::Version::HTTP_2
    } else {
        http::Version::HTTP_11
    };
    let Ok(request) = http::Request::builder()
        .method(http::Method::POST)
        .uri(format!("http://localhost{method}"))
        .version(version)
        .header(http::header::CONTENT_TYPE, content_type)
        .header(http::header::ACCEPT, content_type)
        .header("te", "trailers")
        .header(http::header::AUTHORIZATION, token)
        .body(tonic::body::Body::new(http_body_util::Full::new(
            tonic::codegen::Bytes::from(body),
        )))
    else {
        panic!("the request does not build");
    };
    if futures::future::poll_fn(|cx| {
        tonic::codegen::Service::<http::Request<tonic::body::Body>>::poll_ready(&mut service, cx)
    })
    .await
    .is_err()
    {
        panic!("the gRPC service is not ready");
    }
    let Ok(response) = service.call(request).await;
    let (parts, mut body) = response.into_parts();
    let mut data = Vec::new();
    let mut trailers = None;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            panic!("the answer's body broke off");
        };
        match frame.into_data() {
            Ok(bytes) => data.push(bytes.to_vec()),
            Err(frame) => trailers = frame.into_trailers().ok(),
        }
    }
    GrpcAnswer {
        status: parts.status,
        headers: parts.headers,
        data,
        trailers,
    }
}

fn check_grpc_answer(content_type: &str, answer: GrpcAnswer) {
    if answer.status != http::StatusCode::OK {
        assert!(
            answer.status.is_client_error(),
            "HTTP {} for a gRPC call",
            answer.status
        );
        return;
    }
    let (status, message) = if content_type == "application/grpc" {
        let from = answer
            .trailers
            .as_ref()
            .filter(|trailers| trailers.contains_key("grpc-status"))
            .unwrap_or(&answer.headers);
        (
            header_text(from, "grpc-status"),
            header_text(from, "grpc-message"),
        )
    } else {
        let answered = header_text(&answer.headers, "content-type").unwrap_or_default();
        assert!(
            answered.starts_with("application/grpc-web"),
            "a gRPC-web call answered as {answered:?}"
        );
        let block = grpc_web_trailers(&answered, &answer.data);
        let field = |name: &str| {
            block.lines().find_map(|line| {
                let (key, value) = line.split_once(':')?;
                key.eq_ignore_ascii_case(name)
                    .then(|| value.trim().to_owned())
            })
        };
        (field("grpc-status"), field("grpc-message"))
    };
    let Some(code) = status.and_then(|status| status.parse::<i32>().ok()) else {
        panic!("no valid grpc-status in the answer");
    };
    assert!((0..=16).contains(&code), "grpc-status {code}");
    assert_ne!(code, 2, "UNKNOWN: {message:?}");
    let message = message.unwrap_or_default();
    assert!(
        !message.contains("OTP-INTERNAL"),
        "the service's own INTERNAL error for a client's request: {message}"
    );
}

fn header_text(headers: &http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

/// The trailers block of a gRPC-web body: its data chunks (each base64 for
/// `-text`) parsed as frames, which must be whole, with exactly one trailers
/// frame (flag `0x80`), the last.
fn grpc_web_trailers(content_type: &str, chunks: &[Vec<u8>]) -> String {
    let mut bytes = Vec::new();
    for chunk in chunks {
        if content_type.contains("-text") {
            match base64::engine::general_purpose::STANDARD.decode(chunk) {
                Ok(decoded) => bytes.extend_from_slice(&decoded),
                Err(_) => panic!(
                    "a -text answer chunk is not base64: {:?}",
                    String::from_utf8_lossy(chunk)
                ),
            }
        } else {
            bytes.extend_from_slice(chunk);
        }
    }
    let mut rest = bytes.as_slice();
    let mut trailers = None;
    while !rest.is_empty() {
        assert!(trailers.is_none(), "a frame after the trailers frame");
        let Some((header, tail)) = rest.split_first_chunk::<5>() else {
            panic!("a truncated gRPC-web frame header");
        };
        let length = usize::try_from(u32::from_be_bytes([
            header[1], header[2], header[3], header[4],
        ]))
        .unwrap_or(usize::MAX);
        assert!(tail.len() >= length, "a truncated gRPC-web frame");
        let (payload, tail) = tail.split_at(length);
        if header[0] & 0x80 != 0 {
            trailers = Some(String::from_utf8_lossy(payload).into_owned());
        }
        rest = tail;
    }
    trailers.unwrap_or_else(|| panic!("a gRPC-web answer without a trailers frame"))
}

// ------------------------------------------------------------ bearer_header

/// Records the token it is handed and accepts it.
#[derive(Debug, Default)]
struct Recorder(Mutex<Option<String>>);

#[async_trait]
impl TokenVerifier for Recorder {
    async fn verify(&self, token: &SecretString) -> Result<Principal, TokenError> {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) =
            Some(token.expose_secret().to_owned());
        Ok(principal("fuzz"))
    }
}

/// The `Authorization` header as every transport hands it to the
/// application's `Authenticator`: never a panic; a header is passed on
/// exactly when it is `Bearer` (any case) and one token of RFC 6750
/// `b64token` characters, that token unchanged; anything else is refused as
/// an invalid token before any verifier sees it.
pub fn bearer_header(data: &[u8]) {
    let recorder = Arc::new(Recorder::default());
    let auth = Authenticator::new(recorder.clone());
    let result = block_on(auth.authenticate(Some(data)));
    let seen = recorder
        .0
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();

    let expected = std::str::from_utf8(data).ok().and_then(|header| {
        let header = header.trim();
        let (scheme, token) = header.split_once(' ')?;
        let token = token.trim_start();
        let b64token = |c: char| c.is_ascii_alphanumeric() || "-._~+/=".contains(c);
        (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() && token.chars().all(b64token))
            .then(|| token.to_owned())
    });
    match (result, expected) {
        (Ok(_), Some(token)) => assert_eq!(seen.as_deref(), Some(token.as_str())),
        (Err(ApplicationError::TokenInvalid), None) => {
            assert!(seen.is_none(), "a verifier saw a refused header");
        }
        (result, expected) => panic!(
            "header refused or accepted wrongly: ok={}, expected a token: {}",
            result.is_ok(),
            expected.is_some()
        ),
    }
}

// ---------------------------------------------------------------------- jwt

const JWT_ISSUER: &str = "https://issuer.fuzz.example";
const JWT_AUDIENCE: &str = "otp-fuzz";

fn dev_issuer() -> &'static (DevIssuer, BearerVerifier) {
    static ISSUER: OnceLock<(DevIssuer, BearerVerifier)> = OnceLock::new();
    ISSUER.get_or_init(|| {
        let Ok(issuer) = DevIssuer::generate(JWT_ISSUER, JWT_AUDIENCE) else {
            panic!("no development issuer");
        };
        let verifier: JwtVerifier = issuer.verifier(ClaimNames::default(), Duration::from_secs(30));
        let Ok(bearer) = BearerVerifier::new(Some(verifier), None) else {
            panic!("no bearer verifier");
        };
        (issuer, bearer)
    })
}

/// JWT parsing and verification (`adapters-token`: the JWT shape test, the
/// header, key selection, signature, claims) with a static Ed25519 key:
/// never a panic; the fuzzer's bytes as a token, and a real token with its
/// header replaced by them, are refused as invalid (never "unavailable");
/// split at `0xff` into a subject, an organisation and a login name, a token
/// the issuer signs for them verifies to exactly that identity.
pub fn jwt(data: &[u8]) {
    let (issuer, verifier) = dev_issuer();
    let verify = |token: String| block_on(verifier.verify(&SecretString::from(token)));
    let refused = |result: Result<Principal, TokenError>| match result {
        Err(TokenError::Invalid(_)) => {}
        Err(TokenError::Unavailable(reason)) => panic!("unavailable for a bad token: {reason}"),
        Ok(principal) => panic!("a forged token was accepted: {principal:?}"),
    };

    refused(verify(String::from_utf8_lossy(data).into_owned()));

    let Ok(real) = issuer.issue("fuzz-user", None, None, Duration::from_secs(600)) else {
        panic!("the issuer cannot sign");
    };
    let mut parts = real.expose_secret().splitn(2, '.');
    let (Some(header), Some(rest)) = (parts.next(), parts.next()) else {
        panic!("a signed token without a header");
    };
    let forged_header = data_encoding::BASE64URL_NOPAD.encode(data);
    if forged_header != header {
        refused(verify(format!("{forged_header}.{rest}")));
    }

    let mut fields = data
        .split(|byte| *byte == 0xff)
        .map(String::from_utf8_lossy);
    let sub = fields.next().unwrap_or_default();
    let org = fields.next();
    let login = fields.next();
    if let Ok(token) = issuer.issue(
        &sub,
        org.as_deref(),
        login.as_deref(),
        Duration::from_secs(600),
    ) {
        match verify(token.expose_secret().to_owned()) {
            Ok(principal) => {
                assert_eq!(principal.user_id.as_str(), sub);
                assert_eq!(
                    principal.org_id.as_ref().map(|o| o.as_str()),
                    org.as_deref()
                );
                assert_eq!(
                    principal.login_name.as_ref().map(|l| l.as_str()),
                    login.as_deref()
                );
            }
            Err(error) => panic!("a token the issuer signed was refused: {error:?}"),
        }
    }
}

// ----------------------------------------------------------- submitted_code

/// The code parser (`domain::SubmittedCode`) and the check behind it: never
/// a panic; 1 to 200 characters are accepted, anything else is refused with
/// its length in characters; an accepted code is right exactly when it is
/// the key's code of the time (or an adjacent step).
pub fn submitted_code(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let chars = text.chars().count();
    match SubmittedCode::parse(&text) {
        Ok(code) => {
            assert!((1..=200).contains(&chars), "{chars} characters accepted");
            let Ok(secret) = TotpSecret::from_bytes(b"12345678901234567890".to_vec()) else {
                panic!("the RFC 6238 seed is refused");
            };
            let key = TotpKey::new(secret, TotpParams::default());
            let now = 1_000_020;
            let right = [now - 30, now, now + 30]
                .iter()
                .any(|at| key.code_at(*at).expose_secret() == text.as_ref());
            assert_eq!(key.verify(&code, now).is_some(), right);
        }
        Err(CodeLengthError::Empty) => assert_eq!(chars, 0, "a code refused as empty"),
        Err(CodeLengthError::TooLong(length)) => {
            assert_eq!(length, chars);
            assert!(length > 200, "{length} characters refused as too long");
        }
    }
}

// -------------------------------------------------------------- otpauth_url

const ALGORITHMS: [TotpAlgorithm; 3] = [
    TotpAlgorithm::Sha1,
    TotpAlgorithm::Sha256,
    TotpAlgorithm::Sha512,
];

/// An otpauth URL built from fuzzer bytes: byte 0 picks the parameters, byte
/// 1 the secret length (16-128), then the secret, then the issuer and the
/// account split at `0xff`. `None` when the bytes are too few.
#[must_use]
pub fn otpauth_case(data: &[u8]) -> Option<(String, String, TotpKey)> {
    let (&pick, rest) = data.split_first()?;
    let (&length, rest) = rest.split_first()?;
    let length = 16 + usize::from(length) % 113;
    if rest.len() < length {
        return None;
    }
    let (secret, rest) = rest.split_at(length);
    let mut text = rest
        .split(|byte| *byte == 0xff)
        .map(String::from_utf8_lossy);
    let issuer = text.next().unwrap_or_default().into_owned();
    let account = text.next().unwrap_or_default().into_owned();
    let algorithm = ALGORITHMS[usize::from(pick & 0x03) % ALGORITHMS.len()];
    let digits = if pick & 0x04 == 0 { 6 } else { 8 };
    let period = 10 + u32::from(pick >> 3) * 9;
    let params = TotpParams::new(algorithm, digits, period, 1).ok()?;
    let secret = TotpSecret::from_bytes(secret.to_vec()).ok()?;
    Some((issuer, account, TotpKey::new(secret, params)))
}

/// The otpauth URL builder (`domain::otpauth_url`): never a panic; the URL
/// is ASCII, `otpauth://totp/<issuer>:<account>?algorithm=…&digits=…&issuer=…&period=…&secret=…`
/// with every label and value percent-encoded (nothing but RFC 3986
/// unreserved characters, `@` and `%XX`), and decoding it gives back the
/// issuer, account, secret and parameters it was built from. (`pyotp`
/// reading the same URLs is the property test `tests/pyotp.rs`.)
pub fn otpauth_url_builder(data: &[u8]) {
    let Some((issuer, account, key)) = otpauth_case(data) else {
        return;
    };
    let url = otpauth_url(&issuer, &account, &key);
    let Some(parsed) = parse_otpauth(url.expose_secret()) else {
        panic!("the builder made a URL that does not parse strictly");
    };
    assert_eq!(parsed.issuer, issuer);
    assert_eq!(parsed.account, account);
    assert_eq!(parsed.query_issuer, issuer);
    assert_eq!(parsed.algorithm, key.params().algorithm().as_str());
    assert_eq!(parsed.digits, key.params().digits().to_string());
    assert_eq!(parsed.period, key.params().period().to_string());
    assert_eq!(
        data_encoding::BASE32_NOPAD
            .decode(parsed.secret.as_bytes())
            .ok()
            .as_deref(),
        Some(key.secret().expose_bytes())
    );
}

/// An otpauth URL read back by a strict RFC 3986 reader.
#[derive(Debug)]
pub struct ParsedOtpauth {
    /// The label's issuer (before the first unencoded `:`), decoded.
    pub issuer: String,
    /// The label's account, decoded.
    pub account: String,
    /// The `algorithm` value.
    pub algorithm: String,
    /// The `digits` value.
    pub digits: String,
    /// The `issuer` query value, decoded.
    pub query_issuer: String,
    /// The `period` value.
    pub period: String,
    /// The `secret` value (base32).
    pub secret: String,
}

/// Reads `url` strictly: `None` unless it has the builder's exact shape.
#[must_use]
pub fn parse_otpauth(url: &str) -> Option<ParsedOtpauth> {
    let rest = url.strip_prefix("otpauth://totp/")?;
    let (label, query) = rest.split_once('?')?;
    let (issuer, account) = label.split_once(':')?;
    let mut pairs = query.split('&').map(|pair| pair.split_once('='));
    let mut value = |name: &str| {
        let (key, value) = pairs.next()??;
        (key == name).then_some(value)
    };
    let algorithm = value("algorithm")?.to_owned();
    let digits = value("digits")?.to_owned();
    let query_issuer = decode_component(value("issuer")?)?;
    let period = value("period")?.to_owned();
    let secret = value("secret")?.to_owned();
    if pairs.next().is_some() {
        return None;
    }
    Some(ParsedOtpauth {
        issuer: decode_component(issuer)?,
        account: decode_component(account)?,
        algorithm,
        digits,
        query_issuer,
        period,
        secret,
    })
}

/// Percent-decodes a component made only of unreserved characters, `@`
/// and `%XX`; `None` for anything else or bytes that are not UTF-8.
fn decode_component(text: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut input = text.bytes();
    while let Some(byte) = input.next() {
        match byte {
            b'%' => {
                let high = char::from(input.next()?).to_digit(16)?;
                let low = char::from(input.next()?).to_digit(16)?;
                bytes.push(u8::try_from(high * 16 + low).ok()?);
            }
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'@' => {
                bytes.push(byte);
            }
            _ => return None,
        }
    }
    String::from_utf8(bytes).ok()
}

// ------------------------------------------------------------ sealed_secret

/// Two keys, as `crypto.keys` lists them.
const CIPHER_KEYS: &str = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=,k2:Hx4dHBsaGRgXFhUUExIREA8ODQwLCgkIBwYFBAMCAQA=";

fn cipher() -> &'static AesGcmCipher {
    static CIPHER: OnceLock<AesGcmCipher> = OnceLock::new();
    CIPHER.get_or_init(
        || match AesGcmCipher::from_config(&SecretString::from(CIPHER_KEYS)) {
            Ok(cipher) => cipher,
            Err(error) => panic!("the test keys are refused: {error}"),
        },
    )
}

/// The sealed-secret decoder (`adapters-crypto`'s `open`) and the keyring
/// parser: never a panic; the fuzzer's bytes as a sealed secret (under
/// `k1`, `k2` or an unknown key id, byte 0 picks) never open (they are no
/// ciphertext of ours); a secret sealed from the bytes opens to them for
/// its owner only, and no longer once any byte is flipped; `crypto.keys`
/// text is accepted or refused without echoing key material.
pub fn sealed_secret(data: &[u8]) {
    let cipher = cipher();
    let Ok(owner) = UserId::parse("fuzz-owner") else {
        panic!("the owner id is refused");
    };
    let Some(created_at) = chrono::DateTime::from_timestamp_micros(1_764_000_000_123_456) else {
        panic!("a fixed instant is refused");
    };
    let binding = SealBinding {
        owner: &owner,
        params: TotpParams::default(),
        created_at,
    };
    let key_id = match data.first().map(|byte| byte % 3) {
        Some(0) => "k1",
        Some(1) => "k2",
        _ => "k9",
    };
    let forged = SealedSecret {
        key_id: key_id.to_owned(),
        sealed: data.to_vec(),
    };
    match cipher.open(&binding, &forged) {
        Err(CipherError::Tampered | CipherError::UnknownKey(_)) => {}
        Err(CipherError::Unbound) => panic!("the fuzzer's bytes authenticated as format 1"),
        Ok(_) => panic!("the fuzzer's bytes opened as a sealed secret"),
    }

    if let Ok(secret) = TotpSecret::from_bytes(data.to_vec()) {
        let Ok(sealed) = cipher.seal(&binding, &secret) else {
            panic!("sealing failed");
        };
        match cipher.open(&binding, &sealed) {
            Ok(opened) => assert_eq!(opened.expose_bytes(), data),
            Err(error) => panic!("a sealed secret does not open: {error:?}"),
        }
        if let Ok(other) = UserId::parse("fuzz-other") {
            let elsewhere = SealBinding {
                owner: &other,
                ..binding
            };
            assert!(
                cipher.open(&elsewhere, &sealed).is_err(),
                "opened for another owner"
            );
        }
        let later = SealBinding {
            created_at: created_at + chrono::TimeDelta::microseconds(1),
            ..binding
        };
        assert!(
            cipher.open(&later, &sealed).is_err(),
            "opened for another factor of the owner"
        );
        let mut flipped = sealed.clone();
        let at = usize::from(data[0]) % flipped.sealed.len();
        flipped.sealed[at] ^= 0x01;
        assert!(
            cipher.open(&binding, &flipped).is_err(),
            "a flipped byte opened"
        );
    }

    let text = String::from_utf8_lossy(data);
    if let Err(error) = AesGcmCipher::from_config(&SecretString::from(text.as_ref())) {
        let message = error.to_string();
        let entries: Vec<(&str, &str)> = text
            .split(',')
            .filter_map(|entry| entry.split_once(':'))
            .collect();
        for (_, material) in &entries {
            let material = material.trim();
            // Ids are named in errors, and the errors' own wording is no
            // leak: material that is (part of) an id or of that wording is
            // not looked for.
            if material.len() >= 8
                && !entries.iter().any(|(id, _)| id.contains(material))
                && !in_keyring_wording(material)
            {
                {
                    assert!(
                        !message.contains(material),
                        "the keyring error echoes key material"
                    );
                }
            }
        }
    }
}

/// Whether `text` (digits aside) is part of the fixed wording of a
/// [`adapters_crypto::KeyringError`].
fn in_keyring_wording(text: &str) -> bool {
    use adapters_crypto::KeyringError;
    let no_digits = |text: &str| {
        text.chars()
            .filter(|c| !c.is_ascii_digit())
            .collect::<String>()
    };
    let text = no_digits(text);
    [
        KeyringError::Empty,
        KeyringError::Malformed(0),
        KeyringError::BadId(0),
        KeyringError::BadKey(0, String::new()),
        KeyringError::DuplicateId(String::new()),
        KeyringError::InvalidId,
    ]
    .iter()
    .any(|error| no_digits(&error.to_string()).contains(&text))
}
