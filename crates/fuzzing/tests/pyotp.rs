//! Property test: every otpauth URL the builder makes (`domain::otpauth_url`)
//! is read by pyotp (`pyotp.parse_uri`, an independent implementation) as
//! the same issuer, account, secret, algorithm, digits and period.
//!
//! Issuer and account are any 1 to 40 characters (control characters,
//! `%`, `?`, `#`, `&`, `+`, `:`, any script, emoji). pyotp before 2.10
//! percent-decoded the whole URL before splitting it, and read such labels
//! wrongly however they were encoded: CI pins the release it checks against.
//!
//! pyotp refuses periods above 120 s, which `totp.period` allows (up to
//! 300): for those the property is that pyotp refuses the URL (saying
//! why), never reads other parameters from it.
//!
//! Needs python3 with pyotp: `OTP_PYTHON` names the interpreter (.ci/run
//! sets it to its venv's, pyotp pinned); without pyotp the test fails in CI
//! and prints one `SKIPPED:` line elsewhere.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Mutex;

use domain::{TotpAlgorithm, TotpKey, TotpParams, TotpSecret, otpauth_url};
use proptest::prelude::*;
use secrecy::ExposeSecret;
use serde_json::Value;

/// Reads one URL a line, answers one JSON line: what pyotp parsed.
const READER: &str = r#"
import json, sys, pyotp
for line in sys.stdin:
    try:
        otp = pyotp.parse_uri(line.rstrip("\n"))
        out = {"issuer": otp.issuer, "name": otp.name, "secret": otp.secret,
               "digits": otp.digits, "digest": otp.digest().name,
               "interval": getattr(otp, "interval", None)}
    except Exception as error:
        out = {"error": repr(error)}
    print(json.dumps(out), flush=True)
"#;

/// pyotp (2.10 on) refuses longer periods; the service allows up to 300 s.
const PYOTP_MAX_PERIOD: u32 = 120;

struct Pyotp {
    _child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
}

fn python() -> String {
    std::env::var("OTP_PYTHON").unwrap_or_else(|_| "python3".into())
}

fn start() -> Option<Pyotp> {
    let available = Command::new(python())
        .args(["-c", "import pyotp"])
        .output()
        .is_ok_and(|out| out.status.success());
    if !available {
        assert!(
            std::env::var_os("CI").is_none(),
            "pyotp is not installed for {} (CI installs it: .ci/run)",
            python()
        );
        eprintln!("SKIPPED: no pyotp for {} (set OTP_PYTHON)", python());
        return None;
    }
    let mut child = Command::new(python())
        .args(["-c", READER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let input = child.stdin.take().unwrap();
    let output = BufReader::new(child.stdout.take().unwrap());
    Some(Pyotp {
        _child: child,
        input,
        output,
    })
}

fn parse(pyotp: &mut Pyotp, url: &str) -> Value {
    writeln!(pyotp.input, "{url}").unwrap();
    let mut line = String::new();
    pyotp.output.read_line(&mut line).unwrap();
    serde_json::from_str(&line).unwrap()
}

fn label() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::collection::vec(any::<char>(), 1..40).prop_map(String::from_iter),
        "[ -~]{1,40}",
    ]
}

fn case() -> impl Strategy<Value = (String, String, TotpKey)> {
    (
        label(),
        label(),
        prop::collection::vec(any::<u8>(), 16..=64),
        prop::sample::select(vec![
            TotpAlgorithm::Sha1,
            TotpAlgorithm::Sha256,
            TotpAlgorithm::Sha512,
        ]),
        prop::sample::select(vec![6u8, 8]),
        10u32..=300,
    )
        .prop_map(|(issuer, account, secret, algorithm, digits, period)| {
            let params = TotpParams::new(algorithm, digits, period, 1).unwrap();
            let key = TotpKey::new(TotpSecret::from_bytes(secret).unwrap(), params);
            (issuer, account, key)
        })
}

#[test]
fn pyotp_reads_every_url_the_builder_makes_as_built() {
    let Some(pyotp) = start() else { return };
    let pyotp = Mutex::new(pyotp);
    let config = ProptestConfig {
        cases: 2000,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |((issuer, account, key) in case())| {
        let url = otpauth_url(&issuer, &account, &key);
        let parsed = parse(&mut pyotp.lock().unwrap(), url.expose_secret());
        if key.params().period() > PYOTP_MAX_PERIOD {
            // Refused, never read as something else.
            let error = parsed["error"].as_str().unwrap_or_default();
            prop_assert!(error.contains("interval"), "{}: {}", url.expose_secret(), parsed);
            return Ok(());
        }
        prop_assert!(parsed.get("error").is_none(), "{}: {}", url.expose_secret(), parsed);
        prop_assert_eq!(parsed["issuer"].as_str(), Some(issuer.as_str()), "{}", url.expose_secret());
        prop_assert_eq!(parsed["name"].as_str(), Some(account.as_str()), "{}", url.expose_secret());
        let secret = key.secret().to_base32();
        prop_assert_eq!(parsed["secret"].as_str(), Some(secret.expose_secret()));
        prop_assert_eq!(parsed["digits"].as_u64(), Some(u64::from(key.params().digits())));
        prop_assert_eq!(parsed["interval"].as_u64(), Some(u64::from(key.params().period())));
        let digest = key.params().algorithm().as_str().to_ascii_lowercase();
        prop_assert_eq!(parsed["digest"].as_str(), Some(digest.as_str()));
    });
}

#[test]
fn pyotp_reads_the_contract_example() {
    let Some(mut pyotp) = start() else { return };
    let key = TotpKey::new(
        TotpSecret::from_base32("TJOPWSDYILLHXFV4MLKNNJOWFG7VSDCK").unwrap(),
        TotpParams::default(),
    );
    let url = otpauth_url("ZITADEL", "gigi@acme.zitadel.cloud", &key);
    let parsed = parse(&mut pyotp, url.expose_secret());
    assert_eq!(parsed["issuer"], "ZITADEL");
    assert_eq!(parsed["name"], "gigi@acme.zitadel.cloud");
    assert_eq!(parsed["secret"], "TJOPWSDYILLHXFV4MLKNNJOWFG7VSDCK");
}
