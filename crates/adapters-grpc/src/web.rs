//! gRPC-web answers that fail carry their status in a trailers frame.
//!
//! tonic answers an error "trailers-only": `grpc-status`, `grpc-message` and
//! `grpc-status-details-bin` in the HTTP headers and no body, and tonic-web
//! passes that through. ZITADEL's gRPC-web answers put the status in the
//! body's trailers frame (flag `0x80`), as they do for successful calls; this
//! layer, placed outside tonic-web's, moves it there. Native gRPC answers are
//! left as they are.

use base64::Engine as _;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http_body_util::Full;
use tonic::body::Body;
use tonic::codegen::Bytes;
use tower::util::MapResponseLayer;

/// The headers of a trailers-only answer that belong in the trailers frame.
const STATUS_HEADERS: [&str; 3] = ["grpc-status", "grpc-message", "grpc-status-details-bin"];

/// The gRPC-web frame flag of a trailers frame.
const TRAILERS_FLAG: u8 = 0x80;

/// Moves the status of a trailers-only gRPC-web answer into a trailers frame
/// in the body (binary and `-text` encodings): tower's `MapResponse` with
/// [`status_into_frame`].
pub type GrpcWebStatusFrameLayer =
    MapResponseLayer<fn(http::Response<Body>) -> http::Response<Body>>;

/// The [`GrpcWebStatusFrameLayer`].
#[must_use]
pub fn grpc_web_status_frame() -> GrpcWebStatusFrameLayer {
    MapResponseLayer::new(status_into_frame as fn(http::Response<Body>) -> http::Response<Body>)
}

/// A gRPC-web answer with `grpc-status` in its headers gets those headers as
/// its body's one trailers frame; any other answer is returned unchanged.
fn status_into_frame(mut response: http::Response<Body>) -> http::Response<Body> {
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    let text = if content_type.starts_with("application/grpc-web-text") {
        true
    } else if content_type.starts_with("application/grpc-web") {
        false
    } else {
        return response;
    };
    if !response.headers().contains_key(STATUS_HEADERS[0]) {
        return response;
    }

    let mut block = Vec::new();
    for name in STATUS_HEADERS {
        if let Some(value) = response.headers_mut().remove(name) {
            block.extend_from_slice(name.as_bytes());
            block.push(b':');
            block.extend_from_slice(value.as_bytes());
            block.extend_from_slice(b"\r\n");
        }
    }
    let Ok(length) = u32::try_from(block.len()) else {
        return response;
    };
    let mut frame = Vec::with_capacity(block.len() + 5);
    frame.push(TRAILERS_FLAG);
    frame.extend_from_slice(&length.to_be_bytes());
    frame.extend_from_slice(&block);
    if text {
        frame = base64::engine::general_purpose::STANDARD
            .encode(frame)
            .into_bytes();
    }

    response.headers_mut().remove(CONTENT_LENGTH);
    *response.body_mut() = Body::new(Full::new(Bytes::from(frame)));
    response
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    fn trailers_only(content_type: &str) -> http::Response<Body> {
        http::Response::builder()
            .header(CONTENT_TYPE, content_type)
            .header("grpc-status", "16")
            .header("grpc-message", "auth%20header%20missing")
            .body(Body::empty())
            .unwrap()
    }

    async fn body_of(response: http::Response<Body>) -> Vec<u8> {
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec()
    }

    #[tokio::test]
    async fn grpc_web_status_moves_into_a_trailers_frame() {
        let response = status_into_frame(trailers_only("application/grpc-web+proto"));
        assert!(!response.headers().contains_key("grpc-status"));
        let body = body_of(response).await;
        let block = b"grpc-status:16\r\ngrpc-message:auth%20header%20missing\r\n";
        assert_eq!(body[0], 0x80);
        assert_eq!(
            body[1..5],
            u32::try_from(block.len()).unwrap().to_be_bytes()
        );
        assert_eq!(&body[5..], block);
    }

    #[tokio::test]
    async fn grpc_web_text_frames_are_base64() {
        let body = body_of(status_into_frame(trailers_only(
            "application/grpc-web-text+proto",
        )))
        .await;
        let frame = base64::engine::general_purpose::STANDARD
            .decode(body)
            .unwrap();
        assert_eq!(frame[0], 0x80);
        assert!(frame.ends_with(b"grpc-status:16\r\ngrpc-message:auth%20header%20missing\r\n"));
    }

    #[tokio::test]
    async fn native_grpc_answers_stay_trailers_only() {
        let response = status_into_frame(trailers_only("application/grpc"));
        assert_eq!(response.headers()["grpc-status"], "16");
        assert!(body_of(response).await.is_empty());
    }
}
