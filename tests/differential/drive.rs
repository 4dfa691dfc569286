//! Sending a sequence's requests to one server and reducing its answers to what both servers
//! must agree on.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;

use serde_json::{Value, json};

use crate::sequence::{MarkerRef, Request, TokenRef, Updates, render};
use crate::support::{Resp, checkpoint_path, enc, request};

/// A token no server issued.
const GARBAGE_TOKEN: &str = "Z2FyYmFnZS10b2tlbg";
/// A marker no server issued.
const GARBAGE_MARKER: &str = "garbage-marker";

/// The Id every server's EXECUTION operation is shown as, so that the two compare.
pub const EXEC: &str = "<execution>";

/// What an answer did to the token chain; token values are never compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Chain {
    /// No token, or an empty one.
    Absent,
    /// The token that was sent.
    Unchanged,
    /// A token this server never answered before.
    New,
    /// A token this server answered before (a replayed answer): to request `k` of the
    /// sequence, or (`None`) the invocation's own. Both servers must replay the same call.
    Seen(Option<usize>),
}

/// An operation as compared: Id (the EXECUTION operation's mapped to [`EXEC`]), type, status
/// and parent; in the final comparison of a sequence also its Name and SubType (the EXECUTION
/// operation's Name aside: each server names its execution its own way).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct OpKey {
    pub id: String,
    pub op_type: String,
    pub status: String,
    pub parent: Option<String>,
    /// Set only by [`Side::all_operations`].
    pub name: Option<String>,
    /// Set only by [`Side::all_operations`].
    pub sub_type: Option<String>,
}

impl fmt::Display for OpKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.id, self.op_type, self.status)?;
        if let Some(parent) = &self.parent {
            write!(f, " (in {parent})")?;
        }
        if let Some(name) = &self.name {
            write!(f, " name {name:?}")?;
        }
        if let Some(sub_type) = &self.sub_type {
            write!(f, " subtype {sub_type:?}")?;
        }
        Ok(())
    }
}

/// A server's answer, reduced to what is compared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A checkpoint answered 200: the token chain, the operations of `NewExecutionState`
    /// (sorted: the servers order a delta differently) and whether a `NextMarker` came.
    Checkpointed {
        chain: Chain,
        ops: Vec<OpKey>,
        more: bool,
    },
    /// A state read answered 200: its page, in order, and whether a `NextMarker` came.
    Page { ops: Vec<OpKey>, more: bool },
    /// Refused: status, error type, and whether the message starts with the stale-token
    /// phrase.
    Refused {
        status: u16,
        error_type: String,
        stale: bool,
    },
}

impl Outcome {
    pub fn accepted(&self) -> bool {
        !matches!(self, Self::Refused { .. })
    }

    pub fn refused_ipve(&self, want_stale: bool) -> bool {
        matches!(self, Self::Refused { status: 400, error_type, stale }
            if error_type == "InvalidParameterValueException" && *stale == want_stale)
    }

    pub fn is_stale(&self) -> bool {
        matches!(self, Self::Refused { stale: true, .. })
    }

    pub fn chain(&self) -> Option<Chain> {
        match self {
            Self::Checkpointed { chain, .. } => Some(*chain),
            _ => None,
        }
    }

    pub fn ops(&self) -> &[OpKey] {
        match self {
            Self::Checkpointed { ops, .. } | Self::Page { ops, .. } => ops,
            Self::Refused { .. } => &[],
        }
    }

    pub fn more(&self) -> bool {
        matches!(
            self,
            Self::Checkpointed { more: true, .. } | Self::Page { more: true, .. }
        )
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |ops: &[OpKey]| {
            let shown: Vec<String> = ops.iter().take(8).map(ToString::to_string).collect();
            let rest = ops.len().saturating_sub(8);
            if rest > 0 {
                format!("[{}, … {rest} more]", shown.join(", "))
            } else {
                format!("[{}]", shown.join(", "))
            }
        };
        match self {
            Self::Checkpointed { chain, ops, more } => write!(
                f,
                "200 token {chain:?}, ops {}{}",
                list(ops),
                if *more { ", NextMarker" } else { "" }
            ),
            Self::Page { ops, more } => write!(
                f,
                "200 page {}{}",
                list(ops),
                if *more { ", NextMarker" } else { "" }
            ),
            Self::Refused {
                status,
                error_type,
                stale,
            } => write!(
                f,
                "{status} {error_type}{}",
                if *stale { " (stale token)" } else { "" }
            ),
        }
    }
}

/// One answer: the reduced outcome and the raw text, for failure messages.
#[derive(Clone, Debug)]
pub struct Answer {
    pub outcome: Outcome,
    pub raw: String,
    /// A refusal's message (empty for a 200): read by the known differences, which check
    /// that this crate refused for the update they explain (its message names the update's
    /// index and the rule); never compared between the servers.
    pub message: String,
    /// For a refusal: the `X-Amzn-ErrorType` header and the body's `Type`, as sent.
    pub error_shape: Option<ErrorShape>,
}

/// Where an error response names its type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorShape {
    pub header: Option<String>,
    pub body_type: Option<String>,
}

/// One server's view of the execution a sequence runs on.
pub struct Side {
    pub addr: SocketAddr,
    pub arn: String,
    pub exec_id: String,
    /// Whether this server puts the error type in `X-Amzn-ErrorType` (ours) or in the body's
    /// `Type` (the runner).
    pub type_in_header: bool,
    current: String,
    /// Every token this server answered, with the request that first got it (`None`: the
    /// invocation's own).
    answered: HashMap<String, Option<usize>>,
    /// The token each request carried (`None`: none or not a token request).
    pub sent: Vec<Option<String>>,
    /// The `NextMarker` each request answered.
    markers: Vec<Option<String>>,
    pub answers: Vec<Answer>,
}

impl Side {
    pub fn new(
        addr: SocketAddr,
        arn: String,
        token: String,
        exec_id: String,
        type_in_header: bool,
    ) -> Self {
        Self {
            addr,
            arn,
            exec_id,
            type_in_header,
            answered: HashMap::from([(token.clone(), None)]),
            current: token,
            sent: Vec::new(),
            markers: Vec::new(),
            answers: Vec::new(),
        }
    }

    fn token(&self, token: &TokenRef) -> Option<String> {
        match token {
            TokenRef::Current => Some(self.current.clone()),
            TokenRef::Sent(k) => self.sent.get(*k).cloned().flatten(),
            TokenRef::Garbage => Some(GARBAGE_TOKEN.to_owned()),
            TokenRef::Empty => Some(String::new()),
            TokenRef::Missing => None,
        }
    }

    fn arn_for(&self, unknown: bool) -> String {
        if unknown {
            format!("{}-unknown", self.arn)
        } else {
            self.arn.clone()
        }
    }

    /// Sends request `req` (the next of the sequence) and records its answer.
    pub async fn send(&mut self, req: &Request) -> Answer {
        let token = self.token(req.token());
        let resp = match req {
            Request::Checkpoint {
                client_token,
                updates,
                unknown_arn,
                ..
            } => {
                let body = match updates {
                    Updates::RawBody(raw) => raw.clone().into_bytes(),
                    other => {
                        let mut body = json!({});
                        if let Some(token) = &token {
                            body["CheckpointToken"] = json!(token);
                        }
                        if let Some(ct) = client_token {
                            body["ClientToken"] = json!(ct);
                        }
                        match other {
                            Updates::Omitted | Updates::RawBody(_) => {}
                            Updates::Null => body["Updates"] = Value::Null,
                            Updates::List(list) => {
                                body["Updates"] =
                                    render(&Value::Array(list.clone()), &self.exec_id);
                            }
                        }
                        serde_json::to_vec(&body).unwrap_or_default()
                    }
                };
                let path = checkpoint_path(&self.arn_for(*unknown_arn));
                request(self.addr, "POST", &path, &body).await
            }
            Request::State {
                marker,
                max_items,
                unknown_arn,
                ..
            } => {
                let mut query = Vec::new();
                if let Some(token) = &token {
                    query.push(format!("CheckpointToken={}", enc(token)));
                }
                let marker = match marker {
                    MarkerRef::Absent => None,
                    MarkerRef::Empty => Some(String::new()),
                    MarkerRef::Garbage => Some(GARBAGE_MARKER.to_owned()),
                    MarkerRef::NextOf(k) => self.markers.get(*k).cloned().flatten(),
                };
                if let Some(marker) = marker {
                    query.push(format!("Marker={}", enc(&marker)));
                }
                if let Some(n) = max_items {
                    query.push(format!("MaxItems={}", enc(n)));
                }
                let path = format!(
                    "/2025-12-01/durable-executions/{}/state?{}",
                    enc(&self.arn_for(*unknown_arn)),
                    query.join("&")
                );
                request(self.addr, "GET", &path, b"").await
            }
        };
        let answer = self.reduce(req, token.as_deref(), &resp);
        self.sent.push(token);
        self.answers.push(answer.clone());
        answer
    }

    fn reduce(&mut self, req: &Request, sent: Option<&str>, resp: &Resp) -> Answer {
        let text = String::from_utf8_lossy(&resp.body);
        let raw = if text.len() > 600 {
            let cut: String = text.chars().take(600).collect();
            format!("{cut}… ({} bytes)", resp.body.len())
        } else {
            text.into_owned()
        };
        let body: Value = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
        if resp.status != 200 {
            self.markers.push(None);
            let error_type = if self.type_in_header {
                resp.header("x-amzn-errortype")
                    .unwrap_or("<none>")
                    .to_owned()
            } else {
                body["Type"].as_str().unwrap_or("<none>").to_owned()
            };
            let message = body["message"]
                .as_str()
                .or_else(|| body["Message"].as_str())
                .unwrap_or_default()
                .to_owned();
            let stale = message
                .to_ascii_lowercase()
                .starts_with("invalid checkpoint token");
            return Answer {
                outcome: Outcome::Refused {
                    status: resp.status,
                    error_type: normalise_type(&error_type),
                    stale,
                },
                raw,
                message,
                error_shape: Some(ErrorShape {
                    header: resp.header("x-amzn-errortype").map(str::to_owned),
                    body_type: body["Type"].as_str().map(str::to_owned),
                }),
            };
        }
        let (ops_json, marker) = if req.is_checkpoint() {
            let state = &body["NewExecutionState"];
            (&state["Operations"], state["NextMarker"].as_str())
        } else {
            (&body["Operations"], body["NextMarker"].as_str())
        };
        let marker = marker.filter(|m| !m.is_empty()).map(str::to_owned);
        let more = marker.is_some();
        self.markers.push(marker);
        let mut ops: Vec<OpKey> = ops_json
            .as_array()
            .map(|ops| ops.iter().map(|op| self.key(op)).collect())
            .unwrap_or_default();
        let outcome = if req.is_checkpoint() {
            ops.sort();
            let chain = match body["CheckpointToken"].as_str().filter(|t| !t.is_empty()) {
                None => Chain::Absent,
                Some(t) if Some(t) == sent => Chain::Unchanged,
                Some(t) if let Some(&k) = self.answered.get(t) => Chain::Seen(k),
                Some(t) => {
                    self.answered.insert(t.to_owned(), Some(self.answers.len()));
                    // Only a new token moves the chain on: a replayed older answer's token
                    // would make every later call stale on this server alone.
                    self.current = t.to_owned();
                    Chain::New
                }
            };
            Outcome::Checkpointed { chain, ops, more }
        } else {
            Outcome::Page { ops, more }
        };
        Answer {
            outcome,
            raw,
            message: String::new(),
            error_shape: None,
        }
    }

    /// The compared key of an operation from this server's JSON.
    pub fn key(&self, op: &Value) -> OpKey {
        let map = |id: Option<&str>| {
            id.map(|id| {
                if id == self.exec_id {
                    EXEC.to_owned()
                } else {
                    id.to_owned()
                }
            })
        };
        OpKey {
            id: map(op["Id"].as_str()).unwrap_or_default(),
            op_type: op["Type"].as_str().unwrap_or_default().to_owned(),
            status: op["Status"].as_str().unwrap_or_default().to_owned(),
            parent: map(op["ParentId"].as_str()),
            name: None,
            sub_type: None,
        }
    }

    /// Every operation, read page by page with the current token; `Err` with the refusal
    /// when the read is refused (a completed execution).
    pub async fn all_operations(&self) -> Result<Vec<OpKey>, Outcome> {
        let mut ops = Vec::new();
        let mut marker: Option<String> = None;
        for _ in 0..20 {
            let mut path = format!(
                "/2025-12-01/durable-executions/{}/state?CheckpointToken={}&MaxItems=1000",
                enc(&self.arn),
                enc(&self.current)
            );
            if let Some(m) = &marker {
                path.push_str(&format!("&Marker={}", enc(m)));
            }
            let resp = request(self.addr, "GET", &path, b"").await;
            let body: Value = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
            if resp.status != 200 {
                let message = body["message"].as_str().unwrap_or_default();
                return Err(Outcome::Refused {
                    status: resp.status,
                    error_type: String::new(),
                    stale: message
                        .to_ascii_lowercase()
                        .starts_with("invalid checkpoint token"),
                });
            }
            if let Some(page) = body["Operations"].as_array() {
                ops.extend(page.iter().map(|op| {
                    let mut key = self.key(op);
                    if key.id != EXEC {
                        key.name = op["Name"].as_str().map(str::to_owned);
                    }
                    key.sub_type = op["SubType"].as_str().map(str::to_owned);
                    key
                }));
            }
            marker = body["NextMarker"]
                .as_str()
                .filter(|m| !m.is_empty())
                .map(str::to_owned);
            if marker.is_none() {
                break;
            }
        }
        Ok(ops)
    }
}

/// An error type as a name: the part after a `#` namespace, before a `:` suffix.
fn normalise_type(raw: &str) -> String {
    let name = raw.rsplit('#').next().unwrap_or(raw);
    name.split(':').next().unwrap_or(name).trim().to_owned()
}
