//! A machine's interfaces and its rendered network configuration:
//! `GET`/`PUT /api/v1/machines/{mac}/interfaces`, `GET /api/v1/machines/{mac}/netconfig`.

use axum::Json;
use axum::extract::{Path, Query, State as AxumState};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use maas_net::doc::MachineDoc;
use maas_net::netplan::Format;
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, ApiResult, bad_request, parse_mac};
use crate::app::App;
use crate::now;

/// `GET /api/v1/machines/{mac}/interfaces`: the machine's interfaces and links, in the form
/// of the topology document's `[[machines]]` entries.
pub(super) async fn get(AxumState(app): AxumState<App>, Path(mac): Path<String>) -> ApiResult {
    let mac = parse_mac(&mac)?;
    Ok(Json(json!(app.state.network(mac)?)))
}

/// `PUT /api/v1/machines/{mac}/interfaces`: replaces them, checked by MAAS's rules.
pub(super) async fn put(
    AxumState(app): AxumState<App>,
    Path(mac): Path<String>,
    body: Result<Json<MachineDoc>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    let mac = parse_mac(&mac)?;
    let Json(doc) = body.map_err(|e| bad_request(e.body_text()))?;
    let (machine, ticket) = app.state.set_network(mac, doc, now())?;
    app.state.durable(ticket).await?;
    Ok(Json(json!(machine.network)))
}

/// The query of `netconfig`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NetconfigQuery {
    /// `v2` (default) or `v1`.
    #[serde(default)]
    format: Option<String>,
}

/// `GET /api/v1/machines/{mac}/netconfig?format=v2|v1`: the network configuration the
/// deployed system gets (YAML, `network:` at the top), with the addresses held now.
pub(super) async fn netconfig(
    AxumState(app): AxumState<App>,
    Path(mac): Path<String>,
    Query(query): Query<NetconfigQuery>,
) -> Result<Response, ApiError> {
    let mac = parse_mac(&mac)?;
    let format = match query.format.as_deref() {
        None | Some("v2") => Format::V2,
        Some("v1") => Format::V1,
        Some(other) => return Err(bad_request(format!("format {other:?}: use v2 or v1"))),
    };
    let text = app
        .state
        .render_network(mac, &app.render_options(), format)?;
    Ok(([(header::CONTENT_TYPE, "application/yaml")], text).into_response())
}
