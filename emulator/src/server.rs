//! The wire: TLS (rustls with aws-lc-rs) on a loopback listener, one hyper connection per socket
//! (HTTP/1.1), and the front door every request passes through: control routes under
//! `/_emulator/`, injected faults (including dropping the connection), the request log, the
//! `x-ms-request-id` headers, then dispatch by path to the service modules.

use std::{sync::Arc, time::Duration};

use anyhow::{Context, Result};
use axum::{
    Json, Router,
    body::{Body, Bytes},
    extract::{Request, State as AxState},
    http::{HeaderMap, HeaderValue, Method, StatusCode},
    response::{IntoResponse, Response},
    routing::{any, get, post},
};
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use serde_json::{Value, json};
use tokio::{net::TcpListener, sync::Notify, sync::watch};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::{
    arm, entra,
    faults::{self, Fault, FaultAction},
    imds, oidc,
    request_log::{self, RecordedRequest},
    state::{Shared, arm_time, now},
};

/// A request as the service modules see it: body read, query parsed.
pub struct Req {
    pub method: Method,
    pub path: String,
    pub query: String,
    pub params: Vec<(String, String)>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Req {
    /// A query parameter (name matched case-insensitively, as ARM does).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as JSON (`Null` when empty).
    pub fn json(&self) -> Result<Value, serde_json::Error> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            Ok(Value::Null)
        } else {
            serde_json::from_slice(&self.body)
        }
    }

    pub fn form(&self) -> Vec<(String, String)> {
        url::form_urlencoded::parse(&self.body)
            .into_owned()
            .collect()
    }

    pub fn segments(&self) -> Vec<&str> {
        self.path.trim_matches('/').split('/').collect()
    }

    /// The path segments lower-cased, for case-insensitive matching (ARM paths are).
    pub fn segments_lower(&self) -> Vec<String> {
        self.segments()
            .iter()
            .map(|x| x.to_ascii_lowercase())
            .collect()
    }
}

/// Tells the connection task to drop the connection (fault `DropConnection`).
#[derive(Clone)]
struct ConnectionKill(Arc<Notify>);

pub fn tls_acceptor(cert_pem: &str, key_pem: &str) -> Result<TlsAcceptor> {
    let certs =
        CertificateDer::pem_slice_iter(cert_pem.as_bytes()).collect::<Result<Vec<_>, _>>()?;
    let key =
        PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).context("reading the server key")?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Accepts connections until `stop` turns true; each connection is served on its own task.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: Router,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            accepted = listener.accept() => {
                let Ok((tcp, _peer)) = accepted else { continue };
                let _ = tcp.set_nodelay(true);
                let (tls, app, stop) = (tls.clone(), app.clone(), stop.clone());
                tokio::spawn(async move {
                    match tls {
                        Some(acceptor) => {
                            // A failed handshake (a client that does not trust the CA) just closes.
                            if let Ok(Ok(stream)) = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                                serve_connection(TokioIo::new(stream), app, stop).await;
                            }
                        }
                        None => serve_connection(TokioIo::new(tcp), app, stop).await,
                    }
                });
            }
        }
    }
}

async fn serve_connection<I>(io: I, app: Router, mut stop: watch::Receiver<bool>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let kill = Arc::new(Notify::new());
    let conn_kill = ConnectionKill(kill.clone());
    let service =
        hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(conn_kill.clone());
            app.clone().oneshot(req.map(Body::new))
        });
    let builder = auto::Builder::new(TokioExecutor::new());
    let conn = builder.serve_connection(io, service);
    tokio::select! {
        _ = conn => {}
        _ = kill.notified() => {}
        _ = stop.changed() => {}
    }
}

/// The HTTPS router: control routes, then everything else through [`front`].
pub fn router(state: Shared) -> Router {
    Router::new()
        .route(
            "/_emulator/faults",
            post(add_fault).delete(clear_faults).get(list_faults),
        )
        .route("/_emulator/requests", get(requests))
        .route("/_emulator/templates", get(templates))
        .route("/_emulator/downloads", get(downloads))
        .fallback(front)
        .with_state(state)
}

/// The plain-HTTP IMDS router (`config.imds_http`).
pub fn imds_router(state: Shared) -> Router {
    Router::new()
        .route("/metadata/identity/oauth2/token", any(front))
        .route("/metadata/endpoints", any(front))
        .with_state(state)
}

/// `POST /_emulator/faults` takes one fault or an array of them.
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum OneOrMore {
    One(Fault),
    More(Vec<Fault>),
}

async fn add_fault(AxState(s): AxState<Shared>, body: Bytes) -> Response {
    let faults = match serde_json::from_slice(&body) {
        Ok(OneOrMore::One(f)) => vec![f],
        Ok(OneOrMore::More(f)) => f,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("not a fault or a list of faults: {e}"),
            )
                .into_response();
        }
    };
    for f in faults {
        if let Err(e) = s.faults.add(f) {
            return (StatusCode::BAD_REQUEST, e.to_string()).into_response();
        }
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn clear_faults(AxState(s): AxState<Shared>) -> StatusCode {
    s.faults.clear();
    StatusCode::NO_CONTENT
}

async fn list_faults(AxState(s): AxState<Shared>) -> Json<Vec<Fault>> {
    Json(s.faults.list())
}

async fn requests(AxState(s): AxState<Shared>) -> Json<Vec<RecordedRequest>> {
    Json(s.log.all())
}

async fn templates(AxState(s): AxState<Shared>) -> Json<Value> {
    let views = s.templates.lock().unwrap().views(&s);
    Json(Value::Array(views.into_iter().map(|(_, v)| v).collect()))
}

async fn downloads(AxState(s): AxState<Shared>) -> Json<Value> {
    Json(serde_json::to_value(s.downloads.lock().unwrap().clone()).unwrap_or_default())
}

/// Faults, logging and dispatch for every non-control request.
async fn front(AxState(s): AxState<Shared>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 256 * 1024 * 1024)
        .await
        .unwrap_or_default();
    let query = parts.uri.query().unwrap_or("").to_string();
    let req = Req {
        params: url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect(),
        method: parts.method.clone(),
        path: parts.uri.path().to_string(),
        query,
        headers: parts.headers.clone(),
        body,
    };
    let mut record = RecordedRequest {
        time: arm_time(now()),
        method: req.method.to_string(),
        path: req.path.clone(),
        query: request_log::redact_query(&req.query),
        headers: request_log::redact_headers(&req.headers),
        body: request_log::redact_body(req.header("content-type"), &req.body),
        status: 0,
        fault: None,
    };
    let request_id = uuid::Uuid::new_v4().to_string();
    let correlation_id = req
        .header("x-ms-correlation-request-id")
        .map(str::to_owned)
        .unwrap_or_else(|| request_id.clone());

    let mut response = match s.faults.take(req.method.as_str(), &req.path, &req.query) {
        Some(FaultAction::DropConnection) => {
            record.fault = Some("drop_connection".into());
            s.log.push(record);
            if let Some(kill) = parts.extensions.get::<ConnectionKill>() {
                kill.0.notify_one();
            }
            return std::future::pending::<Response>().await;
        }
        Some(FaultAction::Status {
            code,
            retry_after,
            body,
        }) => {
            record.fault = Some(format!("status {code}"));
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut r = (
                status,
                Json(body.unwrap_or_else(|| faults::default_error_body(code))),
            )
                .into_response();
            if let Some(secs) = retry_after {
                r.headers_mut()
                    .insert("retry-after", HeaderValue::from(secs));
            }
            r
        }
        Some(FaultAction::Delay(d)) => {
            record.fault = Some(format!("delay {}ms", d.as_millis()));
            tokio::time::sleep(d).await;
            route(&s, &req).await
        }
        Some(FaultAction::ApplyThenDrop) => {
            let applied = route(&s, &req).await;
            // The status the request really got, though the client never sees it.
            record.status = applied.status().as_u16();
            record.fault = Some(format!("applied ({}), then drop_connection", record.status));
            s.log.push(record);
            if let Some(kill) = parts.extensions.get::<ConnectionKill>() {
                kill.0.notify_one();
            }
            return std::future::pending::<Response>().await;
        }
        Some(FaultAction::ApplyThenStatus { code }) => {
            let applied = route(&s, &req).await;
            record.fault = Some(format!(
                "applied ({}), then status {code}",
                applied.status().as_u16()
            ));
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::GATEWAY_TIMEOUT);
            (status, Json(faults::default_error_body(code))).into_response()
        }
        None => route(&s, &req).await,
    };
    let headers = response.headers_mut();
    for (name, value) in [
        ("x-ms-request-id", &request_id),
        ("x-ms-correlation-request-id", &correlation_id),
        (
            "x-ms-routing-request-id",
            &format!("WESTUS2:{}:{request_id}", now().unix_timestamp()),
        ),
    ] {
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.entry(name).or_insert(v);
        }
    }
    headers
        .entry("cache-control")
        .or_insert(HeaderValue::from_static("no-cache"));
    record.status = response.status().as_u16();
    s.log.push(record);
    response
}

/// Dispatch by path to the service that owns it.
async fn route(s: &Shared, req: &Req) -> Response {
    let seg = req.segments();
    let lower = req.segments_lower();
    let l: Vec<&str> = lower.iter().map(String::as_str).collect();
    match l.as_slice() {
        ["metadata", "identity", "oauth2", "token"] => imds::token(s, req),
        ["metadata", "endpoints"] => imds::endpoints(s, req),
        ["subscriptions", ..] => arm::dispatch(s, req, &seg).await,
        [_, "oauth2", "v2.0", "token"] | [_, "oauth2", "token"] if req.method == Method::POST => entra::token(s, seg[0], req),
        [_, "v2.0", ".well-known", "openid-configuration"] | [_, ".well-known", "openid-configuration"] => {
            entra::openid_configuration(s, seg[0])
        }
        [_, "discovery", "v2.0", "keys"] | [_, "discovery", "keys"] => entra::keys(s),
        [_, _, "_apis", "distributedtask", "hubs", _, "plans", _, "jobs", _, "oidctoken"] => oidc::token(s, req, &seg),
        ["github", _, "_apis", "distributedtask", "hubs", "actions", "plans", _, "jobs", _, "idtoken"] => oidc::github_token(s, req),
        _ => (StatusCode::NOT_FOUND, Json(json!({"error": {"code": "NotFound", "message": format!("aib-emulator serves no route {} {}", req.method, req.path)}}))).into_response(),
    }
}
