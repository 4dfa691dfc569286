//! HTTP front end: routing, body limits, fault timing and error responses.
//!
//! Routing is done by hand on the raw (still percent-encoded) path rather than with
//! axum's path extractor, so that every failure, including a wrong method or an ARN
//! that does not decode, gets the same REST-JSON error form instead of axum's plain
//! text rejections.
//!
//! # Error responses
//!
//! Status, `Content-Type: application/json`, `X-Amzn-ErrorType: <Exception>` and body
//! `{"Type": "User"|"Server", "message": ...}` as Lambda answers. With
//! [`super::EmulatorBuilder::omit_error_type_header`] the header is left out and the
//! body's `Type` carries the exception name instead, as some local emulators answer.
//!
//! | case | status | exception |
//! |---|---|---|
//! | rule broken, malformed JSON, bad query, bad marker | 400 | `InvalidParameterValueException` |
//! | stale, unknown or revoked token | 400 | `InvalidParameterValueException`, message starts `Invalid checkpoint token` |
//! | ARN that does not percent-decode to UTF-8 | 400 | `InvalidParameterValueException` |
//! | unknown ARN | 404 | `ResourceNotFoundException` |
//! | unknown path | 404 | `UnknownOperationException` |
//! | wrong method on a known path | 405 (with `Allow`) | `MethodNotAllowedException` |
//! | body over [`super::EmulatorLimits::max_request_bytes`] | 413 | `RequestTooLargeException` |
//! | injected throttling | 429 (with `Retry-After`) | `TooManyRequestsException` |
//! | injected server error, lost answer | 500 | `ServiceException` |

use std::io;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::header::{ALLOW, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::Response;
use futures::StreamExt;
use percent_encoding::percent_decode_str;

use super::checkpoint::Body as CheckpointBody;
use super::error::ApiError;
use super::execution::Completion;
use super::faults::Roll;
use super::paging::StateQuery;
use super::store::Store;
use super::wire::ErrorBody;

/// Path prefix of both calls (the API version).
const PREFIX: &str = "/2025-12-01/durable-executions/";

/// Path prefix of `SendDurableExecutionCallbackSuccess`, `...Failure` and `...Heartbeat`:
/// `<prefix><CallbackId>/succeed`, `/fail`, `/heartbeat`.
const CALLBACK_PREFIX: &str = "/2025-12-01/durable-execution-callbacks/";

/// The two routes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Endpoint {
    Checkpoint,
    State,
}

/// The router serving both calls; everything goes through one fallback handler.
pub(crate) fn router(store: Arc<Store>) -> Router {
    Router::new().fallback(handle).with_state(store)
}

async fn handle(State(store): State<Arc<Store>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    if let Some(rest) = parts.uri.path().strip_prefix(CALLBACK_PREFIX) {
        return callback(&store, rest, &parts.method, body).await;
    }
    let (arn, endpoint) = match route(parts.uri.path()) {
        Ok(found) => found,
        Err(err) => return error_response(&store, &err),
    };
    match (endpoint, parts.method) {
        (Endpoint::Checkpoint, Method::POST) => {
            let declared = parts
                .headers
                .get(CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<usize>().ok());
            checkpoint(&store, &arn, declared, body).await
        }
        (Endpoint::State, Method::GET) => match parse_query(parts.uri.query()) {
            Ok(query) => get_state(&store, &arn, &query).await,
            Err(err) => error_response(&store, &err),
        },
        (Endpoint::Checkpoint, _) => error_response(&store, &ApiError::MethodNotAllowed("POST")),
        (Endpoint::State, _) => error_response(&store, &ApiError::MethodNotAllowed("GET")),
    }
}

/// `SendDurableExecutionCallbackSuccess` (the body is the result, as sent), `...Failure` (the
/// body is an `ErrorObject`; its message is kept) and `...Heartbeat` (accepted while the callback
/// waits): the callback is found by its `CallbackId` in every execution and completed as
/// [`super::Emulator::complete_operation`] completes it. No faults are drawn for these calls, so
/// they never shift the faults a seed gives the checkpoint calls.
async fn callback(store: &Store, rest: &str, method: &Method, body: Body) -> Response {
    let unknown = || ApiError::UnknownOperation(rest.chars().take(200).collect());
    let Some((encoded_id, action)) = rest.rsplit_once('/') else {
        return error_response(store, &unknown());
    };
    if !matches!(action, "succeed" | "fail" | "heartbeat") || encoded_id.is_empty() {
        return error_response(store, &unknown());
    }
    if method != Method::POST {
        return error_response(store, &ApiError::MethodNotAllowed("POST"));
    }
    let Ok(id) = percent_decode_str(encoded_id).decode_utf8() else {
        return error_response(
            store,
            &ApiError::InvalidParameter("CallbackId does not percent-decode to UTF-8".to_owned()),
        );
    };
    let bytes = match read_body(body, None, store.limits.max_request_bytes).await {
        Ok(bytes) => bytes,
        Err(seen) => return error_response(store, &ApiError::TooLarge(seen)),
    };
    let completion = match action {
        "succeed" => Some(Completion::Succeed(
            (!bytes.is_empty()).then(|| String::from_utf8_lossy(&bytes).into_owned()),
        )),
        "fail" => {
            let error = if bytes.is_empty() {
                None
            } else {
                match serde_json::from_slice::<super::wire::ErrorObject>(&bytes) {
                    Ok(error) => error.error_message,
                    Err(e) => {
                        return error_response(
                            store,
                            &ApiError::InvalidParameter(format!(
                                "Error: {}",
                                crate::wire::json_fault(&e)
                            )),
                        );
                    }
                }
            };
            Some(Completion::Fail(error))
        }
        _ => None,
    };
    let result = store.executions().answer_callback(&id, completion);
    store.checkpointed.notify_waiters();
    match result {
        Ok(()) => json_response(StatusCode::OK, "{}"),
        Err(err) => error_response(store, &err),
    }
}

/// Splits a raw path into the decoded ARN and the endpoint.
fn route(path: &str) -> Result<(String, Endpoint), ApiError> {
    let unknown = || ApiError::UnknownOperation(path.chars().take(200).collect());
    let rest = path.strip_prefix(PREFIX).ok_or_else(unknown)?;
    // The ARN itself contains `/` (sent as `%2F`); tolerate clients that did not encode
    // it by splitting at the last slash only.
    let (encoded_arn, tail) = rest.rsplit_once('/').ok_or_else(unknown)?;
    let endpoint = match tail {
        "checkpoint" => Endpoint::Checkpoint,
        "state" => Endpoint::State,
        _ => return Err(unknown()),
    };
    if encoded_arn.is_empty() {
        return Err(unknown());
    }
    let arn = percent_decode_str(encoded_arn)
        .decode_utf8()
        .map_err(|_| {
            ApiError::InvalidParameter(
                "DurableExecutionArn does not percent-decode to UTF-8".to_owned(),
            )
        })?
        .into_owned();
    Ok((arn, endpoint))
}

/// Parses the query of `GetDurableExecutionState`. `+` is taken literally (the SDK
/// sends `%2B`), and the first occurrence of a repeated key wins.
fn parse_query(query: Option<&str>) -> Result<StateQuery, ApiError> {
    let mut out = StateQuery::default();
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decode_str(value)
            .decode_utf8()
            .map_err(|_| {
                ApiError::InvalidParameter(format!("query parameter {key} is not valid UTF-8"))
            })?
            .into_owned();
        let slot = match key {
            "CheckpointToken" => &mut out.checkpoint_token,
            "Marker" => &mut out.marker,
            "MaxItems" => &mut out.max_items,
            // Unknown parameters are ignored, as unknown body members are.
            _ => continue,
        };
        if slot.is_none() {
            *slot = Some(value);
        }
    }
    Ok(out)
}

/// Reads the body up to `limit` bytes without buffering more than that.
async fn read_body(body: Body, declared: Option<usize>, limit: usize) -> Result<Bytes, usize> {
    if let Some(declared) = declared
        && declared > limit
    {
        return Err(declared);
    }
    let mut stream = body.into_data_stream();
    let mut buf: Vec<u8> = Vec::new();
    while let Some(chunk) = stream.next().await {
        // A body that breaks off mid-way is treated as what arrived; it will fail to
        // parse and be answered 400 (if the client is still there to read it).
        let Ok(chunk) = chunk else { break };
        let total = buf.len().saturating_add(chunk.len());
        if total > limit {
            return Err(total);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(buf))
}

/// Draws the request's faults and waits out its latency.
async fn roll_and_wait(store: &Store) -> Roll {
    let roll = store.fault_dice().roll();
    if !roll.delay.is_zero() {
        tokio::time::sleep(roll.delay).await;
    }
    roll
}

async fn checkpoint(store: &Store, arn: &str, declared: Option<usize>, body: Body) -> Response {
    let body = read_body(body, declared, store.limits.max_request_bytes).await;
    let roll = roll_and_wait(store).await;
    let reply = {
        let mut executions = store.executions();
        match &body {
            Ok(bytes) => executions.checkpoint(arn, CheckpointBody::Complete(bytes), &roll),
            Err(seen) => executions.checkpoint(arn, CheckpointBody::TooLarge(*seen), &roll),
        }
    };
    store.checkpointed.notify_waiters();
    match reply.result {
        Ok(_) if reply.lose_answer && roll.drop_connection => dropped_connection(),
        Ok(_) if reply.lose_answer => error_response(
            store,
            &ApiError::Service("internal failure (injected, answer lost)"),
        ),
        Ok(bytes) => json_response(StatusCode::OK, bytes),
        Err(err) => error_response(store, &err),
    }
}

async fn get_state(store: &Store, arn: &str, query: &StateQuery) -> Response {
    let roll = roll_and_wait(store).await;
    let result = store.executions().state(arn, query, &roll);
    match result {
        Ok(bytes) => json_response(StatusCode::OK, bytes),
        Err(err) => error_response(store, &err),
    }
}

fn json_response(status: StatusCode, bytes: impl Into<Body>) -> Response {
    let mut response = Response::new(bytes.into());
    *response.status_mut() = status;
    let _previous = response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// A response whose body fails at once: hyper then closes the connection without
/// completing the response, so the client sees a broken connection, not an answer.
fn dropped_connection() -> Response {
    let failing = futures::stream::once(async {
        Err::<Bytes, io::Error>(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "answer lost (injected)",
        ))
    });
    let mut response = Response::new(Body::from_stream(failing));
    *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    response
}

fn error_response(store: &Store, err: &ApiError) -> Response {
    let message = err.to_string();
    let kind = if store.omit_error_type_header {
        err.error_type()
    } else {
        err.fault_kind()
    };
    let body = serde_json::to_vec(&ErrorBody {
        kind,
        message: &message,
    })
    .unwrap_or_default();
    let status = StatusCode::from_u16(err.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = json_response(status, body);
    let headers = response.headers_mut();
    if !store.omit_error_type_header {
        let _previous = headers.insert(
            "x-amzn-errortype",
            HeaderValue::from_static(err.error_type()),
        );
    }
    match err {
        ApiError::TooManyRequests { retry_after_secs } => {
            let _previous = headers.insert(RETRY_AFTER, HeaderValue::from(*retry_after_secs));
        }
        ApiError::MethodNotAllowed(allow) => {
            let _previous = headers.insert(ALLOW, HeaderValue::from_static(allow));
        }
        _ => {}
    }
    response
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn the_arn_is_decoded_from_the_path() {
        let (arn, endpoint) =
            route("/2025-12-01/durable-executions/arn%3Aaws%3Alambda%3Ax%2Fy%2Fz/checkpoint")
                .unwrap();
        assert_eq!(arn, "arn:aws:lambda:x/y/z");
        assert_eq!(endpoint, Endpoint::Checkpoint);
    }

    #[test]
    fn unknown_paths_and_undecodable_arns_are_refused() {
        assert_eq!(route("/other").unwrap_err().status(), 404);
        assert_eq!(
            route("/2025-12-01/durable-executions//state")
                .unwrap_err()
                .status(),
            404
        );
        assert_eq!(
            route("/2025-12-01/durable-executions/a/b")
                .unwrap_err()
                .status(),
            404
        );
        assert_eq!(
            route("/2025-12-01/durable-executions/%FF/state")
                .unwrap_err()
                .status(),
            400
        );
    }

    #[test]
    fn query_values_are_percent_decoded_and_plus_is_literal() {
        let q = parse_query(Some(
            "CheckpointToken=a%2Fb+c&MaxItems=5&Marker=s.0000001f.1&x=y",
        ))
        .unwrap();
        assert_eq!(q.checkpoint_token.as_deref(), Some("a/b+c"));
        assert_eq!(q.max_items.as_deref(), Some("5"));
        assert_eq!(q.marker.as_deref(), Some("s.0000001f.1"));
    }
}
