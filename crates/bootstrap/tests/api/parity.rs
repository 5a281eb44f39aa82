//! One scenario table, run over REST, gRPC and gRPC-web: every transport
//! must give the same outcome (status code, error id, details) at each step.

use adapters_grpc::proto::google::rpc::Status as RpcStatus;
use adapters_grpc::proto::zitadel::auth::v1 as pb;
use adapters_grpc::proto::zitadel::auth::v1::auth_service_client::AuthServiceClient;
use adapters_grpc::proto::zitadel::v1::{ErrorDetail, ObjectDetails};
use data_encoding::BASE64_NOPAD;
use prost::Message;
use tonic::metadata::MetadataValue;

use crate::helpers::{TestApp, code_at, settled_now, spawn_app, user};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Rest,
    Grpc,
    GrpcWeb,
}

#[derive(Debug, Clone, Copy)]
enum Step {
    Add,
    Verify(Code),
    Remove,
    List,
}

#[derive(Debug, Clone, Copy)]
enum Code {
    Wrong,
    Right,
}

/// What every transport must agree on.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Outcome {
    /// gRPC status code (0 = OK).
    code: i32,
    id: Option<String>,
    sequence: Option<u64>,
    listed: Option<usize>,
}

struct Run<'a> {
    app: &'a TestApp,
    transport: Transport,
    secret: Option<String>,
}

fn ok(sequence: Option<u64>) -> Outcome {
    Outcome {
        code: 0,
        id: None,
        sequence,
        listed: None,
    }
}

fn error(code: i32, id: &str) -> Outcome {
    Outcome {
        code,
        id: Some(id.to_owned()),
        sequence: None,
        listed: None,
    }
}

impl Run<'_> {
    async fn code(&self, which: Code) -> String {
        let right = code_at(self.secret.as_deref().unwrap(), settled_now().await);
        match which {
            Code::Right => right,
            Code::Wrong => {
                if right == "000000" {
                    "000001".into()
                } else {
                    "000000".into()
                }
            }
        }
    }

    async fn call(&mut self, step: Step, auth: Option<&str>) -> Outcome {
        let code = match step {
            Step::Verify(which) => self.code(which).await,
            _ => String::new(),
        };
        match self.transport {
            Transport::Rest => self.rest(step, auth, &code).await,
            Transport::Grpc | Transport::GrpcWeb => self.grpc(step, auth, &code).await,
        }
    }

    async fn rest(&mut self, step: Step, auth: Option<&str>, code: &str) -> Outcome {
        use reqwest::Method;
        let (method, path, body) = match step {
            Step::Add => (Method::POST, crate::helpers::OTP, "{}".to_owned()),
            Step::Verify(_) => (
                Method::POST,
                crate::helpers::VERIFY,
                format!(r#"{{"code":"{code}"}}"#),
            ),
            Step::Remove => (Method::DELETE, crate::helpers::OTP, String::new()),
            Step::List => (Method::POST, crate::helpers::SEARCH, "{}".to_owned()),
        };
        let answer = self.app.call(method, path, auth, Some(body)).await;
        if answer.status != 200 {
            let id = answer.body["details"][0]["id"].as_str().map(str::to_owned);
            return Outcome {
                code: answer.body["code"].as_i64().unwrap() as i32,
                id,
                sequence: None,
                listed: None,
            };
        }
        if let Some(secret) = answer.body["secret"].as_str() {
            self.secret = Some(secret.to_owned());
        }
        let sequence = answer.body["details"]["sequence"]
            .as_str()
            .map(|s| s.parse().unwrap());
        let listed = matches!(step, Step::List)
            .then(|| answer.body["result"].as_array().map_or(0, Vec::len));
        Outcome {
            code: 0,
            id: None,
            sequence,
            listed,
        }
    }

    async fn grpc(&mut self, step: Step, auth: Option<&str>, code: &str) -> Outcome {
        let (path, request) = match step {
            Step::Add => (
                "AddMyAuthFactorOTP",
                pb::AddMyAuthFactorOtpRequest {}.encode_to_vec(),
            ),
            Step::Verify(_) => (
                "VerifyMyAuthFactorOTP",
                pb::VerifyMyAuthFactorOtpRequest {
                    code: code.to_owned(),
                }
                .encode_to_vec(),
            ),
            Step::Remove => (
                "RemoveMyAuthFactorOTP",
                pb::RemoveMyAuthFactorOtpRequest {}.encode_to_vec(),
            ),
            Step::List => (
                "ListMyAuthFactors",
                pb::ListMyAuthFactorsRequest {}.encode_to_vec(),
            ),
        };
        let reply = if self.transport == Transport::Grpc {
            self.native(step, auth, code).await
        } else {
            self.web(path, &request, auth).await
        };
        match reply {
            Err((code, id)) => Outcome {
                code,
                id,
                sequence: None,
                listed: None,
            },
            Ok(bytes) => {
                let details = |d: Option<ObjectDetails>| d.map(|d| d.sequence);
                match step {
                    Step::Add => {
                        let r = pb::AddMyAuthFactorOtpResponse::decode(bytes.as_slice()).unwrap();
                        self.secret = Some(r.secret);
                        ok(details(r.details))
                    }
                    Step::Verify(_) => ok(details(
                        pb::VerifyMyAuthFactorOtpResponse::decode(bytes.as_slice())
                            .unwrap()
                            .details,
                    )),
                    Step::Remove => ok(details(
                        pb::RemoveMyAuthFactorOtpResponse::decode(bytes.as_slice())
                            .unwrap()
                            .details,
                    )),
                    Step::List => {
                        let r = pb::ListMyAuthFactorsResponse::decode(bytes.as_slice()).unwrap();
                        Outcome {
                            listed: Some(r.result.len()),
                            ..ok(None)
                        }
                    }
                }
            }
        }
    }

    /// The generated tonic client over HTTP/2.
    async fn native(
        &self,
        step: Step,
        auth: Option<&str>,
        code: &str,
    ) -> Result<Vec<u8>, (i32, Option<String>)> {
        let mut client = AuthServiceClient::connect(self.app.grpc_address.clone())
            .await
            .unwrap();
        fn request<T>(message: T, auth: Option<&str>) -> tonic::Request<T> {
            let mut request = tonic::Request::new(message);
            if let Some(auth) = auth {
                request
                    .metadata_mut()
                    .insert("authorization", MetadataValue::try_from(auth).unwrap());
            }
            request
        }
        let result = match step {
            Step::Add => client
                .add_my_auth_factor_otp(request(pb::AddMyAuthFactorOtpRequest {}, auth))
                .await
                .map(|r| r.into_inner().encode_to_vec()),
            Step::Verify(_) => client
                .verify_my_auth_factor_otp(request(
                    pb::VerifyMyAuthFactorOtpRequest {
                        code: code.to_owned(),
                    },
                    auth,
                ))
                .await
                .map(|r| r.into_inner().encode_to_vec()),
            Step::Remove => client
                .remove_my_auth_factor_otp(request(pb::RemoveMyAuthFactorOtpRequest {}, auth))
                .await
                .map(|r| r.into_inner().encode_to_vec()),
            Step::List => client
                .list_my_auth_factors(request(pb::ListMyAuthFactorsRequest {}, auth))
                .await
                .map(|r| r.into_inner().encode_to_vec()),
        };
        result.map_err(|status| {
            let id = detail_id(status.details());
            assert_eq!(
                status.message(),
                match &id {
                    Some(id) => format!("{} ({id})", detail_text(status.details())),
                    None => status.message().to_owned(),
                }
            );
            (status.code() as i32, id)
        })
    }

    /// gRPC-web over HTTP/1.1, framed by hand as a browser client does.
    async fn web(
        &self,
        method: &str,
        message: &[u8],
        auth: Option<&str>,
    ) -> Result<Vec<u8>, (i32, Option<String>)> {
        let mut frame = vec![0_u8];
        frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
        frame.extend_from_slice(message);
        let mut request = self
            .app
            .client
            .post(format!(
                "{}/zitadel.auth.v1.AuthService/{method}",
                self.app.grpc_address
            ))
            .header("content-type", "application/grpc-web+proto")
            .header("x-grpc-web", "1")
            .body(frame);
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        let body = response.bytes().await.unwrap();
        let (mut data, mut trailers, mut rest) = (None, None, &body[..]);
        while rest.len() >= 5 {
            let length = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
            let payload = rest[5..5 + length].to_vec();
            if rest[0] & 0x80 == 0 {
                data = Some(payload)
            } else {
                trailers = Some(String::from_utf8(payload).unwrap())
            }
            rest = &rest[5 + length..];
        }
        let trailers = trailers.expect("a gRPC-web answer ends with a trailers frame");
        let field = |name: &str| {
            trailers.split("\r\n").find_map(|line| {
                let (key, value) = line.split_once(':')?;
                key.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| value.trim().to_owned())
            })
        };
        let status: i32 = field("grpc-status")
            .expect("grpc-status trailer")
            .parse()
            .unwrap();
        if status == 0 {
            return Ok(data.expect("a data frame"));
        }
        assert!(
            field("grpc-message").is_some(),
            "grpc-message trailer: {trailers}"
        );
        let details = field("grpc-status-details-bin").map(|b| {
            BASE64_NOPAD
                .decode(b.trim_end_matches('=').as_bytes())
                .unwrap()
        });
        Err((status, details.and_then(|d| detail_id(&d))))
    }
}

fn error_detail(details: &[u8]) -> Option<ErrorDetail> {
    let status = RpcStatus::decode(details).ok()?;
    let any = status.details.first()?;
    assert_eq!(any.type_url, "type.googleapis.com/zitadel.v1.ErrorDetail");
    ErrorDetail::decode(any.value.as_slice()).ok()
}

fn detail_id(details: &[u8]) -> Option<String> {
    error_detail(details).map(|d| d.id)
}

fn detail_text(details: &[u8]) -> String {
    error_detail(details).map(|d| d.message).unwrap_or_default()
}

async fn scenario(app: &TestApp, transport: Transport) -> Vec<(String, Outcome)> {
    let token = format!(
        "Bearer {}",
        app.token(&user(&format!("parity-{transport:?}")))
    );
    let mut run = Run {
        app,
        transport,
        secret: None,
    };
    let steps: [(&str, Step, Option<&str>); 13] = [
        ("add", Step::Add, Some(&token)),
        ("add again while pending", Step::Add, Some(&token)),
        ("verify wrong", Step::Verify(Code::Wrong), Some(&token)),
        ("list while pending", Step::List, Some(&token)),
        ("verify right", Step::Verify(Code::Right), Some(&token)),
        ("verify again", Step::Verify(Code::Right), Some(&token)),
        ("add when ready", Step::Add, Some(&token)),
        ("list", Step::List, Some(&token)),
        ("remove", Step::Remove, Some(&token)),
        ("remove again", Step::Remove, Some(&token)),
        ("list after remove", Step::List, Some(&token)),
        ("no token", Step::List, None),
        ("bad token", Step::List, Some("Bearer not-a-jwt")),
    ];
    let mut outcomes = Vec::new();
    for (name, step, auth) in steps {
        outcomes.push((name.to_owned(), run.call(step, auth).await));
    }
    outcomes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_grpc_and_grpc_web_give_the_same_outcomes() {
    let Some(app) = spawn_app().await else { return };
    let expected = vec![
        ok(Some(1)),
        ok(Some(2)),
        error(3, "EVENT-8isk2"),
        Outcome {
            listed: Some(0),
            ..ok(None)
        },
        ok(Some(3)),
        error(9, "COMMAND-qx4ls"),
        error(6, "COMMAND-do9se"),
        Outcome {
            listed: Some(1),
            ..ok(None)
        },
        ok(Some(4)),
        error(5, "COMMAND-Hd9sd"),
        Outcome {
            listed: Some(0),
            ..ok(None)
        },
        Outcome {
            code: 16,
            id: None,
            sequence: None,
            listed: None,
        },
        error(16, "AUTH-7fs1e"),
    ];
    for transport in [Transport::Rest, Transport::Grpc, Transport::GrpcWeb] {
        let outcomes = scenario(&app, transport).await;
        for ((name, got), want) in outcomes.iter().zip(&expected) {
            assert_eq!(got, want, "{transport:?}: {name}");
        }
    }
}
