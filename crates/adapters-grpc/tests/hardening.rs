//! The gRPC listener under abuse (docs/security.md, "Hardening"): HTTP/2 stream floods and
//! bodies that never come are cut off, health and reflection accept only
//! small messages, reflection is a setting, the trusted check is served only
//! where configured, and a forged user id cannot forge a log line.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail the test on any unexpected answer"
)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use adapters_clock::SystemClock;
use adapters_crypto::{AesGcmCipher, OsSecrets};
use adapters_grpc::proto::otp::v1::CheckOtpRequest;
use adapters_grpc::proto::otp::v1::otp_check_service_client::OtpCheckServiceClient;
use adapters_grpc::proto::zitadel::auth::v1::ListMyAuthFactorsRequest;
use adapters_grpc::proto::zitadel::auth::v1::auth_service_client::AuthServiceClient;
use adapters_grpc::{GrpcLimits, GrpcSettings, MAX_SMALL_MESSAGE_BYTES, Services, serve};
use adapters_memory::MemoryFactorStore;
use application::testing::{StaticTokens, principal};
use application::{Authenticator, OtpFactors, TotpSettings};
use domain::TotpParams;
use secrecy::SecretString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic::{Code, Request};

/// A server on 127.0.0.1 with `settings`; stopped when dropped.
struct Server {
    addr: SocketAddr,
    _shutdown: oneshot::Sender<()>,
}

async fn start(settings: GrpcSettings) -> Server {
    let cipher = AesGcmCipher::from_config(&SecretString::from(
        "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
    ))
    .unwrap();
    let factors = OtpFactors::new(
        Arc::new(MemoryFactorStore::new()),
        Arc::new(cipher),
        Arc::new(OsSecrets),
        Arc::new(SystemClock),
        TotpSettings {
            issuer: "ZITADEL".into(),
            params: TotpParams::default(),
            ..TotpSettings::default()
        },
    );
    let tokens = StaticTokens::default().with("gigi-token", principal("gigi"));
    let auth = Authenticator::new(Arc::new(tokens));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (shutdown, signal) = oneshot::channel::<()>();
    tokio::spawn(serve(
        listener,
        factors,
        auth,
        &settings,
        std::future::pending(),
        async {
            let _ = signal.await;
        },
    ));
    Server {
        addr,
        _shutdown: shutdown,
    }
}

impl Server {
    async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }
}

fn as_gigi<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        MetadataValue::from_static("Bearer gigi-token"),
    );
    request
}

// ---- raw HTTP/2 frames ----

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const END_HEADERS: u8 = 0x4;
const REFUSED_STREAM: u32 = 0x7;
const ENHANCE_YOUR_CALM: u32 = 0xb;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let length = u32::try_from(payload.len()).unwrap().to_be_bytes();
    let mut frame = vec![length[1], length[2], length[3], kind, flags];
    frame.extend_from_slice(&stream.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// HPACK: a literal header without indexing, its name by static index
/// (`index` < 15) or new (`index` 0).
fn literal(block: &mut Vec<u8>, index: u8, name: &str, value: &str) {
    block.push(index);
    if index == 0 {
        block.push(u8::try_from(name.len()).unwrap());
        block.extend_from_slice(name.as_bytes());
    }
    block.push(u8::try_from(value.len()).unwrap());
    block.extend_from_slice(value.as_bytes());
}

/// The header block of a gRPC call's request head: POST, http, its path.
fn grpc_head() -> Vec<u8> {
    let mut block = vec![0x83, 0x86]; // :method POST, :scheme http
    literal(
        &mut block,
        4,
        ":path",
        "/zitadel.auth.v1.AuthService/ListMyAuthFactors",
    );
    literal(&mut block, 1, ":authority", "localhost");
    literal(&mut block, 0, "content-type", "application/grpc");
    literal(&mut block, 0, "te", "trailers");
    block
}

#[tokio::test]
async fn a_stream_flood_on_one_connection_is_capped() {
    let server = start(GrpcSettings {
        limits: GrpcLimits {
            max_concurrent_streams: 10,
            max_local_error_reset_streams: 20,
            ..GrpcLimits::default()
        },
        ..GrpcSettings::default()
    })
    .await;
    let mut connection = TcpStream::connect(server.addr).await.unwrap();
    let mut out = PREFACE.to_vec();
    out.extend(frame(SETTINGS, 0, 0, &[]));
    // 100 request heads whose bodies never come, on one connection.
    let head = grpc_head();
    for stream in (1..200).step_by(2) {
        out.extend(frame(HEADERS, END_HEADERS, stream, &head));
    }
    connection.write_all(&out).await.unwrap();

    let (mut refused, mut goaway) = (0, None);
    let read_frames = async {
        let mut header = [0u8; 9];
        while connection.read_exact(&mut header).await.is_ok() {
            let length = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
            let mut payload = vec![0; length];
            if connection.read_exact(&mut payload).await.is_err() {
                break;
            }
            match header[3] {
                RST_STREAM
                    if u32::from_be_bytes(payload[..4].try_into().unwrap()) == REFUSED_STREAM =>
                {
                    refused += 1;
                }
                GOAWAY => {
                    goaway = Some(u32::from_be_bytes(payload[4..8].try_into().unwrap()));
                    break;
                }
                _ => {}
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), read_frames).await;
    assert!(
        refused >= 10,
        "streams over max_concurrent_streams are refused ({refused} were)"
    );
    assert_eq!(
        goaway,
        Some(ENHANCE_YOUR_CALM),
        "too many refused streams close the connection"
    );
}

#[tokio::test]
async fn a_grpc_web_body_that_never_comes_is_cut_off() {
    let server = start(GrpcSettings {
        limits: GrpcLimits {
            request_timeout: Duration::from_secs(1),
            ..GrpcLimits::default()
        },
        ..GrpcSettings::default()
    })
    .await;
    let mut connection = TcpStream::connect(server.addr).await.unwrap();
    connection
        .write_all(
            b"POST /zitadel.auth.v1.AuthService/ListMyAuthFactors HTTP/1.1\r\n\
              host: localhost\r\n\
              content-type: application/grpc-web+proto\r\n\
              x-grpc-web: 1\r\n\
              authorization: Bearer gigi-token\r\n\
              content-length: 20\r\n\r\n",
        )
        .await
        .unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match connection.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    answer.extend_from_slice(&buffer[..n]);
                    if answer.windows(11).any(|w| w == b"grpc-status") {
                        break;
                    }
                }
            }
        }
    })
    .await;
    assert!(read.is_ok(), "still open after 10 s");
    assert!(started.elapsed() < Duration::from_secs(5));
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("grpc-status"), "{text}");
}

#[tokio::test]
async fn health_and_reflection_accept_only_small_messages() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;

    let server = start(GrpcSettings::default()).await;
    let name = "x".repeat(MAX_SMALL_MESSAGE_BYTES + 1);
    let mut health = HealthClient::new(server.channel().await);
    let large = health
        .check(HealthCheckRequest {
            service: name.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(large.code(), Code::OutOfRange, "{large:?}");
    let small = health
        .check(HealthCheckRequest {
            service: "x".repeat(100),
        })
        .await
        .unwrap_err();
    assert_eq!(small.code(), Code::NotFound, "{small:?}");

    let mut reflection = ServerReflectionClient::new(server.channel().await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::FileContainingSymbol(name)),
    };
    let answer = reflection
        .server_reflection_info(tonic::codegen::tokio_stream::iter([request]))
        .await;
    // Refused: the call fails, or its stream ends without an answer (with
    // the 4 MB limit it answered a not-found error message).
    match answer {
        Err(status) => assert_eq!(status.code(), Code::OutOfRange, "{status:?}"),
        Ok(stream) => match stream.into_inner().message().await {
            Err(status) => assert_eq!(status.code(), Code::OutOfRange, "{status:?}"),
            Ok(None) => {}
            Ok(Some(message)) => {
                panic!("a large reflection request was answered: {message:?}")
            }
        },
    }
}

#[tokio::test]
async fn reflection_is_a_setting() {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;

    for (reflection, served) in [(true, true), (false, false)] {
        let server = start(GrpcSettings {
            reflection,
            ..GrpcSettings::default()
        })
        .await;
        let mut client = ServerReflectionClient::new(server.channel().await);
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let answer = client
            .server_reflection_info(tonic::codegen::tokio_stream::iter([request]))
            .await;
        match answer {
            Ok(_) => assert!(served, "reflection served while off"),
            Err(status) => {
                assert!(!served, "{status:?}");
                assert_eq!(status.code(), Code::Unimplemented);
            }
        }
    }
}

async fn check_code(server: &Server, user_id: &str) -> Code {
    OtpCheckServiceClient::new(server.channel().await)
        .check_otp(as_gigi(CheckOtpRequest {
            user_id: user_id.into(),
            code: "123456".into(),
        }))
        .await
        .unwrap_err()
        .code()
}

async fn list_code(server: &Server) -> Code {
    match AuthServiceClient::new(server.channel().await)
        .list_my_auth_factors(as_gigi(ListMyAuthFactorsRequest {}))
        .await
    {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    }
}

#[tokio::test]
async fn the_trusted_check_is_served_only_where_configured() {
    let public = start(GrpcSettings {
        services: Services::UserFacing,
        ..GrpcSettings::default()
    })
    .await;
    assert_eq!(check_code(&public, "gigi").await, Code::Unimplemented);
    assert_eq!(list_code(&public).await, Code::Ok);

    let internal = start(GrpcSettings {
        services: Services::Trusted,
        ..GrpcSettings::default()
    })
    .await;
    // Reached (gigi's token has no check scope), not unknown.
    assert_eq!(check_code(&internal, "gigi").await, Code::PermissionDenied);
    assert_eq!(list_code(&internal).await, Code::Unimplemented);

    let both = start(GrpcSettings::default()).await;
    assert_eq!(check_code(&both, "gigi").await, Code::PermissionDenied);
    assert_eq!(list_code(&both).await, Code::Ok);
}

/// Log lines in the text format, collected.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Lines {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_user_id_with_a_line_break_forges_no_log_line() {
    let lines = Lines::default();
    let writer = lines.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(move || writer.clone())
        .finish();
    // The test runtime has one thread: the server's tasks log here too.
    let _guard = tracing::subscriber::set_default(subscriber);

    let server = start(GrpcSettings::default()).await;
    let code = check_code(&server, "victim\nFORGED audit line").await;
    assert_eq!(code, Code::InvalidArgument);
    let long = check_code(&server, &"x".repeat(10_000)).await;
    assert_eq!(long, Code::InvalidArgument);
    // The same caller with a well-formed id reaches the check (and its log).
    assert_eq!(check_code(&server, "victim").await, Code::PermissionDenied);

    let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
    assert!(
        text.contains("login check without the check scope"),
        "{text}"
    );
    for line in text.lines() {
        assert!(!line.starts_with("FORGED"), "forged line: {line:?}\n{text}");
        assert!(line.len() < 2_000, "unbounded line: {} bytes", line.len());
    }
}
