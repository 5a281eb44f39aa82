//! The hardening (docs/security.md) on the assembled service: the trusted check lives on the
//! internal listeners only, and `/readyz` floods cost one database check
//! per second.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use adapters_grpc::proto::otp::v1::CheckOtpRequest;
use adapters_grpc::proto::otp::v1::otp_check_service_client::OtpCheckServiceClient;
use adapters_postgres::testing::TestDatabase;
use application::Readiness;
use bootstrap::{Application, Ports};
use serde_json::json;
use tonic::Code;
use tonic::metadata::MetadataValue;

use crate::helpers::{TestApp, settings_with, spawn_app_with, spawn_issuer, user};

async fn rest_check(app: &TestApp, address: &str, token: &str) -> u16 {
    app.call_at(
        address,
        reqwest::Method::POST,
        &format!("/v1/users/{}/otp/_check", user("split")),
        Some(&format!("Bearer {token}")),
        Some(json!({"code": "123456"}).to_string()),
    )
    .await
    .status
}

async fn grpc_check(address: &str, token: &str) -> Code {
    let mut client = OtpCheckServiceClient::connect(address.to_owned())
        .await
        .unwrap();
    let mut request = tonic::Request::new(CheckOtpRequest {
        user_id: user("split"),
        code: "123456".into(),
    });
    request.metadata_mut().insert(
        "authorization",
        MetadataValue::try_from(format!("Bearer {token}")).unwrap(),
    );
    client.check_otp(request).await.unwrap_err().code()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_check_is_served_on_the_internal_listeners_only() {
    let Some(app) = spawn_app_with(&[]).await else {
        return;
    };
    assert_ne!(app.internal_address, app.address);
    // A user token reaches the check on the internal listeners (and is
    // refused there for lack of the scope); the public ones do not serve it.
    let token = app.token(&user("caller"));
    assert_eq!(rest_check(&app, &app.address, &token).await, 404);
    assert_eq!(rest_check(&app, &app.internal_address, &token).await, 403);
    assert_eq!(
        grpc_check(&app.grpc_address, &token).await,
        Code::Unimplemented
    );
    assert_eq!(
        grpc_check(&app.internal_grpc_address, &token).await,
        Code::PermissionDenied
    );
    // The user's own calls stay public, and only public.
    let bearer = format!("Bearer {token}");
    for (address, status) in [(&app.address, 200), (&app.internal_address, 404)] {
        let answer = app
            .call_at(
                address,
                reqwest::Method::POST,
                crate::helpers::SEARCH,
                Some(&bearer),
                Some("{}".into()),
            )
            .await;
        assert_eq!(answer.status, status, "{address}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_internal_listeners_the_check_is_public() {
    let Some(app) = spawn_app_with(&[
        ("OTP__HTTP__INTERNAL_ADDR", ""),
        ("OTP__GRPC__INTERNAL_ADDR", ""),
    ])
    .await
    else {
        return;
    };
    assert_eq!(app.internal_address, app.address);
    let token = app.token(&user("caller"));
    assert_eq!(rest_check(&app, &app.address, &token).await, 403);
    assert_eq!(
        grpc_check(&app.grpc_address, &token).await,
        Code::PermissionDenied
    );
}

/// Counts the readiness checks that reach the database.
struct Counting {
    inner: Arc<dyn Readiness>,
    calls: Arc<AtomicUsize>,
}

#[async_trait::async_trait]
impl Readiness for Counting {
    async fn ready(&self) -> Result<(), application::NotReady> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.ready().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_readyz_flood_costs_one_database_check_per_second() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let issuer = spawn_issuer().await;
    let settings = settings_with(&db.url, &issuer.url, &[]);
    let mut ports = Ports::production(&settings).unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    ports.readiness = Arc::new(Counting {
        inner: ports.readiness,
        calls: calls.clone(),
    });
    let app = Application::start(&settings, ports).unwrap();
    let url = format!("http://127.0.0.1:{}/readyz", app.port());
    tokio::spawn(app.run_until_stopped());
    let client = reqwest::Client::new();

    let probes = (0..40).map(|_| client.get(&url).send());
    for answer in futures::future::join_all(probes).await {
        assert_eq!(answer.unwrap().status(), 200);
    }
    let flood = calls.load(Ordering::SeqCst);
    assert!(flood <= 2, "{flood} database checks for 40 probes");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(client.get(&url).send().await.unwrap().status(), 200);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        flood + 1,
        "a new period checks again"
    );
}
