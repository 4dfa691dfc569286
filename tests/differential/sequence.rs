//! What both servers are sent: a sequence of requests, described without any server's tokens,
//! ARNs or Ids, so that one description serves both and can be kept as a regression case.
//!
//! Placeholders, replaced per server when a request is sent:
//! - `"$EXEC"` as an `Id` or `ParentId`: that server's EXECUTION operation Id;
//! - `"$x*N"` as any string: `N` times `x` (large payloads and errors stay short to print and
//!   to store).

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Which checkpoint token a request carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenRef {
    /// The server's current token: the newest one it answered (the invocation's at first).
    Current,
    /// The token request `k` of this sequence carried, on the same server.
    Sent(usize),
    /// A token neither server issued.
    Garbage,
    /// `""`.
    Empty,
    /// No `CheckpointToken` at all.
    Missing,
}

/// Which `Marker` a state read carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MarkerRef {
    Absent,
    Empty,
    Garbage,
    /// The `NextMarker` request `k` answered on the same server (absent if it answered none).
    NextOf(usize),
}

/// The body's `Updates` member, or a body that is not a checkpoint request at all.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Updates {
    Omitted,
    Null,
    List(Vec<Value>),
    /// The whole body, sent as these bytes (invalid JSON, a wrong shape).
    RawBody(String),
}

/// One request of a sequence.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Request {
    Checkpoint {
        token: TokenRef,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_token: Option<String>,
        updates: Updates,
        /// Sent to an ARN the server does not know.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        unknown_arn: bool,
    },
    State {
        token: TokenRef,
        marker: MarkerRef,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_items: Option<String>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        unknown_arn: bool,
    },
}

impl Request {
    pub fn is_checkpoint(&self) -> bool {
        matches!(self, Self::Checkpoint { .. })
    }

    /// The updates of a checkpoint with a list of them; empty otherwise.
    pub fn update_list(&self) -> &[Value] {
        match self {
            Self::Checkpoint {
                updates: Updates::List(list),
                ..
            } => list,
            _ => &[],
        }
    }

    pub fn client_token(&self) -> Option<&str> {
        match self {
            Self::Checkpoint { client_token, .. } => client_token.as_deref(),
            Self::State { .. } => None,
        }
    }

    pub fn token(&self) -> &TokenRef {
        match self {
            Self::Checkpoint { token, .. } | Self::State { token, .. } => token,
        }
    }

    pub fn max_items(&self) -> Option<&str> {
        match self {
            Self::State { max_items, .. } => max_items.as_deref(),
            Self::Checkpoint { .. } => None,
        }
    }

    /// The request as one line of JSON, placeholders kept.
    pub fn describe(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("<unprintable: {e}>"))
    }
}

/// A named sequence, as kept in `regressions.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sequence {
    pub name: String,
    pub requests: Vec<Request>,
}

/// `value` with every placeholder replaced for a server whose EXECUTION operation is `exec_id`.
pub fn render(value: &Value, exec_id: &str) -> Value {
    match value {
        Value::String(s) => Value::String(expand(s, exec_id)),
        Value::Array(items) => Value::Array(items.iter().map(|v| render(v, exec_id)).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), render(v, exec_id)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn expand(s: &str, exec_id: &str) -> String {
    if s == "$EXEC" {
        return exec_id.to_owned();
    }
    if let Some(n) = s.strip_prefix("$x*").and_then(|n| n.parse::<usize>().ok()) {
        return "x".repeat(n);
    }
    s.to_owned()
}

/// A string of `n` bytes, as a placeholder.
pub fn xs(n: usize) -> String {
    format!("$x*{n}")
}

/// How many bytes a string holds once expanded.
pub fn expanded_len(s: &str) -> usize {
    s.strip_prefix("$x*")
        .and_then(|n| n.parse().ok())
        .unwrap_or(s.len())
}

/// An update as JSON.
pub fn update(id: &str, op_type: &str, action: &str) -> Value {
    json!({ "Id": id, "Type": op_type, "Action": action })
}
