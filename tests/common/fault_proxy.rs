//! A reverse proxy on loopback in front of Azurite that answers chosen requests with an error
//! instead of forwarding them, and records what it saw (with each request's `x-ms-version`).

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::State;
use axum::http::{Request, Response, StatusCode};

/// Decides, for the n-th request (counted from 1) that matches, what to answer instead.
pub type Rule = Box<dyn Fn(&str, &str, usize) -> Option<StatusCode> + Send + Sync>;

struct Shared {
    upstream: url::Url,
    client: reqwest::Client,
    rule: InjectRule,
    matched: Mutex<usize>,
    seen: Mutex<Vec<(String, String, u16)>>,
    versions: Mutex<Vec<Versioned>>,
}

pub struct FaultProxy {
    pub port: u16,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Proxies to `upstream` (scheme, host and port of Azurite), trusting `ca_pem`.
    pub async fn start(upstream: url::Url, ca_pem: &str, rule: Rule) -> FaultProxy {
        let rule: InjectRule =
            Box::new(move |method, query, n| rule(method, query, n).map(Injected::status));
        Self::start_injecting(upstream, ca_pem, rule).await
    }

    /// [`FaultProxy::start`] with answers that carry a Storage error code of the rule's choice.
    pub async fn start_injecting(upstream: url::Url, ca_pem: &str, rule: InjectRule) -> FaultProxy {
        let client = super::client_trusting(ca_pem);
        let shared = Arc::new(Shared {
            upstream,
            client,
            rule,
            matched: Mutex::new(0),
            seen: Mutex::new(Vec::new()),
            versions: Mutex::new(Vec::new()),
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

    /// The `x-ms-version` of every request, in order.
    pub fn versions(&self) -> Vec<Versioned> {
        self.shared.versions.lock().unwrap().clone()
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
    shared.versions.lock().unwrap().push(Versioned {
        method: method.clone(),
        path_and_query: path_and_query.clone(),
        x_ms_version: request
            .headers()
            .get("x-ms-version")
            .map(|v| v.to_str().unwrap_or("(not text)").to_owned()),
    });
    let injected = {
        let mut matched = shared.matched.lock().unwrap();
        *matched += 1;
        (shared.rule)(&method, &query, *matched)
    };
    if let Some(injected) = injected.as_ref().filter(|i| !i.after_forwarding) {
        shared
            .seen
            .lock()
            .unwrap()
            .push((method, query, injected.status.as_u16()));
        return error_answer(injected);
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
    if let Some(injected) = &injected {
        // Carried out upstream; the client hears this instead.
        shared
            .seen
            .lock()
            .unwrap()
            .push((method, query, injected.status.as_u16()));
        return error_answer(injected);
    }
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

/// An error answer the proxy gives instead of forwarding.
#[derive(Clone, Debug)]
pub struct Injected {
    pub status: StatusCode,
    /// `<Code>` of the XML body, and the `x-ms-error-code` header when `header`.
    pub code: String,
    pub message: String,
    pub header: bool,
    /// Forward the request first (its write takes effect), then answer this instead: an
    /// answer lost on the way back.
    pub after_forwarding: bool,
}

impl Injected {
    /// A bare status, as [`Rule`]s give (code `Injected<status>`, no `x-ms-error-code`).
    pub fn status(status: StatusCode) -> Injected {
        Injected {
            status,
            code: format!("Injected{}", status.as_u16()),
            message: "injected by the test proxy".into(),
            header: false,
            after_forwarding: false,
        }
    }

    /// This answer, given after the request was carried out upstream.
    pub fn after_forwarding(mut self) -> Injected {
        self.after_forwarding = true;
        self
    }

    /// What Storage answers: the code in `x-ms-error-code` and in the XML body, and a message
    /// ending with the request id and time lines ("Status and error codes", Azure Storage).
    pub fn storage(status: StatusCode, code: &str, message: &str) -> Injected {
        Injected {
            status,
            code: code.into(),
            message: format!(
                "{message}\nRequestId:0f1e2d3c-a01e-0042-0000-000000000000\nTime:2026-11-27T05:00:00.0000000Z"
            ),
            header: true,
            after_forwarding: false,
        }
    }
}

/// Like [`Rule`], with the whole answer chosen.
pub type InjectRule = Box<dyn Fn(&str, &str, usize) -> Option<Injected> + Send + Sync>;

/// One request as the proxy received it.
#[derive(Clone, Debug)]
pub struct Versioned {
    pub method: String,
    pub path_and_query: String,
    pub x_ms_version: Option<String>,
}

/// Storage's error answer for `injected`.
fn error_answer(injected: &Injected) -> Response<Body> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>{}</Code><Message>{}</Message></Error>",
        injected.code, injected.message
    );
    let mut response = Response::builder()
        .status(injected.status)
        .header("content-type", "application/xml")
        .header("retry-after", "0");
    if injected.header {
        response = response.header("x-ms-error-code", &injected.code);
    }
    response.body(Body::from(body)).unwrap()
}
