//! The operator's web console (issue 16), served by the daemon itself under
//! `/console/` (see docs/console.md): server-rendered HTML ([`maud`]), charts as inline
//! SVG ([`chart`]), one small script and one style sheet embedded in the binary.
//!
//! - **Sign-in**: the admin token in a POST form, checked by the same code as the
//!   admin API ([`Admin::check`]); then a session: a random id in an `HttpOnly`,
//!   `SameSite=Strict`, `Path=/console` cookie, 12 h, ended by sign-out or by a change
//!   of the admin token. Failed sign-ins are audited (`console_sign_in_failed`) and
//!   limited to 5 a minute per client address (then `429`).
//! - **CSRF**: every state-changing request carries the session's CSRF token (a
//!   hidden `csrf` form field).
//! - **Reads and actions** go through the admin API's route functions with the actor
//!   `console` ([`CONSOLE`]): the same checks, errors and audit events as the API.
//! - **Headers**: a strict Content-Security-Policy (no inline script), no caching,
//!   no framing. `server.console = false` turns every route here into a 404.

pub mod chart;
mod pages;
pub mod sampler;

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

use axum::Router;
use axum::extract::{ConnectInfo, FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde_json::Value;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::api::auth::Admin;
use crate::api::error::{ApiError, ApiResult};
use crate::audit::{Actor, AuditType, Details, NewAuditEvent};
use crate::state::{App, ReloadError};
use crate::store::DeliveryOp;

/// What every console action is done as: the admin API's routes, actor `console`.
pub const CONSOLE: Admin = Admin {
    actor: Actor::Console,
};

/// The session cookie's name.
pub const COOKIE: &str = "sluice_console";
/// How long a session lasts.
pub const SESSION_MS: i64 = 12 * 3_600_000;
/// Failed sign-ins allowed per client address per minute.
pub const SIGN_IN_FAILURES: usize = 5;

/// The Content-Security-Policy of every console answer.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'";

const APP_JS: &str = include_str!("app.js");
const APP_CSS: &str = include_str!("app.css");

/// One signed-in browser.
#[derive(Debug, Clone)]
pub struct Session {
    /// The token state-changing requests must carry.
    pub csrf: String,
    expires_ms: i64,
    /// SHA-256 of the admin token it signed in with: a changed token ends it.
    token_digest: [u8; 32],
}

/// The last reload, as the config page shows it.
#[derive(Debug, Clone)]
pub struct ReloadNote {
    pub at_ms: i64,
    pub actor: &'static str,
    /// The new file's SHA-256, or the error.
    pub result: Result<String, String>,
}

/// The console's state in [`App`]: sessions, the sign-in limiter, reload notes.
#[derive(Debug, Default)]
pub struct ConsoleState {
    sessions: Mutex<HashMap<String, Session>>,
    failures: Mutex<HashMap<IpAddr, VecDeque<i64>>>,
    loaded_at_ms: AtomicI64,
    last_reload: Mutex<Option<ReloadNote>>,
}

impl ConsoleState {
    pub fn note_loaded(&self, now_ms: i64) {
        self.loaded_at_ms.store(now_ms, Ordering::SeqCst);
    }

    /// When the configuration in force was loaded.
    pub fn loaded_at_ms(&self) -> i64 {
        self.loaded_at_ms.load(Ordering::SeqCst)
    }

    pub fn note_reload(&self, now_ms: i64, actor: Actor, result: &Result<String, ReloadError>) {
        let note = ReloadNote {
            at_ms: now_ms,
            actor: actor.name(),
            result: result.clone().map_err(|e| e.to_string()),
        };
        *self.last_reload.lock().expect("console lock") = Some(note);
    }

    pub fn last_reload(&self) -> Option<ReloadNote> {
        self.last_reload.lock().expect("console lock").clone()
    }

    /// Failed sign-ins of `ip` in the minute before `now`.
    fn recent_failures(&self, ip: IpAddr, now: i64) -> usize {
        let mut f = self.failures.lock().expect("console lock");
        let q = f.entry(ip).or_default();
        while q.front().is_some_and(|t| *t <= now - 60_000) {
            q.pop_front();
        }
        let n = q.len();
        if n == 0 {
            f.remove(&ip);
        }
        n
    }

    fn note_failure(&self, ip: IpAddr, now: i64) {
        let mut f = self.failures.lock().expect("console lock");
        // Bounded: a flood of addresses cannot grow this past a few thousand entries.
        if f.len() > 4096 {
            f.retain(|_, q| q.back().is_some_and(|t| *t > now - 60_000));
        }
        f.entry(ip).or_default().push_back(now);
    }

    fn open(&self, token_digest: [u8; 32], now: i64) -> (String, Session) {
        let s = Session {
            csrf: random_hex(),
            expires_ms: now + SESSION_MS,
            token_digest,
        };
        let id = random_hex();
        let mut m = self.sessions.lock().expect("console lock");
        m.retain(|_, s| s.expires_ms > now);
        m.insert(id.clone(), s.clone());
        (id, s)
    }

    fn find(&self, id: &str, token_digest: &[u8; 32], now: i64) -> Option<Session> {
        let mut m = self.sessions.lock().expect("console lock");
        match m.get(id) {
            Some(s) if s.expires_ms > now && bool::from(s.token_digest.ct_eq(token_digest)) => {
                Some(s.clone())
            }
            Some(_) => {
                m.remove(id);
                None
            }
            None => None,
        }
    }

    fn close(&self, id: &str) {
        self.sessions.lock().expect("console lock").remove(id);
    }
}

/// 32 random bytes, hex.
fn random_hex() -> String {
    let mut b = [0u8; 32];
    getrandom::getrandom(&mut b).expect("the OS random source");
    hex::encode(b)
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The session id the request's cookie names.
fn cookie_id(h: &HeaderMap) -> Option<String> {
    for v in h.get_all(header::COOKIE) {
        let Ok(v) = v.to_str() else { continue };
        for part in v.split(';') {
            if let Some((k, val)) = part.trim().split_once('=')
                && k == COOKIE
                && !val.is_empty()
            {
                return Some(val.to_string());
            }
        }
    }
    None
}

/// The request's live session, if it has one.
fn session_of(app: &App, h: &HeaderMap) -> Option<(String, Session)> {
    let id = cookie_id(h)?;
    let rt = app.runtime();
    let token = rt.config.server.admin_token.as_ref()?;
    let s = app
        .console
        .find(&id, &digest(token.expose()), app.intake.clock.now_ms())?;
    Some((id, s))
}

/// A signed-in request. Without a session, a GET is sent to the sign-in page and
/// anything else is refused `401 unauthorized`.
pub struct Signed {
    pub id: String,
    pub session: Session,
}

impl FromRequestParts<Arc<App>> for Signed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Response> {
        match session_of(app, &parts.headers) {
            Some((id, session)) => Ok(Signed { id, session }),
            None if parts.method == Method::GET => {
                Err(Redirect::to("/console/signin").into_response())
            }
            None => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "sign in to the console first",
            )
            .into_response()),
        }
    }
}

impl Signed {
    /// The CSRF check of a state-changing request: the form's `csrf` must be this
    /// session's token (`403 csrf` otherwise).
    #[allow(
        clippy::result_large_err,
        reason = "the refusal is the answer, built once"
    )]
    fn check(&self, form: &HashMap<String, String>) -> Result<(), Response> {
        let given = form.get("csrf").map_or(&[][..], |s| s.as_bytes());
        if !given.is_empty() && bool::from(given.ct_eq(self.session.csrf.as_bytes())) {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "csrf",
                "missing or wrong CSRF token: reload the page and try again",
            )
            .into_response())
        }
    }
}

/// A form body (urlencoded), as a map; a body that does not parse is empty.
pub struct FormMap(pub HashMap<String, String>);

impl<S: Send + Sync> axum::extract::FromRequest<S> for FormMap {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Response> {
        match axum::Form::<HashMap<String, String>>::from_request(req, state).await {
            Ok(f) => Ok(FormMap(f.0)),
            Err(e) => {
                Err(ApiError::bad_request(format!("bad form: {}", e.body_text())).into_response())
            }
        }
    }
}

/// The console's routes (under `/console`), each behind the `guard` (`server.console`,
/// security headers).
pub fn router(app: Arc<App>) -> Router<Arc<App>> {
    Router::new()
        .route(
            "/console",
            get(|| async { Redirect::permanent("/console/") }),
        )
        .route("/console/", get(overview))
        .route("/console/overview.json", get(overview_json))
        .route("/console/app.js", get(app_js))
        .route("/console/app.css", get(app_css))
        .route("/console/signin", get(sign_in_page).post(sign_in))
        .route("/console/signout", post(sign_out))
        .route("/console/destinations/{id}", get(destination))
        .route("/console/destinations/{id}/series.json", get(series_json))
        .route("/console/destinations/{id}/pause", post(pause))
        .route("/console/destinations/{id}/resume", post(resume))
        .route("/console/destinations/{id}/test", post(test_send))
        .route("/console/dlq/replay", post(dlq_replay))
        .route("/console/dlq/discard", post(dlq_discard))
        .route("/console/events", get(event_lookup))
        .route("/console/audit", get(audit))
        .route("/console/audit/export", get(audit_export))
        .route("/console/config", get(config_page))
        .route("/console/reload", post(reload))
        .layer(middleware::from_fn_with_state(app, guard))
}

/// `server.console = false` → 404; and the security headers of every answer.
async fn guard(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    if !app.runtime().config.server.console {
        return ApiError::not_found("the console is turned off (server.console = false)")
            .into_response();
    }
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn html(status: StatusCode, m: maud::Markup) -> Response {
    let mut r = (status, m.into_string()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r
}

fn asset(body: &'static str, ct: &'static str) -> Response {
    let mut r = body.into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    r
}

async fn app_js() -> Response {
    asset(APP_JS, "text/javascript; charset=utf-8")
}

async fn app_css() -> Response {
    asset(APP_CSS, "text/css; charset=utf-8")
}

/// The JSON body of an admin route's answer, or its error.
pub async fn json_of(r: ApiResult) -> Result<Value, ApiError> {
    let resp = r?;
    let bytes = axum::body::to_bytes(resp.into_body(), 256 << 20)
        .await
        .map_err(|e| ApiError::unavailable(format!("cannot read the answer: {e}")))?;
    Ok(serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

// ---- sign-in ----

async fn sign_in_page(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if session_of(&app, &headers).is_some() {
        return Redirect::to("/console/").into_response();
    }
    let enabled = app.runtime().config.server.admin_token.is_some();
    html(StatusCode::OK, pages::sign_in(enabled, None))
}

async fn sign_in(
    State(app): State<Arc<App>>,
    ext: axum::http::Extensions,
    FormMap(form): FormMap,
) -> Response {
    let ip = ext
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
    let now = app.intake.clock.now_ms();
    let Some(token) = app.runtime().config.server.admin_token.clone() else {
        return html(StatusCode::FORBIDDEN, pages::sign_in(false, None));
    };
    if app.console.recent_failures(ip, now) >= SIGN_IN_FAILURES {
        tracing::warn!(client = %ip, "console: sign-in refused, too many failures");
        let mut r = html(
            StatusCode::TOO_MANY_REQUESTS,
            pages::sign_in(
                true,
                Some("Too many failed sign-ins from this address: wait a minute."),
            ),
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
        return r;
    }
    let given = form.get("token").map(String::as_str).unwrap_or_default();
    let mut h = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&format!("Bearer {given}")) {
        h.insert(header::AUTHORIZATION, v);
    }
    if let Err(e) = Admin::check(&app, &h) {
        app.console.note_failure(ip, now);
        tracing::warn!(client = %ip, "console: failed sign-in");
        let ev = NewAuditEvent::record(
            AuditType::ConsoleSignInFailed,
            "console",
            Actor::Console,
            Details::new()
                .str("client", ip.to_string())
                .str("error", e.code()),
            now,
        );
        if let Err(e) = app.intake.store.delivery(vec![DeliveryOp::Audit(ev)]).await {
            tracing::warn!(error = %e, "could not audit a failed console sign-in");
        }
        return html(
            StatusCode::UNAUTHORIZED,
            pages::sign_in(true, Some("Wrong admin token.")),
        );
    }
    let (id, _) = app.console.open(digest(token.expose()), now);
    tracing::info!(client = %ip, "console: signed in");
    let mut r = Redirect::to("/console/").into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&format!(
            "{COOKIE}={id}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={}",
            SESSION_MS / 1000
        ))
        .expect("cookie is ASCII"),
    );
    r
}

async fn sign_out(State(app): State<Arc<App>>, s: Signed, FormMap(form): FormMap) -> Response {
    if let Err(r) = s.check(&form) {
        return r;
    }
    app.console.close(&s.id);
    let mut r = Redirect::to("/console/signin").into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&format!(
            "{COOKIE}=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0"
        ))
        .expect("cookie is ASCII"),
    );
    r
}

// ---- pages ----

#[derive(serde::Deserialize)]
pub struct NoticeQuery {
    notice: Option<String>,
    dlq_cursor: Option<String>,
    reason: Option<String>,
}

async fn overview(
    State(app): State<Arc<App>>,
    s: Signed,
    q: axum::extract::Query<NoticeQuery>,
) -> Response {
    match pages::overview_data(&app).await {
        Ok(d) => html(
            StatusCode::OK,
            pages::overview(&s.session, q.notice.as_deref(), &d),
        ),
        Err(e) => error_page(&s, &e),
    }
}

async fn overview_json(State(app): State<Arc<App>>, _: Signed) -> Response {
    match pages::overview_data(&app).await {
        Ok(d) => crate::api::error::json(
            StatusCode::OK,
            &serde_json::json!({
                "generated_at": crate::clock::rfc3339_ms(d.now_ms),
                "destinations": d.rows.iter().map(|r| r.view.json()).collect::<Vec<_>>(),
                "html": pages::overview_body(&d).into_string(),
            }),
        ),
        Err(e) => e.into_response(),
    }
}

async fn series_json(State(app): State<Arc<App>>, _: Signed, Path(id): Path<String>) -> Response {
    let q = crate::api::Q(crate::api::series::SeriesQuery::default());
    crate::api::series::get_series(State(app), CONSOLE, Path(id), q)
        .await
        .into_response()
}

async fn destination(
    State(app): State<Arc<App>>,
    s: Signed,
    Path(id): Path<String>,
    q: axum::extract::Query<NoticeQuery>,
) -> Response {
    let q = q.0;
    match pages::destination_data(&app, &id, q.dlq_cursor, q.reason).await {
        Ok(d) => html(
            StatusCode::OK,
            pages::destination(&s.session, q.notice.as_deref(), &d),
        ),
        Err(e) => error_page(&s, &e),
    }
}

#[derive(serde::Deserialize)]
pub struct LookupQuery {
    workspace: Option<String>,
    event_id: Option<String>,
}

async fn event_lookup(
    State(app): State<Arc<App>>,
    s: Signed,
    q: axum::extract::Query<LookupQuery>,
) -> Response {
    let q = q.0;
    let workspaces: Vec<String> = app
        .runtime()
        .config
        .workspaces
        .iter()
        .map(|w| w.id.clone())
        .collect();
    let result = match (&q.workspace, &q.event_id) {
        (Some(ws), Some(id)) if !id.is_empty() => {
            let tq = crate::api::events::TraceQuery::for_workspace(ws);
            Some(
                json_of(
                    crate::api::events::get_trace(
                        State(app.clone()),
                        CONSOLE,
                        Path(id.clone()),
                        crate::api::Q(tq),
                    )
                    .await,
                )
                .await,
            )
        }
        _ => None,
    };
    html(
        StatusCode::OK,
        pages::event_lookup(
            &s.session,
            &workspaces,
            q.workspace.as_deref(),
            q.event_id.as_deref(),
            result,
        ),
    )
}

#[derive(serde::Deserialize)]
pub struct AuditQuery {
    cursor: Option<String>,
}

async fn audit(
    State(app): State<Arc<App>>,
    s: Signed,
    q: axum::extract::Query<AuditQuery>,
) -> Response {
    let verify = json_of(crate::api::audit::verify(State(app.clone()), CONSOLE).await).await;
    let lq = crate::api::audit::ListQuery::page(50, q.0.cursor);
    let list =
        json_of(crate::api::audit::list(State(app.clone()), CONSOLE, crate::api::Q(lq)).await)
            .await;
    html(StatusCode::OK, pages::audit(&s.session, verify, list))
}

async fn audit_export(State(app): State<Arc<App>>, _: Signed) -> Response {
    let mut r = crate::api::audit::export(State(app), CONSOLE)
        .await
        .into_response();
    r.headers_mut().insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"sluice-audit.jsonl\""),
    );
    r
}

async fn config_page(
    State(app): State<Arc<App>>,
    s: Signed,
    q: axum::extract::Query<NoticeQuery>,
) -> Response {
    let rt = app.runtime();
    html(
        StatusCode::OK,
        pages::config(
            &s.session,
            q.notice.as_deref(),
            &rt.config,
            app.console.loaded_at_ms(),
            app.console.last_reload(),
        ),
    )
}

fn error_page(s: &Signed, e: &ApiError) -> Response {
    html(e.status(), pages::error(&s.session, e))
}

// ---- actions ----

/// Where to go after an action, with the notice to show there.
fn back(to: &str, notice: &str) -> Response {
    let n = crate::platforms::percent_encode(notice);
    Redirect::to(&format!("{to}?notice={n}")).into_response()
}

fn reason_body(form: &HashMap<String, String>) -> axum::body::Bytes {
    let reason = form.get("reason").cloned().unwrap_or_default();
    serde_json::to_vec(&serde_json::json!({ "reason": reason }))
        .unwrap_or_default()
        .into()
}

fn dest_url(id: &str) -> String {
    format!(
        "/console/destinations/{}",
        crate::platforms::percent_encode(id)
    )
}

/// A pause or resume from the destination page: the API's own handler, as `console`.
async fn pause(state: State<Arc<App>>, s: Signed, id: Path<String>, form: FormMap) -> Response {
    state_change(state, s, id, form, true).await
}

async fn resume(state: State<Arc<App>>, s: Signed, id: Path<String>, form: FormMap) -> Response {
    state_change(state, s, id, form, false).await
}

async fn state_change(
    State(app): State<Arc<App>>,
    s: Signed,
    Path(id): Path<String>,
    FormMap(form): FormMap,
    pause: bool,
) -> Response {
    if let Err(r) = s.check(&form) {
        return r;
    }
    let (app, path, body) = (State(app), Path(id.clone()), reason_body(&form));
    let r = if pause {
        crate::api::admin::pause_destination(app, CONSOLE, path, body).await
    } else {
        crate::api::admin::resume_destination(app, CONSOLE, path, body).await
    };
    let (done, not) = if pause {
        ("Paused.", "Not paused")
    } else {
        ("Resumed.", "Not resumed")
    };
    match json_of(r).await {
        Ok(_) => back(&dest_url(&id), done),
        Err(e) => back(&dest_url(&id), &format!("{not}: {}", e.message())),
    }
}

async fn test_send(
    State(app): State<Arc<App>>,
    s: Signed,
    Path(id): Path<String>,
    FormMap(form): FormMap,
) -> Response {
    if let Err(r) = s.check(&form) {
        return r;
    }
    let live = form.get("live").is_some_and(|v| v == "1" || v == "on");
    let body = serde_json::to_vec(&serde_json::json!({ "live": live })).unwrap_or_default();
    let r =
        crate::api::test_send::test_destination(State(app), CONSOLE, Path(id.clone()), body.into())
            .await;
    match json_of(r).await {
        Ok(v) => back(&dest_url(&id), &pages::test_notice(&v)),
        Err(e) => back(
            &dest_url(&id),
            &format!("Test send refused: {}", e.message()),
        ),
    }
}

/// The DLQ action body from the form: destination, optional window, dry run.
fn dlq_body(form: &HashMap<String, String>, dry_run: bool) -> axum::body::Bytes {
    let opt = |k: &str| form.get(k).filter(|v| !v.trim().is_empty()).cloned();
    serde_json::to_vec(&serde_json::json!({
        "destination": form.get("destination").cloned().unwrap_or_default(),
        "from": opt("from"),
        "to": opt("to"),
        "dry_run": dry_run,
    }))
    .unwrap_or_default()
    .into()
}

async fn dlq_action(
    app: Arc<App>,
    s: Signed,
    form: HashMap<String, String>,
    replay: bool,
) -> Response {
    if let Err(r) = s.check(&form) {
        return r;
    }
    let dest = form.get("destination").cloned().unwrap_or_default();
    let confirmed = form.get("confirm").is_some_and(|v| v == "1");
    let body = dlq_body(&form, !confirmed);
    let r = if replay {
        crate::api::dlq::replay(State(app), CONSOLE, body).await
    } else {
        crate::api::dlq::discard(State(app), CONSOLE, body).await
    };
    match json_of(r).await {
        Ok(v) if !confirmed => html(
            StatusCode::OK,
            pages::dlq_confirm(&s.session, replay, &form, &v),
        ),
        Ok(v) => back(&dest_url(&dest), &pages::dlq_notice(replay, &v)),
        Err(e) => back(
            &dest_url(&dest),
            &format!(
                "{} refused: {}",
                if replay { "Replay" } else { "Discard" },
                e.message()
            ),
        ),
    }
}

async fn dlq_replay(State(app): State<Arc<App>>, s: Signed, FormMap(form): FormMap) -> Response {
    dlq_action(app, s, form, true).await
}

async fn dlq_discard(State(app): State<Arc<App>>, s: Signed, FormMap(form): FormMap) -> Response {
    dlq_action(app, s, form, false).await
}

async fn reload(State(app): State<Arc<App>>, s: Signed, FormMap(form): FormMap) -> Response {
    if let Err(r) = s.check(&form) {
        return r;
    }
    match json_of(crate::api::admin::reload(State(app), CONSOLE).await).await {
        Ok(v) => back(
            "/console/config",
            &format!(
                "Reloaded: config sha256 {}",
                v["config_sha256"].as_str().unwrap_or("?")
            ),
        ),
        Err(e) => back(
            "/console/config",
            &format!("Reload failed: {}", e.message()),
        ),
    }
}
