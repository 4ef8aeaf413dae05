//! `POST /v1/mcp/decide` and `POST /v1/mcp/record`: the MCP gate asks
//! whether calls may go to its server, and reports the calls it made.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;

use super::error::{ApiError, ApiJson};
use super::{Shared, authorization, no_store};
use crate::service::{McpCall, McpRecord};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DecideBody {
    server: String,
    calls: Vec<McpCall>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RecordBody {
    server: String,
    records: Vec<McpRecord>,
}

pub(super) async fn decide(
    State(broker): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<ApiJson<DecideBody>, ApiError>,
) -> Result<Response, ApiError> {
    let ApiJson(body) = body?;
    let decisions = broker
        .decide_mcp(
            authorization(&headers),
            &body.server,
            &body.calls,
            &peer.ip().to_string(),
        )
        .await?;
    Ok(no_store(Json(json!({"decisions": decisions}))))
}

pub(super) async fn record(
    State(broker): State<Shared>,
    headers: HeaderMap,
    body: Result<ApiJson<RecordBody>, ApiError>,
) -> Result<Response, ApiError> {
    let ApiJson(body) = body?;
    let recorded = broker
        .record_mcp(authorization(&headers), &body.server, &body.records)
        .await?;
    Ok(no_store(Json(json!({"recorded": recorded}))))
}
