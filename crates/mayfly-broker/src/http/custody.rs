//! The admin API of custody: `/v1/admin/custody` (list, add),
//! `/v1/admin/custody/{name}` (show, remove) and `.../rotate`; and
//! `/v1/custody/{name}` for workloads (how to use an entry). A secret
//! arrives only in a request body and never leaves in a response.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{ApiError, ApiJson, Shared, authorization, no_store};
use crate::custody::{AddCustody, RotateCustody};

pub(super) async fn list(
    State(broker): State<Shared>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    broker.authenticate_admin(authorization(&headers))?;
    let entries = broker.custody_list().await?;
    Ok(no_store(Json(json!({"entries": entries}))))
}

pub(super) async fn add(
    State(broker): State<Shared>,
    headers: HeaderMap,
    body: Result<ApiJson<AddCustody>, ApiError>,
) -> Result<Response, ApiError> {
    broker.authenticate_admin(authorization(&headers))?;
    let ApiJson(body) = body?;
    let view = broker.custody_add(body).await?;
    Ok((StatusCode::CREATED, no_store(Json(view))).into_response())
}

pub(super) async fn show(
    State(broker): State<Shared>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    broker.authenticate_admin(authorization(&headers))?;
    Ok(no_store(Json(broker.custody_show(&name).await?)))
}

pub(super) async fn rotate(
    State(broker): State<Shared>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<ApiJson<RotateCustody>, ApiError>,
) -> Result<Response, ApiError> {
    broker.authenticate_admin(authorization(&headers))?;
    let ApiJson(body) = body?;
    Ok(no_store(Json(
        broker.custody_rotate(&name, body.secret).await?,
    )))
}

pub(super) async fn remove(
    State(broker): State<Shared>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    broker.authenticate_admin(authorization(&headers))?;
    broker.custody_remove(&name).await?;
    Ok(no_store(Json(json!({"removed": name}))))
}

pub(super) async fn usage(
    State(broker): State<Shared>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    broker.authenticate(authorization(&headers)).await?;
    Ok(no_store(Json(broker.custody_use(&name).await?)))
}
