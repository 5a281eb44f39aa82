//! `otp-service enroll` and `otp-service dev --enroll`: the QR code printed
//! on the terminal decodes back to the otpauth URL (with `rqrr` in process and
//! with `zbarimg` on a rendered image), and the whole enrolment runs through a
//! pseudo terminal (tmux) with a code from `oathtool`.

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bootstrap::enroll::{EnrollError, enroll, qr_text};
use bootstrap::{Settings, dev};
use secrecy::ExposeSecret;
use tokio::sync::mpsc;

use crate::interop::oathtool_with;

/// The otpauth URL `dev` issues for its user, given the secret.
fn dev_url(secret: &str) -> String {
    format!(
        "otpauth://totp/otp-service:dev@otp-service.localhost?algorithm=SHA1&digits=6&issuer=otp-service&period=30&secret={secret}"
    )
}

/// The modules of a half-block QR code (`true` = dark), read back from the
/// text between `Scan this QR code` and `Or enter the secret` (ANSI colour
/// codes, if any, removed; blank rows around it dropped).
fn modules_of(screen: &str) -> Vec<Vec<bool>> {
    let start = screen.find("Scan this QR code").expect("QR heading");
    let end = screen.find("Or enter the secret").expect("secret heading");
    let mut rows: Vec<Vec<bool>> = Vec::new();
    for line in screen[start..end].lines().skip(1) {
        let line = strip_ansi(line);
        let (mut top, mut bottom) = (Vec::new(), Vec::new());
        for c in line.chars() {
            let (t, b) = match c {
                ' ' => (false, false),
                '▀' => (true, false),
                '▄' => (false, true),
                '█' => (true, true),
                other => panic!("unexpected {other:?} in the QR code: {line:?}"),
            };
            top.push(t);
            bottom.push(b);
        }
        rows.push(top);
        rows.push(bottom);
    }
    while rows.first().is_some_and(|r| !r.contains(&true)) {
        rows.remove(0);
    }
    while rows.last().is_some_and(|r| !r.contains(&true)) {
        rows.pop();
    }
    assert!(rows.len() > 20, "no QR code in:\n{screen}");
    rows
}

fn strip_ansi(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `modules` as a greyscale image: `scale` pixels a module and an 8-module
/// white border; (width, height, pixels).
fn image_of(modules: &[Vec<bool>], scale: usize) -> (usize, usize, Vec<u8>) {
    let border = 8;
    let columns = modules.iter().map(Vec::len).max().unwrap_or(0);
    let (width, height) = (
        (columns + 2 * border) * scale,
        (modules.len() + 2 * border) * scale,
    );
    let mut pixels = vec![255u8; width * height];
    for (y, row) in modules.iter().enumerate() {
        for (x, dark) in row.iter().enumerate() {
            if *dark {
                for dy in 0..scale {
                    for dx in 0..scale {
                        let (px, py) = ((x + border) * scale + dx, (y + border) * scale + dy);
                        pixels[py * width + px] = 0;
                    }
                }
            }
        }
    }
    (width, height, pixels)
}

/// The one QR code in `modules`, decoded with `rqrr`.
fn decode_rqrr(modules: &[Vec<bool>]) -> String {
    let (width, height, pixels) = image_of(modules, 4);
    let mut image =
        rqrr::PreparedImage::prepare_from_greyscale(width, height, |x, y| pixels[y * width + x]);
    let grids = image.detect_grids();
    assert_eq!(grids.len(), 1, "one QR code");
    grids[0].decode().expect("a decodable QR code").1
}

/// Whether an external tool is here; in CI it must be.
fn have(tool: &str, package: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "{tool} is required in CI (apt-get install {package})"
        );
        eprintln!("SKIPPED: {tool} not installed (apt-get install {package})");
    }
    found
}

/// The QR code decoded by `zbarimg` (Debian `zbar-tools`) from a PGM image.
fn decode_zbarimg(modules: &[Vec<bool>]) -> String {
    let (width, height, pixels) = image_of(modules, 4);
    let path = std::env::temp_dir().join(format!(
        "otp-enroll-qr-{}-{}.pgm",
        std::process::id(),
        rand_suffix()
    ));
    let mut file = std::fs::File::create(&path).unwrap();
    write!(file, "P5\n{width} {height}\n255\n").unwrap();
    file.write_all(&pixels).unwrap();
    drop(file);
    let output = Command::new("zbarimg")
        .args(["--quiet", "--raw", "-Sdisable", "-Sqrcode.enable"])
        .arg(&path)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&path);
    assert!(
        output.status.success(),
        "zbarimg: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .trim_end()
        .to_owned()
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

#[test]
fn the_printed_qr_code_decodes_to_the_url() {
    let url = dev_url("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP");
    for ansi in [false, true] {
        let screen = format!(
            "Scan this QR code with your authenticator app:\n\n{}\n\nOr enter the secret by hand",
            qr_text(&url, ansi).unwrap()
        );
        assert_eq!(decode_rqrr(&modules_of(&screen)), url, "ansi: {ansi}");
    }
}

/// What `enroll` writes, readable while it runs.
#[derive(Clone, Default)]
struct Screen(Arc<Mutex<Vec<u8>>>);

impl Write for Screen {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Screen {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }

    async fn wait_for(&self, what: &str, count: usize) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = self.text();
            if text.matches(what).count() >= count {
                return text;
            }
            assert!(Instant::now() < deadline, "no {what:?} in:\n{text}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The secret printed under "Or enter the secret by hand".
fn secret_on(screen: &str) -> String {
    let at = screen
        .find("Or enter the secret by hand")
        .expect("secret heading");
    screen[at..]
        .lines()
        .nth(1)
        .expect("secret line")
        .trim()
        .to_owned()
}

fn dev_settings() -> Settings {
    let env = [
        ("OTP__HTTP__ADDR", "127.0.0.1:0"),
        ("OTP__GRPC__ADDR", "127.0.0.1:0"),
        ("OTP__HTTP__INTERNAL_ADDR", "127.0.0.1:0"),
        ("OTP__GRPC__INTERNAL_ADDR", "127.0.0.1:0"),
    ];
    Settings::load(
        None,
        env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enroll_adds_shows_the_qr_code_and_verifies_a_typed_code() {
    if oathtool_with(&["--version"]).is_none() {
        return;
    }
    let service = dev::start(&dev_settings()).unwrap();
    let base = format!("http://127.0.0.1:{}", service.app.port());
    let token = service.token.clone();
    tokio::spawn(service.app.run_until_stopped());

    let (codes, mut typed) = mpsc::channel(4);
    let screen = Screen::default();
    let run = {
        let (base, token, mut out) = (base.clone(), token.clone(), screen.clone());
        tokio::spawn(async move { enroll(&base, &token, &mut typed, &mut out, false).await })
    };
    let text = screen.wait_for("Code from the app:", 1).await;
    let secret = secret_on(&text);
    assert_eq!(decode_rqrr(&modules_of(&text)), dev_url(&secret));

    // A wrong code (5 digits can never match) asks again with the contract's message.
    codes.send("12345\n".into()).await.unwrap();
    let text = screen.wait_for("Code from the app:", 2).await;
    assert!(text.contains("Invalid code (EVENT-8isk2)"), "{text}");

    let code = oathtool_with(&["--totp", "-b", &secret]).unwrap();
    codes.send(format!("{code}\n")).await.unwrap();
    run.await.unwrap().unwrap();
    let text = screen.text();
    assert!(text.contains("Verified"), "{text}");
    assert!(text.contains("READY: 1"), "{text}");

    // The service agrees, and a second enrolment is refused with the way out.
    let listed: serde_json::Value = reqwest::Client::new()
        .post(format!("{base}/auth/v1/users/me/auth_factors/_search"))
        .bearer_auth(token.expose_secret())
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["result"][0]["state"], "AUTH_FACTOR_STATE_READY");
    let (_codes, mut typed) = mpsc::channel(1);
    let again = enroll(&base, &token, &mut typed, &mut Screen::default(), false).await;
    assert!(
        matches!(&again, Err(EnrollError::Refused { status: 409, message })
            if message.contains("COMMAND-do9se") && message.contains("DELETE")),
        "{again:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enroll_ends_when_input_ends_and_never_sends_a_token_in_clear_text() {
    let service = dev::start(&dev_settings()).unwrap();
    let base = format!("http://127.0.0.1:{}", service.app.port());
    let token = service.token.clone();
    tokio::spawn(service.app.run_until_stopped());

    let (codes, mut typed) = mpsc::channel::<String>(1);
    drop(codes);
    let ended = enroll(&base, &token, &mut typed, &mut Screen::default(), false).await;
    assert!(matches!(ended, Err(EnrollError::NoCode)), "{ended:?}");

    let (_codes, mut typed) = mpsc::channel(1);
    let refused = enroll(
        "http://otp.example.com",
        &token,
        &mut typed,
        &mut Screen::default(),
        false,
    )
    .await;
    assert!(matches!(refused, Err(EnrollError::Url(_))), "{refused:?}");
}

/// A tmux server of its own with one pane running a command; killed on drop.
struct Terminal {
    socket: String,
}

impl Terminal {
    fn start(command: &str) -> Self {
        let socket = format!("otp-enroll-{}-{}", std::process::id(), rand_suffix());
        let status = Command::new("tmux")
            .args([
                "-u",
                "-L",
                &socket,
                "new-session",
                "-d",
                "-x",
                "160",
                "-y",
                "200",
            ])
            .arg(format!("{command}; echo \"exit status $?\"; sleep 60"))
            .env("LANG", "C.UTF-8")
            .status()
            .unwrap();
        assert!(status.success(), "tmux did not start");
        Self { socket }
    }

    fn screen(&self) -> String {
        let output = Command::new("tmux")
            .args([
                "-u",
                "-L",
                &self.socket,
                "capture-pane",
                "-p",
                "-J",
                "-S",
                "-",
            ])
            .output()
            .unwrap();
        String::from_utf8(output.stdout).unwrap()
    }

    fn wait_for(&self, what: &str, count: usize) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let screen = self.screen();
            if screen.matches(what).count() >= count {
                return screen;
            }
            assert!(Instant::now() < deadline, "no {what:?} on:\n{screen}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn type_line(&self, text: &str) {
        let status = Command::new("tmux")
            .args(["-L", &self.socket, "send-keys", "-t", "0", "-l", text])
            .status()
            .unwrap();
        assert!(status.success());
        let status = Command::new("tmux")
            .args(["-L", &self.socket, "send-keys", "-t", "0", "Enter"])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .status();
    }
}

fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_otp-service"))
}

/// Scan, mistype, type the right code: what a person does with a phone.
fn enrol_on(terminal: &Terminal) -> String {
    let screen = terminal.wait_for("Code from the app:", 1);
    let secret = secret_on(&screen);
    let modules = modules_of(&screen);
    assert_eq!(decode_zbarimg(&modules), dev_url(&secret));
    assert_eq!(decode_rqrr(&modules), dev_url(&secret));

    terminal.type_line("12345");
    let screen = terminal.wait_for("Code from the app:", 2);
    assert!(screen.contains("Invalid code (EVENT-8isk2)"), "{screen}");
    let code = oathtool_with(&["--totp", "-b", &secret]).unwrap();
    terminal.type_line(&code);
    terminal.wait_for("READY: 1", 1)
}

fn pty_tools() -> bool {
    have("tmux", "tmux") && have("zbarimg", "zbar-tools") && have("oathtool", "oathtool")
}

#[test]
fn dev_enroll_runs_the_whole_enrolment_in_one_terminal() {
    if !pty_tools() {
        return;
    }
    let terminal = Terminal::start(&format!(
        "OTP__HTTP__ADDR=127.0.0.1:0 OTP__GRPC__ADDR=127.0.0.1:0 OTP__HTTP__INTERNAL_ADDR=127.0.0.1:0 OTP__GRPC__INTERNAL_ADDR=127.0.0.1:0 {} dev --enroll",
        binary().display()
    ));
    enrol_on(&terminal);
    // The line printed after the enrolment's last: the screen read once
    // READY showed may not hold it yet.
    let screen = terminal.wait_for("keeps running", 1);
    assert!(screen.contains("DEVELOPMENT MODE"), "{screen}");
    assert!(screen.contains("Verified"), "{screen}");
    assert!(
        !screen.contains("exit status"),
        "dev stopped after enrolling:\n{screen}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enroll_command_enrols_against_a_running_dev_service() {
    if !pty_tools() {
        return;
    }
    let service = dev::start(&dev_settings()).unwrap();
    let port = service.app.port();
    let token = service.token.clone();
    tokio::spawn(service.app.run_until_stopped());

    let command = format!(
        "TOKEN='{}' {} enroll --url http://127.0.0.1:{port}",
        token.expose_secret(),
        binary().display()
    );
    let screen = tokio::task::spawn_blocking(move || {
        let terminal = Terminal::start(&command);
        enrol_on(&terminal);
        terminal.wait_for("exit status", 1);
        terminal.screen()
    })
    .await
    .unwrap();
    assert!(screen.contains("Verified"), "{screen}");
    assert!(screen.contains("exit status 0"), "{screen}");
    assert!(
        !screen.contains(token.expose_secret()),
        "the token is never shown"
    );
}
