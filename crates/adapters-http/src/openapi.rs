//! The OpenAPI 3.1 document of the REST wire, generated from the code: the
//! paths come from the handlers' `#[utoipa::path]` attributes, the schemas
//! from the JSON types' `ToSchema` derives (`json.rs`, `error.rs`, the
//! probes), named by their proto messages. Served at `GET /openapi.json` on
//! the public listener and committed as `docs/openapi.json` (a test fails
//! when the copy is stale: `UPDATE_OPENAPI=1 cargo test -p adapters-http
//! --test openapi` rewrites it).
//!
//! Every non-2xx answer of a call is a `google.rpc.Status`
//! ([`ErrorAnswers`]: the statuses the contract's table gives, plus
//! `default`); request bodies are optional, as an empty body is the empty
//! message.

use std::collections::BTreeMap;

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, Ref, RefOr, Required, Response, ResponseBuilder, ServerBuilder, Type,
    schema::ObjectBuilder,
};
use utoipa::{IntoResponses, Modify, OpenApi};

use application::StatusCode as Code;

use crate::error::ApiError;
use crate::routes::{health, import, otp, recovery, users};

/// The document's definition.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "otp-service",
        description = "ZITADEL's TOTP calls (Auth API v1, user service v2, management v1) over REST/JSON, as this service answers them (docs/api.md). Bodies are proto3 JSON: lowerCamelCase names, `uint64` as decimal strings, timestamps as RFC 3339 `date-time`, unset fields left out. Every error is a `google.rpc.Status`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
        contact(name = "otp-service"),
    ),
    servers((url = "http://127.0.0.1:8080", description = "The public REST listener (`http.addr`; `otp-service dev` binds this one)")),
    paths(
        otp::add,
        otp::remove,
        otp::verify,
        otp::list,
        otp::check,
        users::register_totp,
        users::remove_totp,
        users::verify_totp,
        users::list_methods,
        users::management_remove,
        users::management_list,
        import::import_totp,
        recovery::generate,
        recovery::remove,
        recovery::check,
        health::healthz,
        health::readyz,
    ),
    components(schemas(crate::error::StatusBody)),
    modifiers(&Wire),
    tags(
        (name = "auth.v1", description = "`zitadel.auth.v1.AuthService`: the signed-in user's factor."),
        (name = "user.v2", description = "`zitadel.user.v2.UserService`: a user's TOTP, by the user or an administrator."),
        (name = "management.v1", description = "`zitadel.management.v1.ManagementService`: an administrator's calls."),
        (name = "import", description = "Beyond ZITADEL: an administrator imports a TOTP secret exported by another system."),
        (name = "login check", description = "Beyond ZITADEL: the trusted callers' login check (internal listener)."),
        (name = "probes", description = "Kubernetes probes, on every REST listener, without a token."),
    ),
)]
struct ApiDoc;

/// What the attributes cannot say: the bearer scheme, the shared error
/// answers, the login check's listener, and that every request body may be left out.
struct Wire;

impl Modify for Wire {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT or opaque access token")
                    .description(Some(
                        "`Authorization: Bearer <token>`: a JWT access token of the configured issuer, or an opaque one checked by introspection.",
                    ))
                    .build(),
            ),
        );
        for (status, name, description) in ERRORS {
            components.responses.insert(
                name.to_owned(),
                RefOr::T(status_answer(description, status == "401")),
            );
        }
        if let Some(check) = openapi.paths.paths.get_mut(otp::CHECK) {
            check.servers = Some(vec![
                ServerBuilder::new()
                    .url("http://127.0.0.1:8082")
                    .description(Some(
                        "The internal REST listener (`http.internal_addr`), when it is set; else the public one",
                    ))
                    .build(),
            ]);
        }
        for item in openapi.paths.paths.values_mut() {
            for operation in [&mut item.post, &mut item.delete, &mut item.get]
                .into_iter()
                .flatten()
            {
                if let Some(body) = operation.request_body.as_mut() {
                    body.required = Some(Required::False);
                }
            }
        }
    }
}

/// The error answers of every call: each a `google.rpc.Status` (with a
/// `zitadel.v1.ErrorDetail` when the error has a contract id), at the HTTP
/// status grpc-gateway gives its code (docs/api.md, section 5).
pub(crate) struct ErrorAnswers;

/// Status, component name, description.
const ERRORS: [(&str, &str, &str); 10] = [
    (
        "400",
        "InvalidArgument",
        "3 INVALID_ARGUMENT (a body that is not the message, a malformed code or user id) or 9 FAILED_PRECONDITION (no factor in the needed state).",
    ),
    (
        "401",
        "Unauthenticated",
        "16 UNAUTHENTICATED: no, or no valid, bearer token (with `WWW-Authenticate`).",
    ),
    (
        "403",
        "PermissionDenied",
        "7 PERMISSION_DENIED: the caller may not act on this user.",
    ),
    ("404", "NotFound", "5 NOT_FOUND: no such factor or user."),
    (
        "408",
        "BodyTimeout",
        "4 DEADLINE_EXCEEDED: the request body did not arrive in time (the connection is closed).",
    ),
    (
        "409",
        "AlreadyExists",
        "6 ALREADY_EXISTS: the user already has a factor.",
    ),
    (
        "429",
        "ResourceExhausted",
        "8 RESOURCE_EXHAUSTED: too many attempts or changes; try again later.",
    ),
    (
        "503",
        "Unavailable",
        "14 UNAVAILABLE: the database or the issuer's keys cannot be reached.",
    ),
    (
        "504",
        "DeadlineExceeded",
        "4 DEADLINE_EXCEEDED: a dependency did not answer in time.",
    ),
    (
        "default",
        "Error",
        "Any other error, as a `google.rpc.Status`.",
    ),
];

/// One error answer, as a reusable `components.responses` entry.
fn status_answer(description: &str, challenge: bool) -> Response {
    let mut answer = ResponseBuilder::new().description(description).content(
        "application/json",
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("google.rpc.Status")))
            .build(),
    );
    if challenge {
        answer = answer.header(
            "WWW-Authenticate",
            HeaderBuilder::new()
                .schema(ObjectBuilder::new().schema_type(Type::String))
                .description(Some(r#"`Bearer realm="otp-service"`, with `error="invalid_token"` for a token that is not valid."#))
                .build(),
        );
    }
    answer.build()
}

impl IntoResponses for ErrorAnswers {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        ERRORS
            .iter()
            .map(|(status, name, _)| {
                (
                    (*status).to_owned(),
                    RefOr::Ref(Ref::from_response_name(*name)),
                )
            })
            .collect()
    }
}

/// The document as pretty-printed JSON, exactly as `docs/openapi.json` holds it
/// (without its final newline).
///
/// # Errors
/// The document could not be serialized (never for this one; the caller
/// answers 500 rather than panic).
pub fn openapi_json() -> Result<String, serde_json::Error> {
    ApiDoc::openapi().to_pretty_json()
}

/// `GET /openapi.json`.
pub(crate) async fn serve() -> HttpResponse {
    match openapi_json() {
        Ok(document) => HttpResponse::Ok()
            .content_type("application/json")
            .body(document),
        Err(_) => actix_web::ResponseError::error_response(&ApiError::plain(
            Code::Internal,
            "Errors.Internal",
            StatusCode::INTERNAL_SERVER_ERROR,
        )),
    }
}
