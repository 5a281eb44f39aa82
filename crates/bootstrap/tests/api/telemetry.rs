//! OpenTelemetry from the real binary into an in-test OTLP receiver (gRPC
//! and HTTP/protobuf): the span tree of a call, the caller's trace
//! continued, semantic-convention attributes, metrics, log lines with trace
//! ids, no secret anywhere, and no slowdown when the collector is down.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use crate::helpers::{claims, code_at, settled_now, sign, spawn_issuer, user};
use crate::processes::{free_port, serve_url};
use adapters_postgres::testing::TestDatabase;

/// A metric point's attributes, as text.
type Attributes = Vec<(String, String)>;

/// A metric point: name, unit, attributes and value (a histogram's count).
type Point = (String, String, Attributes, f64);

/// What the receiver got.
#[derive(Default)]
struct Received {
    traces: Vec<ExportTraceServiceRequest>,
    metrics: Vec<ExportMetricsServiceRequest>,
}

#[derive(Clone, Default)]
struct Receiver(Arc<Mutex<Received>>);

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.lock().unwrap().traces.push(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        self.0.lock().unwrap().metrics.push(request.into_inner());
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

impl Receiver {
    /// An OTLP/gRPC receiver; answers its endpoint.
    async fn grpc(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let server = tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(self.clone()))
            .add_service(MetricsServiceServer::new(self.clone()))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener));
        tokio::spawn(server);
        endpoint
    }

    /// An OTLP/HTTP (protobuf) receiver; answers its endpoint.
    fn http(&self) -> String {
        use actix_web::{App, HttpResponse, HttpServer, web};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let receiver = self.clone();
        let server = HttpServer::new(move || {
            let (traces, metrics) = (receiver.clone(), receiver.clone());
            App::new()
                .route(
                    "/v1/traces",
                    web::post().to(move |body: web::Bytes| {
                        let receiver = traces.clone();
                        async move {
                            let request = ExportTraceServiceRequest::decode(body).unwrap();
                            receiver.0.lock().unwrap().traces.push(request);
                            HttpResponse::Ok()
                                .content_type("application/x-protobuf")
                                .body(ExportTraceServiceResponse::default().encode_to_vec())
                        }
                    }),
                )
                .route(
                    "/v1/metrics",
                    web::post().to(move |body: web::Bytes| {
                        let receiver = metrics.clone();
                        async move {
                            let request = ExportMetricsServiceRequest::decode(body).unwrap();
                            receiver.0.lock().unwrap().metrics.push(request);
                            HttpResponse::Ok()
                                .content_type("application/x-protobuf")
                                .body(ExportMetricsServiceResponse::default().encode_to_vec())
                        }
                    }),
                )
        })
        .workers(1)
        .listen(listener)
        .unwrap()
        .run();
        tokio::spawn(server);
        endpoint
    }

    fn spans(&self) -> Vec<Span> {
        self.0
            .lock()
            .unwrap()
            .traces
            .iter()
            .flat_map(|request| &request.resource_spans)
            .flat_map(|resource| &resource.scope_spans)
            .flat_map(|scope| scope.spans.clone())
            .collect()
    }

    /// Every metric point as `(name, unit, attributes, value)`; histograms
    /// give their count.
    fn points(&self) -> Vec<Point> {
        let received = self.0.lock().unwrap();
        let mut points = Vec::new();
        for metric in received
            .metrics
            .iter()
            .flat_map(|request| &request.resource_metrics)
            .flat_map(|resource| &resource.scope_metrics)
            .flat_map(|scope| &scope.metrics)
        {
            let mut push = |attributes: &[KeyValue], value: f64| {
                points.push((
                    metric.name.clone(),
                    metric.unit.clone(),
                    attributes
                        .iter()
                        .map(|kv| (kv.key.clone(), text(kv)))
                        .collect(),
                    value,
                ));
            };
            match &metric.data {
                Some(Data::Sum(sum)) => {
                    for point in &sum.data_points {
                        push(&point.attributes, number(point.value.as_ref()));
                    }
                }
                Some(Data::Gauge(gauge)) => {
                    for point in &gauge.data_points {
                        push(&point.attributes, number(point.value.as_ref()));
                    }
                }
                Some(Data::Histogram(histogram)) => {
                    for point in &histogram.data_points {
                        push(&point.attributes, point.count as f64);
                    }
                }
                _ => {}
            }
        }
        points
    }

    /// Everything received, as text, for secret hunting.
    fn dump(&self) -> String {
        let received = self.0.lock().unwrap();
        format!("{:?}{:?}", received.traces, received.metrics)
    }
}

fn number(
    value: Option<&opentelemetry_proto::tonic::metrics::v1::number_data_point::Value>,
) -> f64 {
    use opentelemetry_proto::tonic::metrics::v1::number_data_point::Value as N;
    match value {
        Some(N::AsInt(n)) => *n as f64,
        Some(N::AsDouble(n)) => *n,
        None => f64::NAN,
    }
}

fn text(kv: &KeyValue) -> String {
    match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(Any::StringValue(s)) => s.clone(),
        Some(Any::IntValue(n)) => n.to_string(),
        Some(Any::BoolValue(b)) => b.to_string(),
        Some(Any::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

fn attribute(span: &Span, key: &str) -> Option<String> {
    span.attributes.iter().find(|kv| kv.key == key).map(text)
}

fn named<'a>(spans: &'a [Span], name: &str) -> Vec<&'a Span> {
    spans.iter().filter(|span| span.name == name).collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The test database's URL with a password (trust auth ignores it), so
/// the test can prove the password never shows.
fn with_password(db: &TestDatabase, password: &str) -> String {
    db.url
        .expose_secret()
        .replacen("postgres@", &format!("postgres:{password}@"), 1)
}

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";

async fn wait_for(mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !ready() {
        assert!(Instant::now() < deadline, "telemetry did not arrive");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What one run of the binary sent to the OTLP/gRPC receiver and wrote to
/// its log: an Add continuing the caller's trace, a wrong and a right
/// Verify, an unknown path and method, gRPC-web calls to an unknown service
/// and method, and a gRPC List. Each test below checks one thing of it.
struct Capture {
    spans: Vec<Span>,
    points: Vec<Point>,
    resource: String,
    logs: String,
    dump: String,
    secret: String,
    token: String,
    password: &'static str,
    right: String,
    wrong: &'static str,
}

static CAPTURE: tokio::sync::OnceCell<Option<Capture>> = tokio::sync::OnceCell::const_new();

/// The one run, made by whichever test asks first (`None` without a
/// database, where the tests pass vacuously as the other API tests do).
async fn captured() -> Option<&'static Capture> {
    CAPTURE.get_or_init(run_over_otlp_grpc).await.as_ref()
}

async fn run_over_otlp_grpc() -> Option<Capture> {
    let db = TestDatabase::create().await?;
    let issuer = spawn_issuer().await;
    let receiver = Receiver::default();
    let endpoint = receiver.grpc().await;
    let password = "db-pw-never-shown-7f3a";
    let mut process = serve_url(
        &with_password(&db, password),
        &issuer,
        &[
            ("OTEL_SDK_DISABLED", "false"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_SERVICE_NAME", "otp-service-under-test"),
            ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test"),
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "500"),
            ("OTP__LOG__FILTER", "info"),
        ],
    )
    .await;
    let client = reqwest::Client::new();
    let sub = user("otel");
    let token = sign(&claims(&issuer.url, &sub));
    let bearer = format!("Bearer {token}");
    let otp = format!("{}/auth/v1/users/me/auth_factors/otp", process.address);

    // Add, continuing the caller's trace.
    let added: Value = client
        .post(&otp)
        .header("Authorization", &bearer)
        .header("traceparent", format!("00-{TRACE_ID}-{PARENT_ID}-01"))
        .body("{}")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let secret = added["secret"].as_str().unwrap().to_owned();
    // A wrong code, then the right one.
    let now = settled_now().await;
    let right = code_at(&secret, now);
    let wrong = if right == "000000" {
        "111111"
    } else {
        "000000"
    };
    for code in [wrong, right.as_str()] {
        client
            .post(format!("{otp}/_verify"))
            .header("Authorization", &bearer)
            .body(json!({ "code": code }).to_string())
            .send()
            .await
            .unwrap();
    }
    // An unknown path: its span must not be named after the path.
    client
        .post(format!("{}/no/such/path/12345", process.address))
        .send()
        .await
        .unwrap();
    // A method actix accepts but the conventions do not name: `_OTHER`.
    client
        .request(reqwest::Method::from_bytes(b"PROPFIND").unwrap(), &otp)
        .send()
        .await
        .unwrap();
    // gRPC-web calls to a service this port does not serve, and to a method
    // a served service does not have: neither names a span or a series.
    for path in [
        "/made.up.Service/Method",
        "/zitadel.auth.v1.AuthService/NoSuchMethod",
    ] {
        client
            .post(format!("{}{path}", process.grpc_address))
            .header("content-type", "application/grpc-web+proto")
            .header("x-grpc-web", "1")
            .body(vec![0_u8, 0, 0, 0, 0])
            .send()
            .await
            .unwrap();
    }
    // A gRPC call.
    {
        use adapters_grpc::proto::zitadel::auth::v1::ListMyAuthFactorsRequest;
        use adapters_grpc::proto::zitadel::auth::v1::auth_service_client::AuthServiceClient;
        let mut grpc = AuthServiceClient::connect(process.grpc_address.clone())
            .await
            .unwrap();
        let mut request = tonic::Request::new(ListMyAuthFactorsRequest {});
        request
            .metadata_mut()
            .insert("authorization", bearer.parse().unwrap());
        request.metadata_mut().insert(
            "traceparent",
            format!("00-{TRACE_ID}-{PARENT_ID}-01").parse().unwrap(),
        );
        grpc.list_my_auth_factors(request).await.unwrap();
    }

    wait_for(|| {
        let spans = receiver.spans();
        !named(&spans, "zitadel.auth.v1.AuthService/ListMyAuthFactors").is_empty()
            && named(&spans, "POST /auth/v1/users/me/auth_factors/otp/_verify").len() == 2
            && !named(&spans, "db.transaction").is_empty()
    })
    .await;
    wait_for(|| {
        receiver
            .points()
            .iter()
            .any(|(name, ..)| name == "otp.verifications")
    })
    .await;
    let status = process.stop().await;
    assert_eq!(status.code(), Some(0));
    let resource = format!(
        "{:?}",
        receiver.0.lock().unwrap().traces[0].resource_spans[0].resource
    );
    Some(Capture {
        spans: receiver.spans(),
        points: receiver.points(),
        resource,
        logs: process.logs(),
        dump: receiver.dump(),
        secret,
        token,
        password,
        right,
        wrong,
    })
}

/// The REST server span continues the caller's trace, with the use case and the database transaction below it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_rest_server_span_continues_the_callers_trace_over_the_use_case_and_the_database() {
    let Some(run) = captured().await else {
        return;
    };
    let spans = &run.spans;
    // The REST server span continues the caller's trace...
    let add = named(spans, "POST /auth/v1/users/me/auth_factors/otp");
    assert_eq!(
        add.len(),
        1,
        "{:?}",
        spans.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    let add = add[0];
    assert_eq!(hex(&add.trace_id), TRACE_ID);
    assert_eq!(hex(&add.parent_span_id), PARENT_ID);
    assert_eq!(add.kind, 2, "SERVER");
    for (key, value) in [
        ("http.request.method", "POST"),
        ("http.route", "/auth/v1/users/me/auth_factors/otp"),
        ("http.response.status_code", "200"),
        ("url.path", "/auth/v1/users/me/auth_factors/otp"),
        ("url.scheme", "http"),
    ] {
        assert_eq!(attribute(add, key).as_deref(), Some(value), "{key}");
    }
    // ... with the use case and the database transaction below it.
    let use_case = spans
        .iter()
        .find(|s| s.name == "AddOtp" && s.parent_span_id == add.span_id)
        .expect("AddOtp under the server span");
    let db_span = spans
        .iter()
        .find(|s| s.name == "db.transaction" && s.parent_span_id == use_case.span_id)
        .expect("db.transaction under AddOtp");
    assert_eq!(
        attribute(db_span, "db.system.name").as_deref(),
        Some("postgresql")
    );
    assert_eq!(
        attribute(db_span, "db.operation.name").as_deref(),
        Some("change")
    );
    assert_eq!(db_span.kind, 3, "CLIENT");
}

/// A refused Verify carries the contract's error id and its HTTP status.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refused_verify_carries_the_contracts_error_id() {
    let Some(run) = captured().await else {
        return;
    };
    let spans = &run.spans;
    // The refused verify carries the contract's error id.
    let verifies = named(spans, "POST /auth/v1/users/me/auth_factors/otp/_verify");
    assert!(
        verifies.iter().any(
            |s| attribute(s, "otp.error_id").as_deref() == Some("EVENT-8isk2")
                && attribute(s, "http.response.status_code").as_deref() == Some("400")
        ),
        "{verifies:?}"
    );
}

/// Unknown paths, methods, gRPC services and gRPC methods name no span after themselves.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unknown_paths_and_methods_name_no_span() {
    let Some(run) = captured().await else {
        return;
    };
    let spans = &run.spans;
    // The unknown path: named by its method only.
    let unknown: Vec<_> = spans
        .iter()
        .filter(|s| attribute(s, "url.path").as_deref() == Some("/no/such/path/12345"))
        .collect();
    assert_eq!(unknown.len(), 1);
    assert_eq!(unknown[0].name, "POST");
    assert_eq!(attribute(unknown[0], "http.route"), None);
    // An unknown method: `_OTHER`, the original kept as its own attribute.
    let other = named(spans, "_OTHER /auth/v1/users/me/auth_factors/otp");
    assert_eq!(
        other.len(),
        1,
        "{:?}",
        spans.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    assert_eq!(
        attribute(other[0], "http.request.method").as_deref(),
        Some("_OTHER")
    );
    assert_eq!(
        attribute(other[0], "http.request.method_original").as_deref(),
        Some("PROPFIND")
    );
    // Unknown gRPC services and methods do not name spans.
    let invented: Vec<_> = spans
        .iter()
        .filter(|s| s.name.contains("made.up") || s.name.contains("NoSuchMethod"))
        .map(|s| (&s.name, &s.attributes))
        .collect();
    assert!(invented.is_empty(), "{invented:?}");
    let unimplemented: Vec<_> = spans
        .iter()
        .filter(|s| attribute(s, "rpc.grpc.status_code").as_deref() == Some("12"))
        .map(|s| s.name.as_str())
        .collect();
    assert!(unimplemented.contains(&"grpc"), "{unimplemented:?}");
    assert!(
        unimplemented.contains(&"zitadel.auth.v1.AuthService/_OTHER"),
        "{unimplemented:?}"
    );
}

/// gRPC server spans follow the RPC conventions and continue the caller's trace.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn grpc_spans_follow_the_rpc_conventions_and_continue_the_trace() {
    let Some(run) = captured().await else {
        return;
    };
    let spans = &run.spans;
    // gRPC per the RPC conventions, also continuing the caller's trace.
    let grpc = named(spans, "zitadel.auth.v1.AuthService/ListMyAuthFactors")[0];
    assert_eq!(hex(&grpc.trace_id), TRACE_ID);
    for (key, value) in [
        ("rpc.system", "grpc"),
        ("rpc.service", "zitadel.auth.v1.AuthService"),
        ("rpc.method", "ListMyAuthFactors"),
        ("rpc.grpc.status_code", "0"),
    ] {
        assert_eq!(attribute(grpc, key).as_deref(), Some(value), "{key}");
    }
}

/// The resource names the service and its attributes as configured by OTEL_* variables.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_resource_names_the_service_as_configured() {
    let Some(run) = captured().await else {
        return;
    };
    // The resource names the service as configured.
    let resource = &run.resource;
    assert!(resource.contains("otp-service-under-test"), "{resource}");
    assert!(resource.contains("deployment.environment"), "{resource}");
}

/// HTTP, RPC, use-case and pool metrics arrive with plausible values.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_count_the_calls_with_plausible_values() {
    let Some(run) = captured().await else {
        return;
    };
    // Metrics, with plausible values.
    let points = &run.points;
    let total = |name: &str, filter: &dyn Fn(&Attributes) -> bool| -> f64 {
        // Cumulative: each export holds the totals so far, so per attribute
        // set the largest value is the total; then add the sets up.
        let mut by_set: std::collections::BTreeMap<String, f64> = Default::default();
        for (_, _, attributes, value) in points
            .iter()
            .filter(|(n, _, attributes, _)| n == name && filter(attributes))
        {
            let entry = by_set.entry(format!("{attributes:?}")).or_insert(0.0);
            *entry = entry.max(*value);
        }
        by_set.values().sum()
    };
    let has = |attributes: &[(String, String)], key: &str, value: &str| {
        attributes.iter().any(|(k, v)| k == key && v == value)
    };
    assert!(
        total("http.server.request.duration", &|a| has(
            a,
            "http.route",
            "/auth/v1/users/me/auth_factors/otp/_verify"
        )) >= 2.0
    );
    assert!(
        points
            .iter()
            .any(|(n, unit, ..)| n == "http.server.request.duration" && unit == "s")
    );
    assert!(
        total("rpc.server.duration", &|a| has(
            a,
            "rpc.method",
            "ListMyAuthFactors"
        )) >= 1.0
    );
    assert_eq!(total("otp.enrollments", &|a| has(a, "outcome", "ok")), 1.0);
    assert_eq!(
        total("otp.verifications", &|a| has(a, "outcome", "invalid_code")),
        1.0
    );
    assert_eq!(
        total("otp.verifications", &|a| has(a, "outcome", "ok")),
        1.0
    );
    assert!(
        points
            .iter()
            .any(|(n, ..)| n == "db.client.connection.count")
    );
    assert!(
        points
            .iter()
            .any(|(n, ..)| n == "http.server.active_requests")
    );
}

/// Metric series carry only the conventions' names for methods, never a client's invention.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metric_series_carry_only_the_conventions_names_for_methods() {
    let Some(run) = captured().await else {
        return;
    };
    // Metric series carry only the conventions' names for methods.
    for (name, _, attributes, _) in &run.points {
        for (key, value) in attributes {
            assert!(
                !value.contains("PROPFIND")
                    && !value.contains("made.up")
                    && !value.contains("NoSuchMethod"),
                "{name}: {key}={value}"
            );
        }
    }
}

/// Log lines are JSON, with the trace ids of the span they were written in.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn log_lines_are_json_with_the_trace_ids_of_their_span() {
    let Some(run) = captured().await else {
        return;
    };
    // Log lines: JSON, with the trace ids of the span they were written in.
    let logs = &run.logs;
    let audit: Vec<Value> = logs
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["target"] == "audit")
        .collect();
    let added_line = audit
        .iter()
        .find(|line| line["event"] == "otp.added")
        .expect("the audit line of the add");
    assert_eq!(added_line["trace_id"], TRACE_ID, "{added_line}");
    assert_eq!(added_line["span_id"].as_str().map(str::len), Some(16));
}

/// No TOTP secret, code, token or database password in any span, metric or log line.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_secret_code_token_or_password_reaches_telemetry_or_logs() {
    let Some(run) = captured().await else {
        return;
    };
    // No secret, code, token or database password in any of it.
    let everything = format!("{}{}", run.dump, run.logs);
    for (what, needle) in [
        ("the TOTP secret", run.secret.as_str()),
        ("the token", run.token.as_str()),
        ("the database password", run.password),
    ] {
        assert!(
            !everything.contains(needle),
            "{what} leaked into telemetry or logs"
        );
    }
    for code in [run.right.as_str(), run.wrong] {
        assert!(
            !contains_code(&everything, code),
            "the code {code} leaked into telemetry or logs"
        );
    }
}

/// Whether `code` stands in `text` on its own: not as six digits inside a
/// longer number (nanosecond timestamps, durations), nor as the fraction
/// of a timestamp (`…:30.123456Z`), where a random code turns up by chance.
fn contains_code(text: &str, code: &str) -> bool {
    text.match_indices(code).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + code.len()..].chars().next();
        !before.is_some_and(|c| c.is_ascii_digit() || c == '.')
            && !after.is_some_and(|c| c.is_ascii_digit())
    })
}

#[test]
fn a_code_counts_only_where_it_stands_alone() {
    assert!(contains_code(r#"{"code":"123456"}"#, "123456"));
    assert!(contains_code("code=123456 rejected", "123456"));
    assert!(!contains_code(
        "time_unix_nano: 1795926926123456789",
        "123456"
    ));
    assert!(!contains_code("2026-11-29T04:35:30.123456Z", "123456"));
    assert!(!contains_code("sum: 0.0123456", "123456"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn http_protobuf_export_with_a_parent_based_ratio_sampler() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let issuer = spawn_issuer().await;
    let receiver = Receiver::default();
    let endpoint = receiver.http();
    // Ratio 0: new traces are never sampled, a sampled caller's always are.
    let mut process = serve_url(
        db.url.expose_secret(),
        &issuer,
        &[
            ("OTEL_SDK_DISABLED", "false"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.0"),
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "500"),
        ],
    )
    .await;
    let client = reqwest::Client::new();
    let add = |sub: &str, traceparent: Option<String>| {
        let token = sign(&claims(&issuer.url, sub));
        let mut request = client
            .post(format!(
                "{}/auth/v1/users/me/auth_factors/otp",
                process.address
            ))
            .header("Authorization", format!("Bearer {token}"))
            .body("{}");
        if let Some(traceparent) = traceparent {
            request = request.header("traceparent", traceparent);
        }
        request.send()
    };
    add(&user("otel-unsampled"), None).await.unwrap();
    add(
        &user("otel-sampled"),
        Some(format!("00-{TRACE_ID}-{PARENT_ID}-01")),
    )
    .await
    .unwrap();
    wait_for(|| !named(&receiver.spans(), "AddOtp").is_empty()).await;
    wait_for(|| {
        receiver
            .points()
            .iter()
            .any(|(n, ..)| n == "otp.enrollments")
    })
    .await;
    assert_eq!(process.stop().await.code(), Some(0));
    let spans = receiver.spans();
    let servers = named(&spans, "POST /auth/v1/users/me/auth_factors/otp");
    assert_eq!(
        servers.len(),
        1,
        "only the sampled caller's trace is exported"
    );
    assert_eq!(hex(&servers[0].trace_id), TRACE_ID);
    assert!(
        named(&spans, "AddOtp")
            .iter()
            .all(|s| s.parent_span_id == servers[0].span_id)
    );
    let resource = format!(
        "{:?}",
        receiver.0.lock().unwrap().traces[0].resource_spans[0].resource
    );
    assert!(
        resource.contains("\"otp-service\""),
        "default service name: {resource}"
    );
    // Metrics do not depend on sampling: both adds are counted.
    let enrollments: f64 = receiver
        .points()
        .iter()
        .filter(|(n, ..)| n == "otp.enrollments")
        .map(|(.., value)| *value)
        .fold(0.0, f64::max);
    assert_eq!(enrollments, 2.0);
}

/// Median latency (ms) of `n` List calls.
async fn median_latency(address: &str, token: &str, n: usize) -> f64 {
    let client = reqwest::Client::new();
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        let answer = client
            .post(format!("{address}/auth/v1/users/me/auth_factors/_search"))
            .header("Authorization", format!("Bearer {token}"))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert!(answer.status().is_success());
        samples.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    samples.sort_by(f64::total_cmp);
    samples[n / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unreachable_collector_does_not_slow_requests() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let issuer = spawn_issuer().await;
    let token = sign(&claims(&issuer.url, &user("otel-down")));
    let down = format!("http://127.0.0.1:{}", free_port());
    // Baseline in the same run: OpenTelemetry off.
    let baseline = serve_url(db.url.expose_secret(), &issuer, &[]).await;
    median_latency(&baseline.address, &token, 10).await;
    let off = median_latency(&baseline.address, &token, 40).await;
    drop(baseline);
    for protocol in ["grpc", "http/protobuf"] {
        let mut process = serve_url(
            db.url.expose_secret(),
            &issuer,
            &[
                ("OTEL_SDK_DISABLED", "false"),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", &down),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
                ("OTEL_BSP_SCHEDULE_DELAY", "100"),
                ("OTEL_METRIC_EXPORT_INTERVAL", "200"),
            ],
        )
        .await;
        median_latency(&process.address, &token, 10).await;
        let on = median_latency(&process.address, &token, 40).await;
        // Generous: the machine is shared; a blocked export would cost
        // seconds (the exporter's timeout), not milliseconds.
        assert!(
            on < off * 3.0 + 20.0,
            "{protocol}: median {on:.1} ms with the collector down vs {off:.1} ms without telemetry"
        );
        // And shutdown gives up on the dead collector within its bound.
        let stopping = Instant::now();
        assert_eq!(process.stop().await.code(), Some(0));
        assert!(
            stopping.elapsed() < Duration::from_secs(25),
            "{protocol}: {:?}",
            stopping.elapsed()
        );
    }
}

/// Under SERIALIZABLE (a database whose default isolation it is, as on a
/// distributed engine), parallel Adds of one user and of many users all
/// succeed, and the retries they needed are counted as serialization
/// failures on the exported `otp.store.retries`; a known state's use is
/// exported too (`otp.store.known_states`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn under_serializable_parallel_adds_all_succeed_and_their_retries_are_counted() {
    let Some(db) = TestDatabase::create_serializable().await else {
        return;
    };
    let isolation = db.query("SHOW default_transaction_isolation").await;
    assert_eq!(isolation, ["serializable"]);
    let issuer = spawn_issuer().await;
    let receiver = Receiver::default();
    let endpoint = receiver.grpc().await;
    let mut process = serve_url(
        db.url.expose_secret(),
        &issuer,
        &[
            ("OTEL_SDK_DISABLED", "false"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_TRACES_EXPORTER", "none"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "300"),
        ],
    )
    .await;
    let client = reqwest::Client::new();
    let otp = format!("{}/auth/v1/users/me/auth_factors/otp", process.address);
    let add = |token: String| {
        let request = client
            .post(&otp)
            .header("Authorization", format!("Bearer {token}"))
            .body("{}")
            .send();
        async move {
            let response = request.await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };
    // 32 Adds of one user: each commit invalidates the others' snapshots.
    let one = sign(&claims(&issuer.url, &user("serializable-one")));
    let answers = futures::future::join_all((0..32).map(|_| add(one.clone()))).await;
    // 32 Adds of 32 users: first writes into the same index pages.
    let many = (0..32).map(|i| {
        add(sign(&claims(
            &issuer.url,
            &user(&format!("serializable-{i}")),
        )))
    });
    let answers: Vec<_> = answers
        .into_iter()
        .chain(futures::future::join_all(many).await)
        .collect();
    for (status, body) in &answers {
        assert_eq!(*status, 200, "{body}");
    }
    let sequences = db
        .query(
            "SELECT (count(*) || ' ' || max(sequence))::text FROM otp_events \
             WHERE user_id LIKE 'serializable-one-%'",
        )
        .await;
    assert_eq!(sequences, ["32 32"], "no gaps, no lost Add");
    // Every answered Add is stored: a write rolled back at its commit must
    // never have been answered 200.
    let factors = db
        .query("SELECT count(*)::text FROM otp_factors WHERE user_id LIKE 'serializable-%'")
        .await;
    assert_eq!(factors, ["33"]);
    // A new user's second Add, alone, is decided on the state this
    // replica wrote by the first: counted as a known state applied.
    let again = sign(&claims(&issuer.url, &user("serializable-again")));
    for _ in 0..2 {
        let (status, body) = add(again.clone()).await;
        assert_eq!(status, 200, "{body}");
    }

    let counted = |metric: &str, key: &str, value: &str| {
        receiver
            .points()
            .iter()
            .filter(|(name, _, attributes, _)| {
                name == metric && attributes.iter().any(|(k, v)| k == key && v == value)
            })
            .map(|(.., value)| *value)
            .fold(0.0, f64::max)
    };
    let retried = |reason: &str| counted("otp.store.retries", "reason", reason);
    wait_for(|| retried("serialization") > 0.0).await;
    wait_for(|| counted("otp.store.known_states", "outcome", "applied") > 0.0).await;
    assert_eq!(process.stop().await.code(), Some(0));
    println!(
        "retries under SERIALIZABLE: serialization {}, lost_race {}, deadlock {}",
        retried("serialization"),
        retried("lost_race"),
        retried("deadlock")
    );
}
