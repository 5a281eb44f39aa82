//! `otp-service enroll` and `otp-service dev --enroll`: a whole enrolment
//! with a real phone in one terminal. Over the service's REST API (the same
//! calls any client makes): Add, then the otpauth URL as a QR code of Unicode
//! half blocks plus the secret for manual entry, then codes read at a prompt
//! until one verifies, then List.
//!
//! A development helper: it sends the bearer token only over HTTPS or to a
//! loopback address, and it shows the new secret on the terminal (that is its
//! purpose; it never logs it).

use std::io::{self, BufRead, Write};
use std::net::IpAddr;

use qrcode::QrCode;
use qrcode::render::unicode::Dense1x2;
use reqwest::{StatusCode, Url};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// The REST paths under the base URL.
const FACTORS: &str = "auth/v1/users/me/auth_factors";

/// ANSI: black on bright white, so the code has its light quiet zone and dark
/// modules on dark and light terminal themes alike.
const BLACK_ON_WHITE: &str = "\u{1b}[30;107m";
/// ANSI: back to the terminal's colours.
const RESET: &str = "\u{1b}[0m";

/// Why an enrolment stopped.
#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    /// The base URL is not one the token may be sent to.
    #[error("{0}")]
    Url(String),
    /// The service could not be reached or answered something unreadable.
    #[error("cannot call {url}: {reason}")]
    Call {
        /// The URL called.
        url: String,
        /// What went wrong (never the token).
        reason: String,
    },
    /// The service refused the call (its contract error message).
    #[error("the service answered {status}: {message}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The contract's `message`, e.g. `Invalid code (EVENT-8isk2)`.
        message: String,
    },
    /// The input ended before a code verified.
    #[error("no code was entered; the factor stays unverified (it expires on its own)")]
    NoCode,
    /// The terminal could not be written.
    #[error("cannot write to the terminal: {0}")]
    Io(#[from] io::Error),
    /// The URL does not fit in a QR code.
    #[error("cannot draw the QR code: {0}")]
    Qr(String),
}

/// The otpauth URL as a QR code in Unicode half blocks (two modules per
/// character cell, `▀`/`▄`/`█` dark), with a 4-module quiet zone. With
/// `ansi`, every line is black on bright white, so the code scans whatever
/// the terminal's colours; without, the glyphs alone (dark = glyph).
///
/// # Errors
/// [`EnrollError::Qr`] when `url` is too long for any QR version.
pub fn qr_text(url: &str, ansi: bool) -> Result<String, EnrollError> {
    let code = QrCode::new(url.as_bytes()).map_err(|e| EnrollError::Qr(e.to_string()))?;
    let art = code
        .render::<Dense1x2>()
        .dark_color(Dense1x2::Dark)
        .light_color(Dense1x2::Light)
        .quiet_zone(true)
        .build();
    if !ansi {
        return Ok(art);
    }
    Ok(art
        .lines()
        .map(|line| format!("{BLACK_ON_WHITE}{line}{RESET}"))
        .collect::<Vec<_>>()
        .join("\n"))
}

/// The lines typed on standard input, read on a thread of their own (a
/// blocked read never holds up the runtime or its shutdown). The channel
/// closes at end of input.
#[must_use]
pub fn stdin_lines() -> mpsc::Receiver<String> {
    let (lines, receiver) = mpsc::channel(4);
    std::thread::spawn(move || {
        let stdin = io::stdin();
        let mut line = String::new();
        loop {
            line.clear();
            match stdin.lock().read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if lines.blocking_send(line.clone()).is_err() {
                        break;
                    }
                }
            }
        }
    });
    receiver
}

/// Checks that `base` is `https://…`, or `http://` to a loopback host, and
/// ends it with `/` so paths join under it.
///
/// # Errors
/// [`EnrollError::Url`] otherwise.
pub fn base_url(base: &str) -> Result<Url, EnrollError> {
    let mut url =
        Url::parse(base).map_err(|e| EnrollError::Url(format!("invalid URL {base:?}: {e}")))?;
    let loopback = url.host_str().is_some_and(|host| {
        host == "localhost"
            || host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    });
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        _ => {
            return Err(EnrollError::Url(format!(
                "refusing to send a token to {base:?}: use https://, or http:// to a loopback address"
            )));
        }
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

/// Runs one enrolment against the REST API at `base` with `token`: Add,
/// print the QR code (`ansi` as in [`qr_text`]) and the secret, then read
/// codes from `codes` until one verifies (a wrong or reused code asks again;
/// the service's lock after repeated wrong codes ends it), then print the
/// factors List answers.
///
/// # Errors
/// [`EnrollError`] when the URL is refused, a call fails, the service
/// refuses (e.g. a factor is already READY: `COMMAND-do9se`), or `codes`
/// ends first.
pub async fn enroll(
    base: &str,
    token: &SecretString,
    codes: &mut mpsc::Receiver<String>,
    out: &mut (dyn Write + Send),
    ansi: bool,
) -> Result<(), EnrollError> {
    let base = base_url(base)?;
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .map_err(|e| EnrollError::Call {
            url: base.to_string(),
            reason: e.to_string(),
        })?;
    let call = |path: &str, body: Value| {
        let client = client.clone();
        let url = base.join(&format!("{FACTORS}/{path}"));
        let token = token.clone();
        async move {
            let url = url.map_err(|e| EnrollError::Url(e.to_string()))?;
            post(&client, url, &token, &body).await
        }
    };

    let added = match call("otp", json!({})).await {
        Err(EnrollError::Refused {
            status: 409,
            message,
        }) => {
            return Err(EnrollError::Refused {
                status: 409,
                message: format!(
                    "{message}; remove it first: curl -X DELETE {base}{FACTORS}/otp -H \"Authorization: Bearer $TOKEN\""
                ),
            });
        }
        other => other?,
    };
    let url = text_field(&added, "url")?;
    let secret = SecretString::from(text_field(&added, "secret")?);
    writeln!(
        out,
        "Scan this QR code with your authenticator app:\n\n{}\n",
        qr_text(&url, ansi)?
    )?;
    writeln!(
        out,
        "Or enter the secret by hand (time-based, SHA-1, 6 digits, 30 s):\n  {}\n",
        secret.expose_secret()
    )?;

    loop {
        write!(out, "Code from the app: ")?;
        out.flush()?;
        let Some(line) = codes.recv().await else {
            writeln!(out)?;
            return Err(EnrollError::NoCode);
        };
        let code = line.trim();
        if code.is_empty() {
            continue;
        }
        match call("otp/_verify", json!({ "code": code })).await {
            Ok(_) => break,
            Err(EnrollError::Refused {
                status: 400,
                message,
            }) if message.contains("EVENT-8isk2") || message.contains("TOTP-Auw0a") => {
                writeln!(out, "{message}: try the app's next code.")?;
            }
            Err(error) => return Err(error),
        }
    }
    writeln!(out, "Verified: the authenticator app is set up.")?;

    let listed = call("_search", json!({})).await?;
    let ready = listed
        .get("result")
        .and_then(Value::as_array)
        .map_or(0, |factors| {
            factors
                .iter()
                .filter(|f| {
                    f.get("state").and_then(Value::as_str) == Some("AUTH_FACTOR_STATE_READY")
                })
                .count()
        });
    writeln!(out, "Factors the service lists as READY: {ready}")?;
    out.flush()?;
    Ok(())
}

/// One POST with the bearer token and a JSON body; the answer's JSON, or its
/// contract error as [`EnrollError::Refused`].
async fn post(
    client: &reqwest::Client,
    url: Url,
    token: &SecretString,
    body: &Value,
) -> Result<Value, EnrollError> {
    let failed = |reason: String| EnrollError::Call {
        url: url.to_string(),
        reason,
    };
    let answer = client
        .post(url.clone())
        .bearer_auth(token.expose_secret())
        .header(reqwest::header::ACCEPT, "application/json")
        .json(body)
        .send()
        .await
        .map_err(|e| failed(without_url(&e)))?;
    let status = answer.status();
    let json: Value = answer
        .json()
        .await
        .map_err(|e| failed(format!("{status}: {}", without_url(&e))))?;
    if status == StatusCode::OK {
        return Ok(json);
    }
    let message = json
        .get("message")
        .and_then(Value::as_str)
        .map_or_else(|| json.to_string(), str::to_owned);
    Err(EnrollError::Refused {
        status: status.as_u16(),
        message,
    })
}

/// A reqwest error's text and causes (e.g. `Connection refused`), without
/// the URL it repeats.
fn without_url(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    if let Some(url) = error.url() {
        text = text.replace(&format!(" for url ({url})"), "");
        text = text.replace(&format!(" ({url})"), "");
    }
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text = format!("{text}: {cause}");
        source = cause.source();
    }
    text
}

fn text_field(answer: &Value, name: &str) -> Result<String, EnrollError> {
    answer
        .get(name)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| EnrollError::Call {
            url: String::new(),
            reason: format!("the answer has no {name:?}"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_go_only_over_https_or_to_loopback() {
        for ok in [
            "http://127.0.0.1:8080",
            "http://localhost:8080/",
            "http://[::1]:8080",
            "https://otp.example.com/base",
        ] {
            assert!(base_url(ok).is_ok(), "{ok}");
        }
        for refused in [
            "http://otp.example.com",
            "http://10.0.0.1:8080",
            "ftp://127.0.0.1",
            "not a url",
        ] {
            assert!(
                matches!(base_url(refused), Err(EnrollError::Url(_))),
                "{refused}"
            );
        }
        assert_eq!(
            base_url("https://otp.example.com/base")
                .unwrap()
                .join("auth/v1")
                .unwrap()
                .as_str(),
            "https://otp.example.com/base/auth/v1"
        );
    }

    #[test]
    fn ansi_lines_are_black_on_white_and_reset() {
        let text = qr_text("otpauth://totp/x?secret=AAAA", true).unwrap();
        let plain = qr_text("otpauth://totp/x?secret=AAAA", false).unwrap();
        assert_eq!(text.lines().count(), plain.lines().count());
        for (line, bare) in text.lines().zip(plain.lines()) {
            assert_eq!(line, format!("{BLACK_ON_WHITE}{bare}{RESET}"));
        }
    }
}
