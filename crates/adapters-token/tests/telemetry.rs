//! The spans and counter events the verifiers emit for the observability
//! wiring, and that no token or secret ever reaches a field.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failure is a panic"
)]

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use adapters_token::{IntrospectionVerifier, JwtVerifier};
use application::TokenVerifier;
use secrecy::SecretString;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;

use adapters_token::testing::idp::{CLIENT_ID, CLIENT_SECRET, Expect, Idp, active, basic};
use adapters_token::testing::*;

const OPAQUE: &str = "bT7YdcRJx3Mw-7rUqUEn1AC5gkCjPGTmRtH3JmUVxPALmUbbjL0hq6Ia3KyQ8mBp";

/// `name=value` pairs of one span or event.
#[derive(Debug, Clone, Default)]
struct Fields(Vec<(String, String)>);

impl Fields {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let mut text = String::new();
        write!(text, "{value:?}").unwrap();
        self.0
            .push((field.name().to_owned(), text.trim_matches('"').to_owned()));
    }
}

#[derive(Default)]
struct Seen {
    spans: HashMap<u64, (String, Fields)>,
    /// Events: target and fields.
    events: Vec<(String, Fields)>,
}

/// Records every span (with later-recorded fields) and event.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Seen>>);

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, _: Context<'_, S>) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        self.0
            .lock()
            .unwrap()
            .spans
            .insert(id.into_u64(), (attrs.metadata().name().to_owned(), fields));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _: Context<'_, S>) {
        if let Some((_, fields)) = self.0.lock().unwrap().spans.get_mut(&id.into_u64()) {
            values.record(fields);
        }
    }

    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        fields
            .0
            .push(("level".to_owned(), event.metadata().level().to_string()));
        self.0
            .lock()
            .unwrap()
            .events
            .push((event.metadata().target().to_owned(), fields));
    }
}

impl Capture {
    fn spans(&self, name: &str) -> Vec<Fields> {
        self.0
            .lock()
            .unwrap()
            .spans
            .values()
            .filter(|(n, _)| n == name)
            .map(|(_, fields)| fields.clone())
            .collect()
    }

    /// The `outcome`s of metric events carrying `counter`, in order.
    fn counted(&self, counter: &str) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .events
            .iter()
            .filter(|(target, fields)| target == "otp.metrics" && fields.get(counter) == Some("1"))
            .filter_map(|(_, fields)| fields.get("outcome").map(str::to_owned))
            .collect()
    }

    /// Every recorded field value, for leak checks.
    fn all_text(&self) -> String {
        let seen = self.0.lock().unwrap();
        let spans = seen.spans.values().map(|(_, fields)| fields);
        let events = seen.events.iter().map(|(_, fields)| fields);
        spans
            .chain(events)
            .flat_map(|fields| fields.0.iter())
            .map(|(name, value)| format!("{name}={value}\n"))
            .collect()
    }
}

/// Runs `test` on a current-thread runtime with `capture` as the subscriber.
fn captured<F: std::future::Future<Output = ()>>(capture: &Capture, test: impl FnOnce() -> F) {
    let subscriber = tracing_subscriber::registry().with(capture.clone());
    tracing::subscriber::with_default(subscriber, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(test());
    });
}

#[test]
fn introspection_spans_and_counters() {
    let capture = Capture::default();
    let idp = Idp::start(Expect::Basic);
    idp.answer(OPAQUE, &active(&idp.issuer()));
    idp.respond("broken", 500, "{}");
    let mut settings = idp.settings(basic());
    settings.url = None;
    let verifier = IntrospectionVerifier::new(settings).unwrap();
    captured(&capture, || async {
        for (token, accepted) in [
            (OPAQUE, true),
            (OPAQUE, true),
            ("inactive-token", false),
            ("broken", false),
        ] {
            let result = verifier.verify(&SecretString::from(token)).await;
            assert_eq!(result.is_ok(), accepted, "{token}: {result:?}");
        }
    });

    assert_eq!(
        capture.counted("monotonic_counter.otp.token.introspections"),
        ["active", "cached", "inactive", "error"]
    );
    let spans = capture.spans("token.introspect");
    assert_eq!(spans.len(), 3, "a cached answer makes no request");
    let mut statuses: Vec<&str> = spans
        .iter()
        .map(|span| span.get("http.response.status_code").unwrap())
        .collect();
    statuses.sort_unstable();
    assert_eq!(statuses, ["200", "200", "500"]);
    for span in &spans {
        assert_eq!(span.get("otel.kind"), Some("client"));
        assert_eq!(span.get("http.request.method"), Some("POST"));
        assert_eq!(span.get("server.address"), Some("127.0.0.1"));
    }
    // Discovery of the endpoint, once.
    let fetches = capture.spans("token.jwks_fetch");
    assert_eq!(fetches.len(), 1);
    assert_eq!(fetches[0].get("server.address"), Some("127.0.0.1"));

    let text = capture.all_text();
    assert!(!text.contains(OPAQUE), "{text}");
    assert!(!text.contains("inactive-token"), "{text}");
    assert!(!text.contains(CLIENT_SECRET), "{text}");
}

#[test]
fn key_set_fetches_are_spans_and_counted() {
    let capture = Capture::default();
    let server = Server::issuer_with(&jwks(&[jwk(RSA1_JWK, "k1", Some("RS256"))]));
    let verifier = JwtVerifier::new(server.settings()).unwrap();
    let token = sign(Some("k1"), &claims(&server.issuer()));
    let down = {
        let mut settings = server.settings();
        settings.jwks_url = Some(format!("{}/jwks?sig=secret-query", dead_url()));
        JwtVerifier::new(settings).unwrap()
    };
    captured(&capture, || async {
        verifier
            .verify(&SecretString::from(token.as_str()))
            .await
            .unwrap();
        down.verify(&SecretString::from(token.as_str()))
            .await
            .unwrap_err();
    });

    assert_eq!(
        capture.counted("monotonic_counter.otp.token_keys.refreshes"),
        ["ok", "error"]
    );
    // Discovery and JWKS for the first verifier, JWKS for the second.
    let fetches = capture.spans("token.jwks_fetch");
    assert_eq!(fetches.len(), 3);
    for span in &fetches {
        assert_eq!(span.get("otel.kind"), Some("client"));
        assert_eq!(span.get("server.address"), Some("127.0.0.1"));
    }
    let text = capture.all_text();
    assert!(!text.contains("secret-query"), "{text}");
    assert!(!text.contains(token.split('.').nth(2).unwrap()), "{text}");
}

#[test]
fn refused_client_credentials_are_logged_as_an_error() {
    let capture = Capture::default();
    let idp = Idp::start(Expect::Basic);
    let wrong = adapters_token::ClientAuth::Basic {
        client_id: CLIENT_ID.into(),
        client_secret: SecretString::from("wrong-secret-value"),
    };
    let verifier = IntrospectionVerifier::new(idp.settings(wrong)).unwrap();
    captured(&capture, || async {
        let result = verifier.verify(&SecretString::from(OPAQUE)).await;
        assert!(matches!(
            result,
            Err(application::TokenError::Unavailable(_))
        ));
    });
    let seen = capture.0.lock().unwrap();
    let errors: Vec<&Fields> = seen
        .events
        .iter()
        .map(|(_, fields)| fields)
        .filter(|fields| fields.get("level") == Some("ERROR"))
        .collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0]
            .get("message")
            .unwrap()
            .contains("client credentials")
    );
    assert_eq!(errors[0].get("client_id"), Some(CLIENT_ID));
    assert_eq!(errors[0].get("status"), Some("401"));
    drop(seen);
    let text = capture.all_text();
    assert!(!text.contains("wrong-secret-value"), "{text}");
    assert!(!text.contains(OPAQUE), "{text}");
}
