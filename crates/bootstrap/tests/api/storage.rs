//! Secrets at rest: a dump of the database holds no secret in any encoding.

use std::process::Command;

use data_encoding::{BASE32_NOPAD, BASE64, HEXLOWER};
use secrecy::ExposeSecret;

use crate::helpers::{spawn_app, user};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_secret_is_not_in_a_database_dump() {
    let Some(app) = spawn_app().await else { return };
    let sub = user("at-rest");
    let secret = app.add(&app.token(&sub)).await.body["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let raw = BASE32_NOPAD.decode(secret.as_bytes()).unwrap();

    let output = Command::new("pg_dump")
        .args([
            "--data-only",
            "--inserts",
            "--dbname",
            app.db.url.expose_secret(),
        ])
        .output()
        .expect("pg_dump is installed with PostgreSQL");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let dump = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(dump.contains(&sub), "the dump must hold the user's rows");
    assert!(
        dump.contains("otp_factors"),
        "the dump must hold the factor table"
    );
    for needle in [
        secret.clone(),
        secret.to_lowercase(),
        HEXLOWER.encode(&raw),
        BASE64.encode(&raw),
    ] {
        assert!(
            !dump.contains(&needle),
            "secret found in the dump as {needle}"
        );
    }
    assert!(
        !output
            .stdout
            .windows(raw.len())
            .any(|w| w == raw.as_slice()),
        "raw secret bytes in the dump"
    );
}
