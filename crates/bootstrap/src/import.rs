//! `otp-service import --file users.jsonl`: the bulk migration of TOTP
//! secrets exported by another system, one user per line, each imported
//! READY (the secrets are on the users' phones already).
//!
//! A line is a JSON object (`docs/operations.md`, "Bulk import"):
//! `{"user_id", "org_id"?, "login_name"?, "secret", "algorithm"?, "digits"?,
//! "period"?}`, or `{"user_id", "org_id"?, "login_name"?, "otpauth":
//! "otpauth://totp/..."}`, or a bare `otpauth://totp/...` URL whose label's
//! account is the user id. Blank lines and lines starting with `#` are
//! passed over.
//!
//! The file is read line by line with a few changes in flight
//! (`--concurrency`), so memory stays bounded whatever its length. A line is
//! *imported*, *skipped* (the user's READY factor already holds this secret
//! and these parameters: an earlier run imported it) or *refused* (with its
//! number and reason, never the secret). Running it again is idempotent and
//! resumes an interrupted run; `--from-line N` starts at line N.

use std::borrow::Cow;
use std::fmt;
use std::io::{BufRead, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};
use tokio::task::JoinSet;

use application::{ApplicationError, BulkImported, ImportOtp, OtpFactors, StatusCode};
use domain::{FactorError, OrgId, UserId};

/// Longest line accepted, in bytes (a line is a few hundred).
pub const MAX_LINE_BYTES: usize = 64 * 1024;
/// Refused lines the summary lists by number (every one is reported as it
/// happens).
const SUMMARY_REFUSALS: usize = 100;
/// Lines between two progress lines when the output is no terminal.
const PLAIN_PROGRESS_EVERY: u64 = 10_000;

/// How the run goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportOptions {
    /// The first line to import (1-based); earlier lines are read and passed over.
    pub from_line: u64,
    /// Lines imported at once (at least 1).
    pub concurrency: usize,
}

impl Default for ImportOptions {
    fn default() -> Self {
        Self {
            from_line: 1,
            concurrency: 4,
        }
    }
}

/// What the run came to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportSummary {
    /// Lines read, passed-over ones included.
    pub lines: u64,
    /// Factors stored.
    pub imported: u64,
    /// Users whose factor already held the line's secret.
    pub skipped: u64,
    /// Lines refused.
    pub refused: u64,
    /// The first refused lines: number and reason.
    pub refusals: Vec<(u64, String)>,
}

impl fmt::Display for ImportSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "done: {} line(s) read: imported {}, skipped {}, refused {}",
            self.lines, self.imported, self.skipped, self.refused
        )?;
        for (line, reason) in &self.refusals {
            write!(f, "\n  line {line}: {reason}")?;
        }
        let unlisted = self.refused.saturating_sub(self.refusals.len() as u64);
        if unlisted > 0 {
            write!(
                f,
                "\n  … and {unlisted} more refused line(s), reported above"
            )?;
        }
        Ok(())
    }
}

/// Where the run reports: a line per skipped or refused line, and progress.
pub trait Progress {
    /// A note about one line (never a secret).
    fn note(&mut self, text: &str);
    /// `bytes` of the input consumed, and the counts so far.
    fn advanced(&mut self, bytes: u64, summary: &ImportSummary);
    /// The run is over.
    fn finish(&mut self);
}

/// Progress as plain lines on `out` (a log, a pipe): every 10,000 lines.
#[derive(Debug)]
pub struct PlainProgress<W: Write> {
    out: W,
    last_reported: u64,
}

impl<W: Write> PlainProgress<W> {
    /// Reports to `out`.
    pub const fn new(out: W) -> Self {
        Self {
            out,
            last_reported: 0,
        }
    }
}

impl<W: Write> Progress for PlainProgress<W> {
    fn note(&mut self, text: &str) {
        let _ = writeln!(self.out, "{text}");
    }

    fn advanced(&mut self, _bytes: u64, summary: &ImportSummary) {
        if summary.lines >= self.last_reported + PLAIN_PROGRESS_EVERY {
            self.last_reported = summary.lines;
            let _ = writeln!(
                self.out,
                "progress: {} line(s) read: imported {}, skipped {}, refused {}",
                summary.lines, summary.imported, summary.skipped, summary.refused
            );
        }
    }

    fn finish(&mut self) {
        let _ = self.out.flush();
    }
}

/// Progress as a bar on a terminal (indicatif), by bytes of the file.
#[derive(Debug)]
pub struct BarProgress {
    bar: indicatif::ProgressBar,
    last_drawn: Instant,
}

impl BarProgress {
    /// A bar over `total_bytes`.
    #[must_use]
    pub fn new(total_bytes: u64) -> Self {
        let bar = indicatif::ProgressBar::new(total_bytes);
        let style = indicatif::ProgressStyle::with_template(
            "{elapsed_precise} [{bar:30}] {percent:>3}% {msg} (eta {eta})",
        )
        .map(|style| style.progress_chars("=> "))
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
        bar.set_style(style);
        Self {
            bar,
            last_drawn: Instant::now(),
        }
    }
}

impl Progress for BarProgress {
    fn note(&mut self, text: &str) {
        self.bar.println(text);
    }

    fn advanced(&mut self, bytes: u64, summary: &ImportSummary) {
        if self.last_drawn.elapsed() >= Duration::from_millis(100) {
            self.last_drawn = Instant::now();
            self.bar.set_position(bytes);
            self.bar.set_message(format!(
                "{} lines: {} imported, {} skipped, {} refused",
                summary.lines, summary.imported, summary.skipped, summary.refused
            ));
        }
    }

    fn finish(&mut self) {
        self.bar.finish_and_clear();
    }
}

/// What one line asks for.
struct Line {
    user: UserId,
    org: Option<OrgId>,
    import: ImportOtp,
}

/// What one line came to.
enum Outcome {
    Imported,
    Skipped,
    Refused(String),
}

/// Imports every line of `input` from `options.from_line` on, reporting to
/// `progress`, and answers the counts.
///
/// # Errors
/// Only when `input` cannot be read (what was imported so far stays; run
/// it again to resume). Refused lines are counted, not errors.
pub async fn import_lines<R: BufRead>(
    factors: &OtpFactors,
    mut input: R,
    options: ImportOptions,
    progress: &mut dyn Progress,
) -> std::io::Result<ImportSummary> {
    let mut summary = ImportSummary::default();
    let mut in_flight: JoinSet<(u64, Outcome)> = JoinSet::new();
    let concurrency = options.concurrency.max(1);
    let mut buffer = Vec::with_capacity(1024);
    let mut consumed = 0_u64;
    loop {
        buffer.clear();
        let read = input.read_until(b'\n', &mut buffer)?;
        if read == 0 {
            break;
        }
        consumed += read as u64;
        summary.lines += 1;
        let number = summary.lines;
        if number < options.from_line {
            continue;
        }
        match parse_line(&buffer) {
            Ok(None) => {}
            Ok(Some(line)) => {
                let factors = factors.clone();
                in_flight.spawn(async move { (number, import_one(&factors, line).await) });
                while in_flight.len() >= concurrency {
                    if let Some(done) = in_flight.join_next().await {
                        record(done, &mut summary, progress);
                    }
                }
            }
            Err(reason) => record(
                Ok((number, Outcome::Refused(reason))),
                &mut summary,
                progress,
            ),
        }
        buffer.iter_mut().for_each(|byte| *byte = 0);
        progress.advanced(consumed, &summary);
    }
    while let Some(done) = in_flight.join_next().await {
        record(done, &mut summary, progress);
    }
    progress.advanced(consumed, &summary);
    progress.finish();
    Ok(summary)
}

fn record(
    done: Result<(u64, Outcome), tokio::task::JoinError>,
    summary: &mut ImportSummary,
    progress: &mut dyn Progress,
) {
    let (number, outcome) = match done {
        Ok(done) => done,
        Err(error) => {
            // A line's task cannot panic on input; count it rather than stop.
            tracing::error!(%error, "an import task failed");
            (0, Outcome::Refused("internal error (see the log)".into()))
        }
    };
    match outcome {
        Outcome::Imported => summary.imported += 1,
        Outcome::Skipped => {
            summary.skipped += 1;
            progress.note(&format!(
                "line {number}: skipped: the user's factor already holds this secret"
            ));
        }
        Outcome::Refused(reason) => {
            summary.refused += 1;
            progress.note(&format!("line {number}: refused: {reason}"));
            if summary.refusals.len() < SUMMARY_REFUSALS {
                summary.refusals.push((number, reason));
            }
        }
    }
}

async fn import_one(factors: &OtpFactors, line: Line) -> Outcome {
    match factors
        .import_bulk(&line.user, line.org, &line.import)
        .await
    {
        Ok(BulkImported::Imported(_)) => Outcome::Imported,
        Ok(BulkImported::AlreadyImported) => Outcome::Skipped,
        Err(ApplicationError::Factor(FactorError::AlreadySetUp)) => Outcome::Refused(format!(
            "user {}: another factor is already set up (remove it first to import this one)",
            line.user
        )),
        Err(error) => Outcome::Refused(match error.code() {
            StatusCode::Unavailable | StatusCode::DeadlineExceeded => {
                format!(
                    "user {}: {error}; run the import again to resume",
                    line.user
                )
            }
            _ => format!("user {}: {error}", line.user),
        }),
    }
}

/// One line: `None` for a blank or `#` line, else the import it asks for,
/// or why it is refused (never quoting the secret).
fn parse_line(raw: &[u8]) -> Result<Option<Line>, String> {
    if raw.len() > MAX_LINE_BYTES {
        return Err(format!("longer than {MAX_LINE_BYTES} bytes"));
    }
    let text = std::str::from_utf8(raw).map_err(|_| "not UTF-8".to_owned())?;
    let text = text.trim();
    if text.is_empty() || text.starts_with('#') {
        return Ok(None);
    }
    if text.starts_with("otpauth:") {
        let (account, import) = parse_otpauth(text)?;
        let user = UserId::parse(account).map_err(|error| format!("the URL's account: {error}"))?;
        return Ok(Some(Line {
            user,
            org: None,
            import,
        }));
    }
    let object: Map<String, Value> = serde_json::from_str(text).map_err(|error| {
        format!(
            "not a JSON object or an otpauth URL (at column {})",
            error.column()
        )
    })?;
    let user = UserId::parse(string(&object, "user_id")?.unwrap_or_default())
        .map_err(|error| format!("user_id: {error}"))?;
    let org = string(&object, "org_id")?
        .map(OrgId::parse)
        .transpose()
        .map_err(|error| format!("org_id: {error}"))?;
    // The login name is what the other system showed; this service keys
    // factors by user id, so it is only checked to be text.
    string(&object, "login_name")?;
    let import = match (object.get("secret"), object.get("otpauth")) {
        (Some(_), Some(_)) => return Err("both secret and otpauth: give one".into()),
        (None, None) => return Err("neither secret nor otpauth".into()),
        (None, Some(_)) => {
            let url = SecretString::from(string(&object, "otpauth")?.unwrap_or_default());
            parse_otpauth(url.expose_secret())?.1
        }
        (Some(_), None) => ImportOtp {
            secret: SecretString::from(string(&object, "secret")?.unwrap_or_default()),
            algorithm: string(&object, "algorithm")?.unwrap_or_default(),
            digits: number(&object, "digits")?,
            period: number(&object, "period")?,
            ready: true,
        },
    };
    Ok(Some(Line { user, org, import }))
}

/// A text field (`None` when absent or `null`), never echoing the value.
fn string(object: &Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(_) => Err(format!("{key} must be a string")),
    }
}

/// A small whole number (`0` when absent), as a number or a decimal string.
fn number(object: &Map<String, Value>, key: &str) -> Result<u32, String> {
    let invalid = || format!("{key} must be a whole number");
    match object.get(key) {
        None | Some(Value::Null) => Ok(0),
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(invalid),
        Some(Value::String(text)) => text.trim().parse().map_err(|_| invalid()),
        Some(_) => Err(invalid()),
    }
}

/// An `otpauth://totp/Issuer:account?secret=…&algorithm=…&digits=…&period=…`
/// URL (Key Uri Format): the label's account and the import it asks for.
fn parse_otpauth(text: &str) -> Result<(String, ImportOtp), String> {
    let url = url::Url::parse(text).map_err(|_| "not a valid otpauth URL".to_owned())?;
    if url.scheme() != "otpauth" {
        return Err("not an otpauth URL".into());
    }
    match url.host_str() {
        Some(kind) if kind.eq_ignore_ascii_case("totp") => {}
        Some(kind) if kind.eq_ignore_ascii_case("hotp") => {
            return Err("an HOTP (counter) URL: only TOTP can be imported".into());
        }
        _ => return Err("not an otpauth://totp/ URL".into()),
    }
    let label = percent_decode(url.path().trim_start_matches('/'));
    let account = label
        .split_once(':')
        .map_or(label.as_str(), |(_, account)| account)
        .trim()
        .to_owned();
    let mut secret = None;
    let mut import = ImportOtp {
        secret: SecretString::from(String::new()),
        algorithm: String::new(),
        digits: 0,
        period: 0,
        ready: true,
    };
    for (key, value) in url.query_pairs() {
        match key.as_ref() {
            "secret" => secret = Some(SecretString::from(value.into_owned())),
            "algorithm" => import.algorithm = value.into_owned(),
            "digits" => {
                import.digits = value
                    .parse()
                    .map_err(|_| "the URL's digits must be a whole number".to_owned())?;
            }
            "period" => {
                import.period = value
                    .parse()
                    .map_err(|_| "the URL's period must be a whole number".to_owned())?;
            }
            _ => {}
        }
    }
    import.secret = secret.ok_or_else(|| "the URL has no secret".to_owned())?;
    Ok((account, import))
}

fn percent_decode(text: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", text.replace('+', "%2B")).as_bytes())
        .next()
        .map_or_else(|| text.to_owned(), |(_, value)| value.into_owned())
}

/// Why `otp-service import` could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file could not be opened or read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Some lines were refused: the exit code is non-zero.
    #[error("{0} line(s) refused (see above); fix them and run the import again")]
    Refused(u64),
    /// The service could not be set up (settings, keys, database).
    #[error("{0}")]
    Setup(Cow<'static, str>),
}

/// `otp-service import`: the use cases over PostgreSQL and the keyring, as
/// `serve` builds them, and `path` imported with a bar on a terminal
/// (stderr) or plain progress lines otherwise; the summary goes to stdout.
///
/// # Errors
/// [`ImportError`]: setup, reading, or refused lines.
pub async fn import_file(
    settings: &crate::Settings,
    path: &std::path::Path,
    options: ImportOptions,
) -> Result<ImportSummary, ImportError> {
    use std::io::IsTerminal as _;
    let setup = |error: &dyn fmt::Display| ImportError::Setup(Cow::Owned(error.to_string()));
    let file = std::fs::File::open(path).map_err(|source| ImportError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let total = file.metadata().map(|meta| meta.len()).unwrap_or(0);
    let totp = settings.use_case_settings().map_err(|e| setup(&e))?;
    let cipher = Arc::new(crate::app::keyring(settings).map_err(|e| setup(&e))?);
    let store = Arc::new(
        adapters_postgres::PgFactorStore::connect(&settings.database.pg_settings())
            .map_err(|e| setup(&e))?,
    );
    let factors = OtpFactors::new(
        store,
        cipher,
        Arc::new(adapters_crypto::OsSecrets),
        Arc::new(adapters_clock::SystemClock),
        totp,
    );
    let reader = std::io::BufReader::with_capacity(256 * 1024, file);
    let mut progress: Box<dyn Progress> = if std::io::stderr().is_terminal() {
        Box::new(BarProgress::new(total))
    } else {
        Box::new(PlainProgress::new(std::io::stdout()))
    };
    let summary = import_lines(&factors, reader, options, progress.as_mut())
        .await
        .map_err(|source| ImportError::Read {
            path: path.display().to_string(),
            source,
        })?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    impl fmt::Debug for Line {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("Line")
                .field("user", &self.user)
                .finish_non_exhaustive()
        }
    }

    fn parsed(text: &str) -> Line {
        parse_line(text.as_bytes()).unwrap().unwrap()
    }

    #[test]
    fn lines_of_each_shape_parse() {
        let line = parsed(
            r#"{"user_id":"u1","org_id":"o1","login_name":"a@b","secret":"JBSWY3DPEHPK3PXP","algorithm":"SHA256","digits":8,"period":"60"}"#,
        );
        assert_eq!(line.user.as_str(), "u1");
        assert_eq!(line.org.as_ref().map(OrgId::as_str), Some("o1"));
        assert_eq!(line.import.secret.expose_secret(), "JBSWY3DPEHPK3PXP");
        assert_eq!(
            (
                line.import.algorithm.as_str(),
                line.import.digits,
                line.import.period
            ),
            ("SHA256", 8, 60)
        );
        assert!(line.import.ready);

        let url = parsed(
            r#"{"user_id":"u2","otpauth":"otpauth://totp/ACME:alice%40acme.test?secret=JBSWY3DPEHPK3PXP&issuer=ACME&digits=8&period=45&algorithm=SHA512"}"#,
        );
        assert_eq!(url.user.as_str(), "u2");
        assert_eq!((url.import.digits, url.import.period), (8, 45));
        assert_eq!(url.import.algorithm, "SHA512");

        let bare =
            parsed("otpauth://totp/ACME:alice%40acme.test?secret=JBSWY3DPEHPK3PXP&issuer=ACME\n");
        assert_eq!(bare.user.as_str(), "alice@acme.test");
        assert_eq!(bare.import.secret.expose_secret(), "JBSWY3DPEHPK3PXP");
        let unlabelled = parsed("otpauth://totp/bob?secret=JBSWY3DPEHPK3PXP");
        assert_eq!(unlabelled.user.as_str(), "bob");

        assert!(parse_line(b"   \n").unwrap().is_none());
        assert!(parse_line(b"# a comment\n").unwrap().is_none());
    }

    #[test]
    fn bad_lines_are_refused_without_their_secret() {
        let secret = "JBSWY3DPEHPK3PXPSECRETLY";
        for (line, reason) in [
            (
                format!(r#"{{"user_id":"u","secret":{secret:?}"#),
                "not a JSON object",
            ),
            (format!(r#"["{secret}"]"#), "not a JSON object"),
            (format!(r#"{{"secret":"{secret}"}}"#), "user_id"),
            (
                format!(r#"{{"user_id":7,"secret":"{secret}"}}"#),
                "user_id must be a string",
            ),
            (
                r#"{"user_id":"u"}"#.to_owned(),
                "neither secret nor otpauth",
            ),
            (
                format!(
                    r#"{{"user_id":"u","secret":"{secret}","otpauth":"otpauth://totp/x?secret={secret}"}}"#
                ),
                "both",
            ),
            (
                format!(r#"{{"user_id":"u","secret":"{secret}","digits":"{secret}"}}"#),
                "digits must be a whole number",
            ),
            (
                format!("otpauth://hotp/x?secret={secret}&counter=1"),
                "HOTP",
            ),
            ("otpauth://totp/x?issuer=A".to_owned(), "no secret"),
            (format!("otpauth://totp/?secret={secret}"), "account"),
        ] {
            let refused = parse_line(line.as_bytes()).err().unwrap_or_default();
            assert!(refused.contains(reason), "{line}: {refused}");
            assert!(!refused.contains("SECRETLY"), "{refused}");
        }
        let long = vec![b'a'; MAX_LINE_BYTES + 1];
        assert!(parse_line(&long).unwrap_err().contains("longer"));
    }

    /// The in-memory store, counting the changes in flight at once.
    #[derive(Debug, Default)]
    struct Counted {
        inner: adapters_memory::MemoryFactorStore,
        now: std::sync::atomic::AtomicUsize,
        most: std::sync::atomic::AtomicUsize,
    }

    #[async_trait::async_trait]
    impl application::FactorStore for Counted {
        async fn find(
            &self,
            user: &UserId,
        ) -> Result<Option<domain::OtpFactor>, application::StoreError> {
            self.inner.find(user).await
        }

        async fn recovery_codes(
            &self,
            user: &UserId,
        ) -> Result<Option<domain::RecoveryCodes>, application::StoreError> {
            self.inner.recovery_codes(user).await
        }

        async fn resource_owner(
            &self,
            user: &UserId,
        ) -> Result<Option<OrgId>, application::StoreError> {
            self.inner.resource_owner(user).await
        }

        async fn change(
            &self,
            user: &UserId,
            context: application::ChangeContext,
            decide: application::Decide,
        ) -> Result<application::Committed, ApplicationError> {
            use std::sync::atomic::Ordering::SeqCst;
            let now = self.now.fetch_add(1, SeqCst) + 1;
            self.most.fetch_max(now, SeqCst);
            tokio::time::sleep(Duration::from_millis(5)).await;
            let committed = self.inner.change(user, context, decide).await;
            self.now.fetch_sub(1, SeqCst);
            committed
        }

        async fn purge_pending(
            &self,
            added_before: chrono::DateTime<chrono::Utc>,
        ) -> Result<u64, application::StoreError> {
            self.inner.purge_pending(added_before).await
        }
    }

    /// Counts the lines written and the progress lines among them.
    #[derive(Debug, Default)]
    struct Lines {
        all: usize,
        progress: usize,
        pending: Vec<u8>,
    }

    impl Write for &mut Lines {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            for &byte in bytes {
                if byte == b'\n' {
                    self.all += 1;
                    if self.pending.starts_with(b"progress: ") {
                        self.progress += 1;
                    }
                    self.pending.clear();
                } else if self.pending.len() < 16 {
                    self.pending.push(byte);
                }
            }
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_long_file_streams_with_bounded_changes_in_flight_and_a_bounded_summary() {
        let store = Arc::new(Counted::default());
        let cipher = adapters_crypto::AesGcmCipher::from_config(&SecretString::from(
            "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
        ))
        .unwrap();
        let factors = OtpFactors::new(
            store.clone(),
            Arc::new(cipher),
            Arc::new(adapters_crypto::OsSecrets),
            Arc::new(adapters_clock::SystemClock),
            application::TotpSettings::default(),
        );
        let mut text = String::new();
        for n in 0..40 {
            text.push_str(&format!(
                "{{\"user_id\":\"u{n}\",\"secret\":\"GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\"}}\n"
            ));
        }
        let refused = 50_000;
        for _ in 0..refused {
            text.push_str("{\"user_id\":\"nobody\"}\n");
        }
        let mut out = Lines::default();
        let summary = import_lines(
            &factors,
            text.as_bytes(),
            ImportOptions {
                from_line: 1,
                concurrency: 3,
            },
            &mut PlainProgress::new(&mut out),
        )
        .await
        .unwrap();
        assert_eq!(summary.lines, 40 + refused);
        assert_eq!(
            (summary.imported, summary.skipped, summary.refused),
            (40, 0, refused)
        );
        assert_eq!(summary.refusals.len(), SUMMARY_REFUSALS);
        assert_eq!(
            summary.refusals[0],
            (41, "neither secret nor otpauth".to_owned())
        );
        let most = store.most.load(std::sync::atomic::Ordering::SeqCst);
        assert!((2..=3).contains(&most), "{most} changes in flight at once");
        // A note per refused line, a progress line per 10,000 lines.
        assert_eq!(out.progress, 5);
        assert_eq!(out.all, 50_005);

        // From line 41 on: only the refused lines are read as lines to do.
        let again = import_lines(
            &factors,
            text.as_bytes(),
            ImportOptions {
                from_line: 41,
                concurrency: 3,
            },
            &mut PlainProgress::new(std::io::sink()),
        )
        .await
        .unwrap();
        assert_eq!(
            (again.imported, again.skipped, again.refused),
            (0, 0, refused)
        );
    }

    #[test]
    fn the_summary_lists_refused_lines_and_counts_the_rest() {
        let summary = ImportSummary {
            lines: 300,
            imported: 100,
            skipped: 50,
            refused: 150,
            refusals: (1..=100).map(|n| (n, "bad".to_owned())).collect(),
        };
        let text = summary.to_string();
        assert!(text.starts_with("done: 300 line(s) read: imported 100, skipped 50, refused 150"));
        assert!(text.contains("\n  line 100: bad"));
        assert!(text.contains("and 50 more refused line(s)"));
    }
}
