//! The REST adapter under abuse (docs/security.md, "Hardening"): a body that never comes is cut
//! off, the trusted check lives only on the routes meant for it, and a
//! percent-encoded line break in the path forges no log line.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test helpers")]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::{App, HttpServer, test, web};
use adapters_clock::SystemClock;
use adapters_crypto::{AesGcmCipher, OsSecrets};
use adapters_http::{BodyTimeout, HttpState, internal_routes, public_routes, routes};
use adapters_memory::MemoryFactorStore;
use application::testing::{StaticTokens, principal};
use application::{Authenticator, OtpFactors, TotpSettings};
use domain::TotpParams;
use secrecy::SecretString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn state() -> HttpState {
    let store = Arc::new(MemoryFactorStore::new());
    let cipher = AesGcmCipher::from_config(&SecretString::from(
        "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
    ))
    .unwrap();
    let factors = OtpFactors::new(
        store.clone(),
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
    HttpState {
        factors,
        auth: Authenticator::new(Arc::new(tokens)),
        readiness: store,
    }
}

const VERIFY: &str = "/auth/v1/users/me/auth_factors/otp/_verify";

#[actix_web::test]
async fn a_body_that_never_comes_is_answered_408_and_the_connection_closed() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let state = state();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(BodyTimeout(Duration::from_secs(1))))
            .configure(routes(state.clone()))
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    let handle = server.handle();
    actix_web::rt::spawn(server);

    let mut connection = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {VERIFY} HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer gigi-token\r\n\
         content-type: application/json\r\ncontent-length: 20\r\n\r\n"
    );
    connection.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    let read =
        tokio::time::timeout(Duration::from_secs(10), connection.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "still open after 10 s");
    assert!(started.elapsed() < Duration::from_secs(5));
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains(r#""code":4"#), "{text}");
    handle.stop(false).await;
}

/// The status a POST of a code to `path` as gigi gets from `app`.
macro_rules! status_of {
    ($app:expr, $path:expr) => {{
        let request = test::TestRequest::post()
            .uri($path)
            .insert_header(("Authorization", "Bearer gigi-token"))
            .insert_header(("Content-Type", "application/json"))
            .set_payload(r#"{"code":"123456"}"#)
            .to_request();
        test::call_service($app, request).await.status()
    }};
}

#[actix_web::test]
async fn the_check_is_served_only_by_the_routes_meant_for_it() {
    let check = "/v1/users/gigi/otp/_check";
    let search = "/auth/v1/users/me/auth_factors/_search";

    let public = test::init_service(App::new().configure(public_routes(state()))).await;
    assert_eq!(status_of!(&public, check), StatusCode::NOT_FOUND);
    assert_eq!(status_of!(&public, search), StatusCode::OK);

    let internal = test::init_service(App::new().configure(internal_routes(state()))).await;
    // Reached: gigi's token lacks the check scope.
    assert_eq!(status_of!(&internal, check), StatusCode::FORBIDDEN);
    assert_eq!(status_of!(&internal, search), StatusCode::NOT_FOUND);
    let ready = test::call_service(
        &internal,
        test::TestRequest::get().uri("/readyz").to_request(),
    )
    .await;
    assert_eq!(ready.status(), StatusCode::OK);

    let all = test::init_service(App::new().configure(routes(state()))).await;
    assert_eq!(status_of!(&all, check), StatusCode::FORBIDDEN);
    assert_eq!(status_of!(&all, search), StatusCode::OK);
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

#[actix_web::test]
async fn a_percent_encoded_line_break_in_the_path_forges_no_log_line() {
    let lines = Lines::default();
    let writer = lines.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let app = test::init_service(
        App::new()
            .wrap(actix_web::middleware::from_fn(adapters_http::observe))
            .configure(routes(state())),
    )
    .await;
    let forged = "/v1/users/victim%0aFORGED%20audit%20line/otp/_check";
    assert_eq!(status_of!(&app, forged), StatusCode::BAD_REQUEST);
    let long = format!("/v1/users/{}/otp/_check", "x".repeat(5_000));
    assert_eq!(status_of!(&app, &long), StatusCode::BAD_REQUEST);
    // A well-formed id reaches the check, and its log line.
    assert_eq!(
        status_of!(&app, "/v1/users/victim/otp/_check"),
        StatusCode::FORBIDDEN
    );

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
