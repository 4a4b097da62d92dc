//! The event trace route: `GET /v1/events/{event_id}?workspace=W[&event_name=N]`
//! (admin), each stored event with that id and its fate per destination
//! ([`crate::trace`]).

use std::sync::Arc;

use axum::extract::{Path, State};
use serde::Deserialize;

use super::Q;
use super::auth::Admin;
use super::error::{ApiError, ApiResult, ok};
use crate::state::App;
use crate::trace::{TraceError, trace};

#[derive(Deserialize)]
pub struct TraceQuery {
    workspace: Option<String>,
    event_name: Option<String>,
}

impl TraceQuery {
    /// Every event of that id in `workspace` (the console's lookup).
    pub fn for_workspace(workspace: &str) -> Self {
        TraceQuery {
            workspace: Some(workspace.to_string()),
            event_name: None,
        }
    }
}

pub async fn get_trace(
    State(app): State<Arc<App>>,
    _: Admin,
    Path(event_id): Path<String>,
    Q(q): Q<TraceQuery>,
) -> ApiResult {
    let Some(ws) = q.workspace else {
        return Err(ApiError::bad_request(
            "workspace is required: GET /v1/events/{event_id}?workspace=W",
        ));
    };
    let rt = app.runtime();
    if !rt.config.workspaces.iter().any(|w| w.id == ws) {
        return Err(ApiError::not_found(
            "no workspace with that id is configured",
        ));
    }
    let engine = app.engine.clone();
    let now = app.intake.clock.now_ms();
    let app2 = app.clone();
    // Reads the store (a "maybe" of a filter reads a run on disk): off the async threads.
    let result = tokio::task::spawn_blocking(move || {
        trace(
            &rt.config,
            &engine,
            &app2.intake.store,
            &app2.intake.dedup,
            &ws,
            &event_id,
            q.event_name.as_deref(),
            now,
        )
    })
    .await
    .map_err(|_| ApiError::unavailable("the trace could not be read"))?;
    match result {
        Ok(t) if t.events.is_empty() => Err(ApiError::not_found(
            "no event with that id is stored for this workspace (inside storage.dedup_window)",
        )),
        Ok(t) => ok(&serde_json::to_value(&t).unwrap_or_default()),
        Err(TraceError::NeedName(n)) => Err(ApiError::bad_request(format!(
            "this workspace has used more than {n} event names: give event_name"
        ))),
        Err(TraceError::Store(e)) => Err(e.into()),
    }
}
