//! A Lambda Runtime API on loopback for one sandbox: what `lambda_runtime` (1.5) calls.
//!
//! - `GET /2018-06-01/runtime/invocation/next` waits for the next invocation and answers its
//!   event, with `Lambda-Runtime-Aws-Request-Id`, `Lambda-Runtime-Deadline-Ms`,
//!   `Lambda-Runtime-Invoked-Function-Arn` and `Lambda-Runtime-Trace-Id`.
//! - `POST /2018-06-01/runtime/invocation/{id}/response` is the function's answer, and
//!   `POST .../invocation/{id}/error` its error (`{"errorType", "errorMessage"}`); both 202.
//! - `POST /2018-06-01/runtime/init/error` reports a failed start; 202.
//!
//! Anything else is 404. Each sandbox (each process) gets a server of its own on a port of its
//! own, as each Lambda sandbox has its own endpoint: a request still waiting for `next` from a
//! killed process can never take the invocation meant for its successor, since the successor's
//! invocations are offered on another server, and the old one's offers end with the sandbox.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::Response;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};

/// Path prefix of every call.
const PREFIX: &str = "/2018-06-01/runtime/";

/// The largest body read: Lambda's 6 MiB response limit, with room.
const MAX_BODY_BYTES: usize = 7 * 1024 * 1024;

/// One invocation offered to the process.
#[derive(Debug)]
pub(super) struct Offer {
    /// `Lambda-Runtime-Aws-Request-Id`.
    pub(super) request_id: String,
    /// The invocation event.
    pub(super) event: Value,
    /// `Lambda-Runtime-Deadline-Ms`: epoch milliseconds.
    pub(super) deadline_ms: u64,
    /// `Lambda-Runtime-Invoked-Function-Arn`.
    pub(super) function_arn: String,
    /// Where the answer goes.
    pub(super) reply: oneshot::Sender<Reply>,
}

/// What the process answered an invocation with.
#[derive(Debug)]
pub(super) enum Reply {
    /// `POST .../response`: the function's output.
    Response(Value),
    /// `POST .../error`, or a response that is not JSON: the error, in one line.
    Error(String),
}

/// What the handlers share.
#[derive(Debug)]
struct Api {
    /// Offers wait here until a `next` takes them.
    offers: tokio::sync::Mutex<mpsc::Receiver<Offer>>,
    /// Offers taken, by request id, until answered.
    taken: Mutex<HashMap<String, oneshot::Sender<Reply>>>,
    /// The message of a `POST /init/error`.
    init_error: watch::Sender<Option<String>>,
}

/// A running Runtime API; dropping it stops the server.
#[derive(Debug)]
pub(super) struct RuntimeApi {
    addr: SocketAddr,
    offers: mpsc::Sender<Offer>,
    init_error: watch::Receiver<Option<String>>,
    stop: Option<oneshot::Sender<()>>,
}

impl RuntimeApi {
    /// Binds 127.0.0.1 on a free port and serves.
    pub(super) async fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await?;
        let addr = listener.local_addr()?;
        let (offers, receiver) = mpsc::channel(1);
        let (init_tx, init_error) = watch::channel(None);
        let api = Arc::new(Api {
            offers: tokio::sync::Mutex::new(receiver),
            taken: Mutex::new(HashMap::new()),
            init_error: init_tx,
        });
        let router = Router::new().fallback(handle).with_state(api);
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        drop(tokio::spawn(async move {
            let stop = async move {
                let _ = stop_rx.await;
            };
            if let Err(error) = axum::serve(listener, router)
                .with_graceful_shutdown(stop)
                .await
            {
                tracing::warn!(%error, "the Runtime API server stopped with an error");
            }
        }));
        Ok(Self {
            addr,
            offers,
            init_error,
            stop: Some(stop_tx),
        })
    }

    /// `host:port`, the value of `AWS_LAMBDA_RUNTIME_API`.
    pub(super) fn host_port(&self) -> String {
        self.addr.to_string()
    }

    /// Offers an invocation; `false` when the server is gone.
    pub(super) async fn offer(&self, offer: Offer) -> bool {
        self.offers.send(offer).await.is_ok()
    }

    /// Resolves with the message of a `POST /init/error`, once one came.
    pub(super) async fn init_error(&mut self) -> String {
        match self.init_error.wait_for(Option::is_some).await {
            Ok(message) => message.clone().unwrap_or_default(),
            // The server is gone: no message will come.
            Err(_) => std::future::pending().await,
        }
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Every request: routed by method and path.
async fn handle(State(api): State<Arc<Api>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let Some(route) = parts.uri.path().strip_prefix(PREFIX) else {
        return status(StatusCode::NOT_FOUND, "unknown path");
    };
    let route: Vec<&str> = route.split('/').collect();
    match (parts.method, route.as_slice()) {
        (Method::GET, ["invocation", "next"]) => next(&api).await,
        (Method::POST, ["invocation", id, "response"]) => {
            let reply = match read_json(body).await {
                Ok(output) => Reply::Response(output),
                Err(why) => Reply::Error(format!("the response is not JSON: {why}")),
            };
            answer(&api, id, reply)
        }
        (Method::POST, ["invocation", id, "error"]) => {
            let text = match read_json(body).await {
                Ok(error) => error_text(&error),
                Err(why) => format!("an error the runtime could not read: {why}"),
            };
            answer(&api, id, Reply::Error(text))
        }
        (Method::POST, ["init", "error"]) => {
            let text = match read_json(body).await {
                Ok(error) => error_text(&error),
                Err(why) => format!("an init error the runtime could not read: {why}"),
            };
            api.init_error.send_replace(Some(text));
            status(StatusCode::ACCEPTED, "")
        }
        _ => status(StatusCode::NOT_FOUND, "unknown path"),
    }
}

/// `GET .../invocation/next`: waits for an offer and hands its event over.
async fn next(api: &Api) -> Response {
    let offer = api.offers.lock().await.recv().await;
    let Some(offer) = offer else {
        return status(StatusCode::GONE, "this sandbox is shut down");
    };
    let body = offer.event.to_string();
    let request_id = offer.request_id.clone();
    let mut response = Response::new(Body::from(body));
    let headers = response.headers_mut();
    let mut set = |name: &'static str, value: &str| {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(name, value);
        }
    };
    set("content-type", "application/json");
    set("lambda-runtime-aws-request-id", &offer.request_id);
    set("lambda-runtime-deadline-ms", &offer.deadline_ms.to_string());
    set("lambda-runtime-invoked-function-arn", &offer.function_arn);
    set(
        "lambda-runtime-trace-id",
        &format!(
            "Root=1-00000000-{:024x};Sampled=0",
            fastrand::u128(..) >> 32
        ),
    );
    api.taken
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(request_id, offer.reply);
    response
}

/// Hands the process's answer to whoever waits for invocation `id`.
fn answer(api: &Api, id: &str, reply: Reply) -> Response {
    let waiting = api
        .taken
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(id);
    match waiting {
        Some(sender) => {
            // The invocation may have been given up on (a timeout): nothing to tell.
            let _ = sender.send(reply);
            status(StatusCode::ACCEPTED, "")
        }
        None => status(
            StatusCode::BAD_REQUEST,
            "unknown or already answered request id",
        ),
    }
}

/// `errorType: errorMessage`, or the body as it came.
fn error_text(error: &Value) -> String {
    let field = |name: &str| error.get(name).and_then(Value::as_str);
    match (field("errorType"), field("errorMessage")) {
        (Some(kind), Some(message)) => format!("{kind}: {message}"),
        (None, Some(message)) => message.to_owned(),
        (Some(kind), None) => kind.to_owned(),
        (None, None) => error.to_string(),
    }
}

async fn read_json(body: Body) -> Result<Value, String> {
    let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|e| e.to_string())?;
    serde_json::from_slice(&bytes).map_err(|e| e.to_string())
}

fn status(code: StatusCode, message: &str) -> Response {
    let mut response = Response::new(Body::from(message.to_owned()));
    *response.status_mut() = code;
    response
}
