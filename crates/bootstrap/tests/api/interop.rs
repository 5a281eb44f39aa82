//! Codes from an independent implementation verify: `oathtool --totp -b`.

use std::process::Command;

use crate::helpers::{settled_now, spawn_app, user};

/// `oathtool` is installed by `.ci/run`; elsewhere the test says it skipped.
fn oathtool(secret: &str) -> Option<String> {
    match Command::new("oathtool")
        .args(["--totp", "-b", secret])
        .output()
    {
        Ok(output) if output.status.success() => {
            Some(String::from_utf8(output.stdout).unwrap().trim().to_owned())
        }
        Ok(output) => panic!(
            "oathtool failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ),
        Err(error) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "oathtool is required in CI: {error}"
            );
            eprintln!(
                "SKIPPED: oathtool not installed (apt-get install oathtool); interop test did not run"
            );
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_from_oathtool_verifies() {
    let Some(app) = spawn_app().await else { return };
    let token = app.token(&user("oathtool"));
    let secret = app.add(&token).await.body["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    settled_now().await;
    let Some(code) = oathtool(&secret) else {
        return;
    };
    assert_eq!(code.len(), 6);
    let answer = app.verify(&token, &code).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
}
