//! `otp-service dev`: the printed token works against the in-memory API, and
//! the banner says what it must.

use bootstrap::{Settings, dev};
use secrecy::ExposeSecret;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_mode_serves_the_api_with_the_token_it_prints() {
    let env = [
        ("OTP__HTTP__ADDR", "127.0.0.1:0"),
        ("OTP__GRPC__ADDR", "127.0.0.1:0"),
        ("OTP__HTTP__INTERNAL_ADDR", "127.0.0.1:0"),
        ("OTP__GRPC__INTERNAL_ADDR", "127.0.0.1:0"),
    ];
    let settings = Settings::load(
        None,
        env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    )
    .unwrap();
    let service = dev::start(&settings).unwrap();
    let (port, grpc_port) = (service.app.port(), service.app.grpc_port());
    let banner = dev::banner(port, grpc_port, &service.token, &service.admin_token);
    assert!(
        banner.contains("DATA IS NOT KEPT")
            && banner.contains("NEVER USE THIS MODE TO SERVE PRODUCTION")
    );
    assert!(banner.contains(service.token.expose_secret()));
    assert!(banner.contains(&format!(
        "http://127.0.0.1:{port}/auth/v1/users/me/auth_factors/otp"
    )));
    tokio::spawn(service.app.run_until_stopped());

    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/auth/v1/users/me/auth_factors/otp");
    let added: serde_json::Value = client
        .post(&url)
        .bearer_auth(service.token.expose_secret())
        .header("Content-Type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(added["details"]["sequence"], "1", "{added}");
    assert_eq!(added["details"]["resourceOwner"], "dev-org");
    assert!(
        added["url"]
            .as_str()
            .unwrap()
            .contains(":dev@otp-service.localhost?")
    );
    assert!(banner.contains(service.admin_token.expose_secret()));
    // The printed administrator token administers dev-org's users.
    let removed: serde_json::Value = client
        .delete(format!(
            "http://127.0.0.1:{port}/management/v1/users/dev-user/auth_factors/otp"
        ))
        .bearer_auth(service.admin_token.expose_secret())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(removed["details"]["sequence"], "2", "{removed}");
    let denied = client
        .delete(format!(
            "http://127.0.0.1:{port}/management/v1/users/dev-admin/auth_factors/otp"
        ))
        .bearer_auth(service.token.expose_secret())
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 403);
    let foreign = client
        .post(&url)
        .bearer_auth(crate::helpers::sign(&crate::helpers::claims(
            "https://x",
            "y",
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(
        foreign.status(),
        401,
        "the dev issuer trusts only its own tokens"
    );
}

fn dev_settings(extra: &[(&str, &str)]) -> Settings {
    let env = [
        ("OTP__HTTP__ADDR", "127.0.0.1:0"),
        ("OTP__GRPC__ADDR", "127.0.0.1:0"),
        ("OTP__HTTP__INTERNAL_ADDR", "127.0.0.1:0"),
        ("OTP__GRPC__INTERNAL_ADDR", "127.0.0.1:0"),
    ];
    Settings::load(
        None,
        env.iter()
            .chain(extra)
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_mode_refuses_non_loopback_addresses_without_the_flag() {
    for (key, value) in [
        ("OTP__HTTP__ADDR", "0.0.0.0:0"),
        ("OTP__GRPC__ADDR", "0.0.0.0:0"),
        ("OTP__HTTP__INTERNAL_ADDR", "0.0.0.0:0"),
        ("OTP__GRPC__INTERNAL_ADDR", "0.0.0.0:0"),
    ] {
        let settings = dev_settings(&[(key, value)]);
        let error = dev::start(&settings).unwrap_err().to_string();
        assert!(
            error.contains("--allow-non-loopback") && error.contains(key),
            "{key}={value}: {error}"
        );
        // The explicit flag serves it.
        let service = dev::start_with(&settings, true).unwrap();
        drop(service);
    }
    // Loopback needs no flag.
    assert!(dev::start(&dev_settings(&[])).is_ok());
}
