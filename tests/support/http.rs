//! A raw HTTP/1.1 client, for exact status codes, headers and bodies and for requests the SDK
//! would never send: one request per connection, `Connection: close`, read to EOF.

use std::net::SocketAddr;
use std::time::Duration;

use checkpoint_batcher::emulator::Emulator;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::wait::within_named;

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn message(&self) -> String {
        self.json()["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    pub fn token(&self) -> Option<String> {
        self.json()["CheckpointToken"].as_str().map(str::to_owned)
    }

    /// Asserts a 400 `InvalidParameterValueException` whose message holds `text` (`what` names
    /// the request in the failure).
    pub fn assert_invalid_parameter(&self, text: &str, what: &str) {
        assert_eq!(self.status, 400, "{what}: {}", self.message());
        assert_eq!(
            self.header("x-amzn-errortype"),
            Some("InvalidParameterValueException"),
            "{what}"
        );
        assert!(
            self.message().contains(text),
            "{what}: the message must hold {text:?}: {}",
            self.message()
        );
    }
}

/// Sends raw bytes and reads the answer to EOF; `Err` when the connection broke before a
/// complete response arrived.
pub async fn send_raw(addr: SocketAddr, request: &[u8]) -> Result<Resp, String> {
    send_raw_then(addr, request, false).await
}

/// As [`send_raw`]; with `half_close`, the write side is shut after the request, which is how
/// a client says "that is all you get" when its request is incomplete. (hyper closes the
/// connection on a half-close by default, so a complete request must not be sent this way.)
pub async fn send_raw_then(
    addr: SocketAddr,
    request: &[u8],
    half_close: bool,
) -> Result<Resp, String> {
    within_named(Duration::from_secs(20), "a raw request", async {
        let mut stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        // The server may answer and close before reading everything (413): ignore write errors.
        let _ = stream.write_all(request).await;
        if half_close {
            let _ = stream.shutdown().await;
        }
        let mut buf = Vec::new();
        // A reset after a partial answer still leaves `buf` with what arrived.
        let _ = stream.read_to_end(&mut buf).await;
        // The answer to a HEAD request has no body, whatever its `Content-Length` says.
        parse_response(&buf, request.starts_with(b"HEAD "))
    })
    .await
}

fn parse_response(buf: &[u8], head_request: bool) -> Result<Resp, String> {
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("incomplete head ({} bytes)", buf.len()))?;
    let head = std::str::from_utf8(&buf[..end]).map_err(|e| e.to_string())?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let rest = &buf[end + 4..];
    let resp = Resp {
        status,
        headers,
        body: Vec::new(),
    };
    if head_request {
        return Ok(resp);
    }
    if let Some(len) = resp.header("content-length") {
        let len: usize = len.parse().map_err(|_| "bad content-length".to_owned())?;
        if rest.len() < len {
            return Err(format!("truncated body: {} of {len}", rest.len()));
        }
        return Ok(Resp {
            body: rest[..len].to_vec(),
            ..resp
        });
    }
    if resp
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        let mut body = Vec::new();
        let mut rest = rest;
        loop {
            let line_end = rest
                .windows(2)
                .position(|w| w == b"\r\n")
                .ok_or("truncated chunk")?;
            let size =
                usize::from_str_radix(std::str::from_utf8(&rest[..line_end]).unwrap_or("x"), 16)
                    .map_err(|_| "bad chunk size".to_owned())?;
            rest = &rest[line_end + 2..];
            if size == 0 {
                return Ok(Resp { body, ..resp });
            }
            if rest.len() < size + 2 {
                return Err("truncated chunk".to_owned());
            }
            body.extend_from_slice(&rest[..size]);
            rest = &rest[size + 2..];
        }
    }
    Ok(Resp {
        body: rest.to_vec(),
        ..resp
    })
}

/// A request with a correct `Content-Length`; panics when no complete response arrives.
pub async fn request(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> Resp {
    try_request(addr, method, path, body).await.unwrap()
}

/// A request with a correct `Content-Length`; `Err` when no complete response arrives.
pub async fn try_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
) -> Result<Resp, String> {
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    send_raw(addr, &req).await
}

/// Percent-encodes everything but unreserved characters, as the SDK encodes a label.
pub fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

pub fn checkpoint_path(arn: &str) -> String {
    format!("/2025-12-01/durable-executions/{}/checkpoint", enc(arn))
}

pub fn state_path(arn: &str, token: &str, marker: Option<&str>, max_items: Option<&str>) -> String {
    let mut path = format!(
        "/2025-12-01/durable-executions/{}/state?CheckpointToken={}",
        enc(arn),
        enc(token)
    );
    if let Some(m) = marker {
        path.push_str(&format!("&Marker={}", enc(m)));
    }
    if let Some(n) = max_items {
        path.push_str(&format!("&MaxItems={n}"));
    }
    path
}

/// A checkpoint request over raw HTTP, with this token, client token and updates.
pub async fn checkpoint(
    emu: &Emulator,
    arn: &str,
    token: &str,
    client_token: Option<&str>,
    updates: Value,
) -> Resp {
    let mut body = json!({ "CheckpointToken": token, "Updates": updates });
    if let Some(ct) = client_token {
        body["ClientToken"] = json!(ct);
    }
    request(
        emu.local_addr(),
        "POST",
        &checkpoint_path(arn),
        body.to_string().as_bytes(),
    )
    .await
}

/// An update as JSON.
pub fn up(id: &str, ty: &str, action: &str) -> Value {
    json!({ "Id": id, "Type": ty, "Action": action })
}

/// `update` with `key` set to `value`.
pub fn with(mut update: Value, key: &str, value: Value) -> Value {
    update[key] = value;
    update
}

/// The `Id`s of a JSON list of operations.
pub fn op_ids(ops: &Value) -> Vec<String> {
    ops.as_array()
        .unwrap()
        .iter()
        .map(|op| op["Id"].as_str().unwrap().to_owned())
        .collect()
}
