//! grpc: one `grpc.health.v1.Health/Check` call on the pod IP over plaintext HTTP/2.
//!
//! The two messages are tiny, so they are encoded by hand rather than through a
//! protobuf toolchain. On the wire (gRPC over HTTP/2):
//!
//! - request: `POST /grpc.health.v1.Health/Check`, `content-type: application/grpc`,
//!   `te: trailers`; the body is one length-prefixed message: a byte 0 (not
//!   compressed), its length as 4 bytes big-endian, then `HealthCheckRequest`:
//!   field 1 `service` (string) as tag byte `0x0a`, a varint length, the UTF-8 bytes
//!   (left out when the service is empty).
//! - response: HTTP 200 and one length-prefixed `HealthCheckResponse`: field 1
//!   `status` (enum, varint) as tag byte `0x08` and the value: 0 UNKNOWN, 1 SERVING,
//!   2 NOT_SERVING, 3 SERVICE_UNKNOWN (absent means 0). The call's result is the
//!   `grpc-status` trailer (or header, for a trailers-only answer): 0 OK,
//!   12 UNIMPLEMENTED when the server has no health service.

use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::header::{HeaderMap, CONTENT_TYPE, TE, USER_AGENT};
use hyper::{Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};

use super::{Outcome, Target, MAX_OUTPUT};

/// The health service's Check method.
const CHECK_PATH: &str = "/grpc.health.v1.Health/Check";

/// `grpc-status` UNIMPLEMENTED.
const UNIMPLEMENTED: u32 = 12;

/// `HealthCheckResponse.status` SERVING.
const SERVING: u64 = 1;

/// Ask the server on the pod IP's `port` whether `service` is SERVING.
pub(super) async fn check(port: u16, service: &str, target: &Target, timeout: Duration) -> Outcome {
    let address = SocketAddr::new(target.pod_ip, port);
    let stream = match target.connect(None, port, timeout).await {
        Ok(stream) => stream,
        Err(e) => {
            return Outcome::Failure(format!(
                "failed to connect to service {service:?} at {address} within {timeout:?}: {e}"
            ))
        }
    };
    match call(stream, address, service).await {
        Ok(SERVING) => Outcome::Success,
        Ok(status) => Outcome::Failure(format!(
            "service unhealthy (responded with {:?})",
            status_name(status)
        )),
        Err(e) => Outcome::Failure(e),
    }
}

/// The Check call on a connected stream: the response's status field, or why not.
async fn call(
    stream: tokio::net::TcpStream,
    address: SocketAddr,
    service: &str,
) -> Result<u64, String> {
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .map_err(|e| format!("health rpc failed: HTTP/2 handshake: {e}"))?;
    let driver = tokio::spawn(connection);
    let result = async {
        let request = Request::post(format!("http://{address}{CHECK_PATH}"))
            .header(CONTENT_TYPE, "application/grpc")
            .header(TE, "trailers")
            .header(USER_AGENT, super::http::USER_AGENT_VALUE)
            .body(Full::new(Bytes::from(encode_request(service))))
            .map_err(|e| format!("health rpc failed: building the request: {e}"))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("health rpc failed: {e}"))?;
        if response.status() != StatusCode::OK {
            return Err(format!(
                "health rpc failed: HTTP status {}",
                response.status().as_u16()
            ));
        }
        let headers = response.headers().clone();
        let collected = Limited::new(response.into_body(), MAX_OUTPUT)
            .collect()
            .await
            .map_err(|e| format!("health rpc failed: reading the response: {e}"))?;
        let trailers = collected.trailers().cloned().unwrap_or_default();
        let (code, message) = grpc_status(&trailers, &headers)?;
        if code == UNIMPLEMENTED {
            return Err(format!(
                "the server does not implement the gRPC health protocol (grpc.health.v1.Health): {message}"
            ));
        }
        if code != 0 {
            return Err(format!("health rpc failed: gRPC status {code}: {message}"));
        }
        decode_response(&collected.to_bytes())
    }
    .await;
    driver.abort();
    result
}

/// The call's `grpc-status` and `grpc-message`, from the trailers or else the headers.
fn grpc_status(trailers: &HeaderMap, headers: &HeaderMap) -> Result<(u32, String), String> {
    let field = |name: &str| {
        trailers
            .get(name)
            .or_else(|| headers.get(name))
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let code = field("grpc-status").ok_or("health rpc failed: the answer has no grpc-status")?;
    let code = code
        .parse()
        .map_err(|_| format!("health rpc failed: grpc-status {code:?} is not a number"))?;
    Ok((code, field("grpc-message").unwrap_or_default()))
}

fn status_name(status: u64) -> String {
    match status {
        0 => "UNKNOWN".into(),
        1 => "SERVING".into(),
        2 => "NOT_SERVING".into(),
        3 => "SERVICE_UNKNOWN".into(),
        other => other.to_string(),
    }
}

/// A length-prefixed `HealthCheckRequest { service }`.
fn encode_request(service: &str) -> Vec<u8> {
    let mut message = Vec::new();
    if !service.is_empty() {
        message.push(0x0a);
        put_varint(&mut message, service.len() as u64);
        message.extend_from_slice(service.as_bytes());
    }
    let mut framed = vec![0];
    // A service name longer than 4 GiB cannot come out of a pod spec.
    framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
    framed.extend_from_slice(&message);
    framed
}

/// The `status` of a length-prefixed `HealthCheckResponse` (unknown fields skipped).
fn decode_response(framed: &[u8]) -> Result<u64, String> {
    let bad = |why: &str| format!("health rpc failed: malformed HealthCheckResponse: {why}");
    let (head, rest) = framed
        .split_first_chunk::<5>()
        .ok_or_else(|| bad("short frame"))?;
    let [compressed, a, b, c, d] = *head;
    if compressed != 0 {
        return Err(bad("compressed messages are not supported"));
    }
    let length = u32::from_be_bytes([a, b, c, d]) as usize;
    let mut message = rest.get(..length).ok_or_else(|| bad("truncated message"))?;
    let mut status = 0;
    while !message.is_empty() {
        let key = take_varint(&mut message).ok_or_else(|| bad("truncated field key"))?;
        let value_len = match key & 7 {
            0 => {
                let value = take_varint(&mut message).ok_or_else(|| bad("truncated varint"))?;
                if key >> 3 == 1 {
                    status = value;
                }
                0
            }
            1 => 8,
            2 => take_varint(&mut message).ok_or_else(|| bad("truncated length"))? as usize,
            5 => 4,
            wire => return Err(bad(&format!("unsupported wire type {wire}"))),
        };
        message = message
            .get(value_len..)
            .ok_or_else(|| bad("truncated field"))?;
    }
    Ok(status)
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn take_varint(input: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = input.split_first()?;
        *input = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_is_a_framed_service_string() {
        assert_eq!(encode_request(""), [0, 0, 0, 0, 0]);
        assert_eq!(encode_request("db"), [0, 0, 0, 0, 4, 0x0a, 2, b'd', b'b']);
        let long = "s".repeat(200);
        let framed = encode_request(&long);
        assert_eq!(&framed[..8], &[0, 0, 0, 0, 203, 0x0a, 0xc8, 0x01]);
    }

    #[test]
    fn the_response_status_is_read_past_unknown_fields() {
        assert_eq!(decode_response(&[0, 0, 0, 0, 2, 0x08, 1]), Ok(1));
        assert_eq!(decode_response(&[0, 0, 0, 0, 0]), Ok(0));
        // field 2 (bytes "x") before field 1 = NOT_SERVING.
        assert_eq!(
            decode_response(&[0, 0, 0, 0, 5, 0x12, 1, b'x', 0x08, 2]),
            Ok(2)
        );
        assert!(decode_response(&[0, 0, 0, 0, 3, 0x08]).is_err());
        assert!(decode_response(&[1, 0, 0, 0, 0]).is_err());
        assert!(decode_response(&[0, 0]).is_err());
    }
}
