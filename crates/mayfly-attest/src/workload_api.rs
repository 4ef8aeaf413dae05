//! The SPIFFE Workload API (JWT profile) over gRPC: the wire messages,
//! gRPC's framing, and the three calls Mayfly answers.
//!
//! `FetchJWTSVID` attests the caller and signs a JWT-SVID for it;
//! `FetchJWTBundles` sends the trust domain's keys and keeps the stream
//! open, as the API defines it; `ValidateJWTSVID` checks a JWT-SVID of
//! this trust domain. The X.509 calls answer `UNIMPLEMENTED`.

use std::collections::HashMap;
use std::sync::Arc;

use http_body_util::BodyExt as _;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use serde_json::Value;

use crate::peer::Peer;
use crate::socket::{Context, Reply};

/// `JWTSVIDRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct JwtSvidRequest {
    #[prost(string, repeated, tag = "1")]
    pub audience: Vec<String>,
    #[prost(string, tag = "2")]
    pub spiffe_id: String,
}

/// `JWTSVID`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct JwtSvid {
    #[prost(string, tag = "1")]
    pub spiffe_id: String,
    #[prost(string, tag = "2")]
    pub svid: String,
    #[prost(string, tag = "3")]
    pub hint: String,
}

/// `JWTSVIDResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct JwtSvidResponse {
    #[prost(message, repeated, tag = "1")]
    pub svids: Vec<JwtSvid>,
}

/// `JWTBundlesResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct JwtBundlesResponse {
    #[prost(map = "string, bytes", tag = "1")]
    pub bundles: HashMap<String, Vec<u8>>,
}

/// `ValidateJWTSVIDRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct ValidateJwtSvidRequest {
    #[prost(string, tag = "1")]
    pub audience: String,
    #[prost(string, tag = "2")]
    pub svid: String,
}

/// `ValidateJWTSVIDResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct ValidateJwtSvidResponse {
    #[prost(string, tag = "1")]
    pub spiffe_id: String,
    #[prost(message, optional, tag = "2")]
    pub claims: Option<prost_types::Struct>,
}

/// The gRPC status codes Mayfly answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Code {
    InvalidArgument = 3,
    PermissionDenied = 7,
    Unimplemented = 12,
    Internal = 13,
    Unavailable = 14,
}

/// A gRPC error: its code and a message for the caller.
#[derive(Debug)]
pub(crate) struct Status {
    code: Code,
    message: String,
}

impl Status {
    fn new(code: Code, message: impl Into<String>) -> Status {
        Status {
            code,
            message: message.into(),
        }
    }
}

/// Largest request message read, in bytes.
const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// The 5-byte gRPC prefix (not compressed, length) and the message.
fn frame(message: &impl prost::Message) -> Bytes {
    let body = message.encode_to_vec();
    let mut out = Vec::with_capacity(5 + body.len());
    out.push(0);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    Bytes::from(out)
}

/// The one message of a unary or server-streaming request's body.
fn unframe<M: prost::Message + Default>(body: &[u8]) -> Result<M, Status> {
    let malformed = |why: &str| {
        Status::new(
            Code::InvalidArgument,
            format!("malformed gRPC request: {why}"),
        )
    };
    let Some((&[compressed, l0, l1, l2, l3], rest)) = body.split_first_chunk::<5>() else {
        return Err(malformed(
            "the body is shorter than gRPC's 5-byte message prefix",
        ));
    };
    if compressed != 0 {
        return Err(Status::new(
            Code::Unimplemented,
            "compressed messages are not accepted; send them uncompressed",
        ));
    }
    let length = u32::from_be_bytes([l0, l1, l2, l3]) as usize;
    if length != rest.len() {
        return Err(malformed(
            "the message length does not match the body (one message expected)",
        ));
    }
    M::decode(rest).map_err(|e| malformed(&format!("not a valid protobuf message ({e})")))
}

/// gRPC's percent-encoding of `grpc-message`.
fn encode_message(message: &str) -> String {
    let mut out = String::new();
    for byte in message.bytes() {
        if (0x20..0x7f).contains(&byte) && byte != b'%' {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn grpc_response(body: Reply) -> Response<Reply> {
    let mut response = Response::new(body);
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/grpc+proto"),
    );
    response
}

/// A trailers-only answer carrying an error.
fn error_response(status: &Status) -> Response<Reply> {
    let mut response = grpc_response(Reply::empty());
    let headers = response.headers_mut();
    headers.insert(
        "grpc-status",
        (status.code as u8)
            .to_string()
            .parse()
            .unwrap_or_else(|_| hyper::header::HeaderValue::from_static("13")),
    );
    if let Ok(value) = encode_message(&status.message).parse() {
        headers.insert("grpc-message", value);
    }
    response
}

/// A message, then trailers saying OK; or the message with the stream
/// held open (server streaming).
fn ok_response(message: Bytes, hold_open: bool) -> Response<Reply> {
    grpc_response(Reply::grpc(message, hold_open))
}

/// Answers one Workload API call.
pub(crate) async fn handle(
    request: Request<Incoming>,
    context: Arc<Context>,
    peer: Arc<Peer>,
) -> Response<Reply> {
    match call(request, context, peer).await {
        Ok(response) => response,
        Err(status) => {
            tracing::debug!(code = status.code as u8, message = %status.message, "workload API call refused");
            error_response(&status)
        }
    }
}

async fn call(
    request: Request<Incoming>,
    context: Arc<Context>,
    peer: Arc<Peer>,
) -> Result<Response<Reply>, Status> {
    // The Workload API's security header: a browser or a server-side
    // request forgery cannot set it.
    if request
        .headers()
        .get("workload.spiffe.io")
        .and_then(|v| v.to_str().ok())
        != Some("true")
    {
        return Err(Status::new(
            Code::InvalidArgument,
            "security header missing from request",
        ));
    }
    let grpc = request
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"));
    if !grpc {
        return Err(Status::new(
            Code::InvalidArgument,
            "the content type is not application/grpc",
        ));
    }
    let method = request
        .uri()
        .path()
        .trim_start_matches("/SpiffeWorkloadAPI/")
        .to_owned();
    let body = http_body_util::Limited::new(request.into_body(), MAX_MESSAGE_BYTES + 5)
        .collect()
        .await
        .map_err(|e| {
            Status::new(
                Code::InvalidArgument,
                format!("cannot read the request: {e}"),
            )
        })?
        .to_bytes();
    match method.as_str() {
        "FetchJWTSVID" => fetch_jwt_svid(unframe(&body)?, &context, peer).await,
        "FetchJWTBundles" => {
            let bundle = serde_json::to_vec(&context.attestor.jwks(true))
                .map_err(|e| Status::new(Code::Internal, e.to_string()))?;
            let response = JwtBundlesResponse {
                bundles: HashMap::from([(context.attestor.config().trust_domain.clone(), bundle)]),
            };
            Ok(ok_response(frame(&response), true))
        }
        "ValidateJWTSVID" => validate_jwt_svid(unframe(&body)?, &context),
        "FetchX509SVID" | "FetchX509Bundles" => Err(Status::new(
            Code::Unimplemented,
            "Mayfly issues JWT-SVIDs only; use FetchJWTSVID",
        )),
        other => Err(Status::new(
            Code::Unimplemented,
            format!("no method {other:?} in SpiffeWorkloadAPI"),
        )),
    }
}

async fn fetch_jwt_svid(
    request: JwtSvidRequest,
    context: &Arc<Context>,
    peer: Arc<Peer>,
) -> Result<Response<Reply>, Status> {
    if request.audience.iter().all(|a| a.is_empty()) {
        return Err(Status::new(
            Code::InvalidArgument,
            "audience must be specified",
        ));
    }
    let audiences: Vec<String> = request
        .audience
        .into_iter()
        .filter(|a| !a.is_empty())
        .collect();
    let facts = context
        .attest(peer)
        .await
        .map_err(|e| Status::new(Code::PermissionDenied, e.to_string()))?;
    let spiffe_id = context.attestor.spiffe_id(&facts);
    if !request.spiffe_id.is_empty() && request.spiffe_id != spiffe_id {
        return Err(Status::new(
            Code::PermissionDenied,
            format!("this process is {spiffe_id}, not {}", request.spiffe_id),
        ));
    }
    let svid = context
        .attestor
        .svid(&facts, &audiences, context.now())
        .map_err(|e| Status::new(Code::Unavailable, e.to_string()))?;
    tracing::info!(
        spiffe_id,
        pid = facts.pid,
        audiences = audiences.join(","),
        "JWT-SVID issued"
    );
    let response = JwtSvidResponse {
        svids: vec![JwtSvid {
            spiffe_id,
            svid,
            hint: String::new(),
        }],
    };
    Ok(ok_response(frame(&response), false))
}

fn validate_jwt_svid(
    request: ValidateJwtSvidRequest,
    context: &Context,
) -> Result<Response<Reply>, Status> {
    if request.audience.is_empty() {
        return Err(Status::new(
            Code::InvalidArgument,
            "audience must be specified",
        ));
    }
    if request.svid.is_empty() {
        return Err(Status::new(Code::InvalidArgument, "svid must be specified"));
    }
    let (spiffe_id, claims) = context
        .attestor
        .validate_svid(&request.svid, &request.audience, context.now())
        .map_err(|e| Status::new(Code::InvalidArgument, e.to_string()))?;
    let response = ValidateJwtSvidResponse {
        spiffe_id,
        claims: Some(to_struct(claims)),
    };
    Ok(ok_response(frame(&response), false))
}

/// Every request message's decoder over `data`.
pub(crate) fn fuzz(data: &[u8]) {
    let _ = unframe::<JwtSvidRequest>(data);
    let _ = unframe::<ValidateJwtSvidRequest>(data);
    let _ = encode_message(&String::from_utf8_lossy(data));
}

fn to_struct(map: serde_json::Map<String, Value>) -> prost_types::Struct {
    prost_types::Struct {
        fields: map.into_iter().map(|(k, v)| (k, to_value(v))).collect(),
    }
}

fn to_value(value: Value) -> prost_types::Value {
    use prost_types::value::Kind;
    let kind = match value {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(b),
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        Value::String(s) => Kind::StringValue(s),
        Value::Array(items) => Kind::ListValue(prost_types::ListValue {
            values: items.into_iter().map(to_value).collect(),
        }),
        Value::Object(map) => Kind::StructValue(to_struct(map)),
    };
    prost_types::Value { kind: Some(kind) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_bad_frames_are_named() {
        let request = JwtSvidRequest {
            audience: vec!["a".into(), "b".into()],
            spiffe_id: String::new(),
        };
        let bytes = frame(&request);
        assert_eq!(unframe::<JwtSvidRequest>(&bytes).unwrap(), request);
        let e = unframe::<JwtSvidRequest>(&bytes[..3]).unwrap_err();
        assert_eq!(e.code, Code::InvalidArgument);
        let e = unframe::<JwtSvidRequest>(&bytes[..bytes.len() - 1]).unwrap_err();
        assert!(e.message.contains("length"), "{}", e.message);
        let mut compressed = bytes.to_vec();
        compressed[0] = 1;
        assert_eq!(
            unframe::<JwtSvidRequest>(&compressed).unwrap_err().code,
            Code::Unimplemented
        );
        let garbage = [0u8, 0, 0, 0, 3, 0xff, 0xff, 0xff];
        assert!(
            unframe::<JwtSvidRequest>(&garbage)
                .unwrap_err()
                .message
                .contains("protobuf")
        );
    }

    #[test]
    fn grpc_messages_are_percent_encoded() {
        assert_eq!(encode_message("a 100% é\n"), "a 100%25 %C3%A9%0A");
    }
}
