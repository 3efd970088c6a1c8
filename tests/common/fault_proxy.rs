//! A reverse proxy on loopback in front of Azurite that answers chosen requests with an error
//! instead of forwarding them, and records what it saw.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::State;
use axum::http::{Request, Response, StatusCode};

/// Decides, for the n-th request (counted from 1) that matches, what to answer instead.
pub type Rule = Box<dyn Fn(&str, &str, usize) -> Option<StatusCode> + Send + Sync>;

struct Shared {
    upstream: url::Url,
    client: reqwest::Client,
    rule: Rule,
    matched: Mutex<usize>,
    seen: Mutex<Vec<(String, String, u16)>>,
}

pub struct FaultProxy {
    pub port: u16,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Proxies to `upstream` (scheme, host and port of Azurite), trusting `ca_pem`.
    pub async fn start(upstream: url::Url, ca_pem: &str, rule: Rule) -> FaultProxy {
        let client = super::client_trusting(ca_pem);
        let shared = Arc::new(Shared {
            upstream,
            client,
            rule,
            matched: Mutex::new(0),
            seen: Mutex::new(Vec::new()),
        });
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(Arc::clone(&shared));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FaultProxy { port, shared, task }
    }

    /// `(method, query, status answered)` of every request.
    pub fn seen(&self) -> Vec<(String, String, u16)> {
        self.shared.seen.lock().unwrap().clone()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn forward(State(shared): State<Arc<Shared>>, request: Request<Body>) -> Response<Body> {
    let method = request.method().to_string();
    let path_and_query = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let query = request.uri().query().unwrap_or_default().to_owned();
    let injected = {
        let mut matched = shared.matched.lock().unwrap();
        *matched += 1;
        (shared.rule)(&method, &query, *matched)
    };
    if let Some(status) = injected {
        shared
            .seen
            .lock()
            .unwrap()
            .push((method, query, status.as_u16()));
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>Injected{}</Code><Message>injected by the test proxy</Message></Error>",
            status.as_u16()
        );
        return Response::builder()
            .status(status)
            .header("content-type", "application/xml")
            .header("retry-after", "0")
            .body(Body::from(body))
            .unwrap();
    }
    let url = shared.upstream.join(&path_and_query).unwrap();
    let mut upstream = shared.client.request(request.method().clone(), url);
    for (name, value) in request.headers() {
        if name != "host" {
            upstream = upstream.header(name, value);
        }
    }
    let body = axum::body::to_bytes(request.into_body(), usize::MAX)
        .await
        .unwrap();
    let answer = upstream.body(body).send().await.unwrap();
    let status = answer.status();
    shared
        .seen
        .lock()
        .unwrap()
        .push((method, query, status.as_u16()));
    let mut response = Response::builder().status(status);
    for (name, value) in answer.headers() {
        if name != "transfer-encoding" && name != "content-length" {
            response = response.header(name, value);
        }
    }
    response
        .body(Body::from(answer.bytes().await.unwrap()))
        .unwrap()
}
