//! Reading the database URL and opening connections. The URL goes into a
//! parsed [`tokio_postgres::Config`] (whose Debug output hides the password)
//! and nowhere else: it is never handed to diesel, logged or put in an error.

use std::fmt;
use std::future::Future as _;
use std::pin::Pin;
use std::task::Poll;

use diesel::ConnectionResult;
use diesel::connection::CacheSize;
use diesel::result::ConnectionError;
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use secrecy::{ExposeSecret, SecretString};
use tokio_postgres::{Config, NoTls};

use crate::error::PgError;
use crate::tls::{MakeRustls, TlsMode, connector, take_tls_params};

/// A parsed database URL and how to protect its connections.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) config: Config,
    tls: Option<MakeRustls>,
}

/// Parses a database URL with its `sslmode` and `sslrootcert` (see
/// [`crate::tls`]), reading the root file now.
///
/// # Errors
/// [`PgError::InvalidUrl`] as [`parse_url`], or for a bad `sslmode`;
/// [`PgError::Tls`] for a root file that cannot be used.
pub(crate) fn parse_target(url: &SecretString) -> Result<Target, PgError> {
    let params = take_tls_params(url.expose_secret());
    let mut config = parse_config(&params.rest)?;
    let (mode, tls) = connector(&params, &config)?;
    config.ssl_mode(if mode == TlsMode::Disable {
        tokio_postgres::config::SslMode::Disable
    } else {
        tokio_postgres::config::SslMode::Require
    });
    Ok(Target { config, tls })
}

/// Parses a `postgres://` URL (or a libpq `key=value` string) and checks it
/// names a server.
///
/// # Errors
/// [`PgError::InvalidUrl`] with a reason that quotes nothing from the URL.
pub(crate) fn parse_url(url: &SecretString) -> Result<Config, PgError> {
    parse_config(&take_tls_params(url.expose_secret()).rest)
}

fn parse_config(url: &str) -> Result<Config, PgError> {
    let config: Config = url.parse().map_err(|_| {
        PgError::InvalidUrl(
            "not a PostgreSQL connection URL (expected postgres://user[:password]@host[:port]/database)",
        )
    })?;
    if config.get_hosts().is_empty() {
        return Err(PgError::InvalidUrl("the URL names no host"));
    }
    Ok(config)
}

/// Opens one connection (TLS unless the mode is `disable`) and hands it to
/// diesel-async, which drives it on the current tokio runtime.
pub(crate) async fn establish(target: &Target) -> ConnectionResult<AsyncPgConnection> {
    let failed = |error: tokio_postgres::Error| ConnectionError::BadConnection(with_causes(&error));
    match &target.tls {
        Some(tls) => {
            let (client, connection) = target.config.connect(tls.clone()).await.map_err(failed)?;
            AsyncPgConnection::try_from_client_and_connection(client, connection).await
        }
        None => {
            let (client, connection) = target.config.connect(NoTls).await.map_err(failed)?;
            AsyncPgConnection::try_from_client_and_connection(client, connection).await
        }
    }
}

/// Like [`establish`], for a connection that keeps no statement prepared
/// (its statement cache off) and so is safe behind a transaction pooler,
/// login included: diesel-async's login sets the time zone and the client
/// encoding with two statements prepared under names and kept in its
/// statement cache, which behind PgBouncer `pool_mode = transaction` run on
/// whichever server connection is free and stay there ("prepared statement
/// \"s0\" already exists" for the next client handed it). So the login runs
/// in a transaction (`BEGIN` first, on the raw client), the cache is turned
/// off inside it (which closes the two statements), and `COMMIT` ends it:
/// the settings persist (`SET` without `LOCAL`), no statement does.
pub(crate) async fn establish_unprepared(target: &Target) -> ConnectionResult<AsyncPgConnection> {
    let failed = |error: tokio_postgres::Error| ConnectionError::BadConnection(with_causes(&error));
    let mut connection = match &target.tls {
        Some(tls) => {
            let (client, connection) = target.config.connect(tls.clone()).await.map_err(failed)?;
            login_in_transaction(client, connection).await?
        }
        None => {
            let (client, connection) = target.config.connect(NoTls).await.map_err(failed)?;
            login_in_transaction(client, connection).await?
        }
    };
    AsyncConnection::set_prepared_statement_cache_size(&mut connection, CacheSize::Disabled);
    SimpleAsyncConnection::batch_execute(&mut connection, "COMMIT")
        .await
        .map_err(ConnectionError::CouldntSetupConfiguration)?;
    Ok(connection)
}

/// Sends `BEGIN` on `client` (driving `connection` until it is answered),
/// then hands both to diesel-async, whose login statements so run inside
/// that transaction.
async fn login_in_transaction<T>(
    client: tokio_postgres::Client,
    mut connection: tokio_postgres::Connection<tokio_postgres::Socket, T>,
) -> ConnectionResult<AsyncPgConnection>
where
    T: tokio_postgres::tls::TlsStream + Unpin + Send + 'static,
{
    let failed = |error: tokio_postgres::Error| ConnectionError::BadConnection(with_causes(&error));
    {
        let begin = client.batch_execute("BEGIN");
        let mut begin = std::pin::pin!(begin);
        std::future::poll_fn(|cx| {
            if let Poll::Ready(answer) = begin.as_mut().poll(cx) {
                return Poll::Ready(answer.map_err(failed));
            }
            match Pin::new(&mut connection).poll(cx) {
                Poll::Ready(Err(error)) => Poll::Ready(Err(failed(error))),
                Poll::Ready(Ok(())) => Poll::Ready(Err(ConnectionError::BadConnection(
                    "the server closed the connection at login".to_owned(),
                ))),
                Poll::Pending => Poll::Pending,
            }
        })
        .await?;
    }
    AsyncPgConnection::try_from_client_and_connection(client, connection).await
}

/// An error's text followed by its causes' (tokio-postgres keeps the useful
/// part, such as "Connection refused", in the source).
pub(crate) fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// `host:port` of the first server the config names, without user or password:
/// safe for messages.
pub(crate) fn server_address(config: &Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        #[cfg(unix)]
        Some(tokio_postgres::config::Host::Unix(path)) => path.display().to_string(),
        None => "<no host>".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}")
}

/// Where a database URL points, `host:port/database`, with no user, password
/// or options: safe for log lines. Works for `postgres://` URLs and libpq
/// `key=value` strings alike; an unparsable URL is described as such.
#[must_use]
pub fn describe_database(url: &SecretString) -> String {
    match parse_url(url) {
        Ok(config) => format!(
            "{}/{}",
            server_address(&config),
            config.get_dbname().unwrap_or_default()
        ),
        Err(_) => "<invalid database URL>".to_owned(),
    }
}

/// Removes the configured password from text that came back from the
/// driver, should it ever echo it. Belt and braces: no known message does.
#[derive(Clone)]
pub(crate) struct Redactor {
    password: Option<SecretString>,
}

impl Redactor {
    /// Remembers the password of `config`, if it has one long enough to be
    /// told apart from ordinary text.
    pub(crate) fn new(config: &Config) -> Self {
        let password = config
            .get_password()
            .filter(|password| password.len() >= 3)
            .map(|password| SecretString::from(String::from_utf8_lossy(password).into_owned()));
        Self { password }
    }

    /// `text` with every occurrence of the password replaced.
    pub(crate) fn redact(&self, text: impl Into<String>) -> String {
        let text = text.into();
        match &self.password {
            Some(password) if text.contains(password.expose_secret()) => {
                text.replace(password.expose_secret(), "[REDACTED]")
            }
            _ => text,
        }
    }
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Redactor([REDACTED])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_or_fail_without_quoting_themselves() {
        let good = parse_url(&SecretString::from(
            "postgres://otp:hunter2@db.internal:6543/otp",
        ))
        .unwrap();
        assert_eq!(server_address(&good), "db.internal:6543");
        for url in [
            "postgres://otp:hunter2@db.internal:6543/otp?sslmode=disable",
            "host=db.internal port=6543 user=otp password=hunter2 dbname=otp",
        ] {
            assert_eq!(
                describe_database(&SecretString::from(url)),
                "db.internal:6543/otp"
            );
        }
        assert_eq!(
            describe_database(&SecretString::from("password=hunter2 nonsense")),
            "<invalid database URL>"
        );
        assert!(!format!("{good:?}").contains("hunter2"));
        for bad in [
            "postgres://otp:hunter2@db.internal:notaport/otp",
            "hunter2 is not a url",
            "",
        ] {
            let error = parse_url(&SecretString::from(bad)).unwrap_err();
            assert!(matches!(error, PgError::InvalidUrl(_)), "{bad:?}");
            assert!(!error.to_string().contains("hunter2"), "{error}");
            assert!(!format!("{error:?}").contains("hunter2"), "{error:?}");
        }
    }

    #[test]
    fn redactor_removes_the_password() {
        let config =
            parse_url(&SecretString::from("postgres://otp:hunter2@localhost/otp")).unwrap();
        let redactor = Redactor::new(&config);
        assert_eq!(
            redactor.redact("login hunter2 failed"),
            "login [REDACTED] failed"
        );
        assert_eq!(redactor.redact("nothing here"), "nothing here");
    }
}
