//! The seeded generator of request sequences.
//!
//! It keeps its own model of the operations the servers should hold if they agree, so that it
//! can make valid requests (close what is started, nest under a started CONTEXT) and break one
//! rule at a time against a known state. It needs no answer from either server: a sequence is
//! fixed by its seed before anything is sent, and both servers get the same one.
//!
//! Timers are set far in the future (waits of an hour or more, retries an hour later): the
//! runner fires due timers on its own clock, and a comparison must not depend on time.

use fastrand::Rng;
use serde_json::{Value, json};

use crate::sequence::{MarkerRef, Request, Sequence, TokenRef, Updates, update, xs};

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

/// An operation as the model holds it.
#[derive(Clone, Debug)]
struct Op {
    id: String,
    op_type: &'static str,
    status: &'static str,
    parent: Option<String>,
    name: Option<String>,
    sub_type: Option<String>,
}

impl Op {
    /// An update of this operation, naming its stored parent, name and subtype as the SDKs do.
    fn update(&self, action: &str) -> Value {
        let mut u = update(&self.id, self.op_type, action);
        if let Some(parent) = &self.parent {
            u["ParentId"] = json!(parent);
        }
        if let Some(name) = &self.name {
            u["Name"] = json!(name);
        }
        if let Some(sub_type) = &self.sub_type {
            u["SubType"] = json!(sub_type);
        }
        u
    }
}

/// Builds one sequence.
struct Gen {
    rng: Rng,
    ops: Vec<Op>,
    requests: Vec<Request>,
    next_id: usize,
    completed: bool,
    /// Requests assumed applied (checkpoints both servers accept).
    applied: Vec<usize>,
    /// State reads with an ordinary `MaxItems`, and no checkpoint applied since.
    fresh_reads: Vec<usize>,
    /// State reads with an ordinary `MaxItems` that a checkpoint applied since then.
    stale_reads: Vec<usize>,
    /// Whether this sequence may carry payloads of a MiB or more.
    big: bool,
    /// Whether the last request is one the servers are known to apply differently: nothing
    /// after it would compare.
    over: bool,
}

/// The sequence of seed `seed`.
pub fn sequence(seed: u64, name: String) -> Sequence {
    let mut g = Gen {
        rng: Rng::with_seed(seed),
        ops: Vec::new(),
        requests: Vec::new(),
        next_id: 0,
        completed: false,
        applied: Vec::new(),
        fresh_reads: Vec::new(),
        stale_reads: Vec::new(),
        big: false,
        over: false,
    };
    // Payloads of a MiB and more cost both servers real time: about one sequence in 150.
    g.big = g.rng.u32(..150) == 0;
    let len = g.rng.usize(2..=10);
    let big_at = g.rng.usize(..len);
    while g.requests.len() < len && !g.over {
        if g.completed && g.rng.bool() {
            break;
        }
        if g.big && g.requests.len() >= big_at && !g.completed {
            g.big = false;
            g.big_case();
        } else {
            g.step();
        }
    }
    Sequence {
        name,
        requests: g.requests,
    }
}

impl Gen {
    fn fresh_id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}{}", self.next_id)
    }

    fn pick<T: Clone>(&mut self, items: &[T]) -> Option<T> {
        (!items.is_empty()).then(|| items[self.rng.usize(..items.len())].clone())
    }

    fn ops_where(&self, f: impl Fn(&Op) -> bool) -> Vec<Op> {
        self.ops.iter().filter(|op| f(op)).cloned().collect()
    }

    fn op_mut(&mut self, id: &str) -> Option<&mut Op> {
        self.ops.iter_mut().find(|op| op.id == id)
    }

    fn client_token(&mut self) -> Option<String> {
        self.rng
            .bool()
            .then(|| format!("ct-{:x}", self.rng.u64(..)))
    }

    /// Pushes a checkpoint of `updates` with the current token.
    fn checkpoint(&mut self, updates: Vec<Value>, applied: bool) {
        let client_token = self.client_token();
        self.push(
            Request::Checkpoint {
                token: TokenRef::Current,
                client_token,
                updates: Updates::List(updates),
                unknown_arn: false,
            },
            applied,
        );
    }

    fn push(&mut self, req: Request, applied: bool) {
        let is_checkpoint = req.is_checkpoint();
        self.requests.push(req);
        if applied && is_checkpoint {
            self.applied.push(self.requests.len() - 1);
            let fresh = std::mem::take(&mut self.fresh_reads);
            self.stale_reads.extend(fresh);
        }
    }

    /// A request the servers are known to apply differently ends the sequence.
    fn push_last(&mut self, req: Request) {
        self.requests.push(req);
        self.over = true;
    }

    fn step(&mut self) {
        if self.completed {
            return self.after_completion();
        }
        match self.rng.u32(..100) {
            0..=44 => self.valid_batch(),
            45..=49 => self.empty_checkpoint(),
            50..=57 => self.state_read(),
            58..=61 => self.replay_last(),
            62..=64 => self.complete_execution(Vec::new()),
            65..=85 => self.break_agreed(),
            86..=89 => self.break_more(),
            90..=95 => self.break_lenient(),
            _ => self.break_shared_rule(),
        }
    }

    // ---------------------------------------------------------------- valid requests

    /// One to five updates both servers apply: new operations, and progress of started ones.
    fn valid_batch(&mut self) {
        let n = self.rng.usize(1..=5);
        let mut updates = Vec::new();
        let mut touched: Vec<String> = Vec::new();
        for _ in 0..n {
            let progress = self.rng.bool();
            let open = self.ops_where(|op| {
                matches!(
                    (op.op_type, op.status),
                    ("STEP" | "CONTEXT" | "WAIT", "STARTED")
                ) && !touched.contains(&op.id)
            });
            if progress && let Some(op) = self.pick(&open) {
                touched.push(op.id.clone());
                updates.push(self.progress(&op));
            } else {
                let mut made = self.new_op();
                if let Some(first) = made.first().and_then(|u| u["Id"].as_str()) {
                    touched.push(first.to_owned());
                }
                updates.append(&mut made);
            }
        }
        if self.rng.u32(..10) == 0 {
            return self.complete_execution(updates);
        }
        self.checkpoint(updates, true);
    }

    /// A new operation (STEP, CONTEXT, WAIT or CALLBACK), perhaps closed in the same request.
    fn new_op(&mut self) -> Vec<Value> {
        let contexts = self.ops_where(|op| op.op_type == "CONTEXT");
        let parent = if self.rng.u32(..3) == 0 {
            // Mostly an open CONTEXT; a finished one takes children too.
            self.pick(&contexts).map(|c| c.id)
        } else {
            None
        };
        let (prefix, op_type) = match self.rng.u32(..10) {
            0..=4 => ("s", "STEP"),
            5..=6 => ("c", "CONTEXT"),
            7..=8 => ("w", "WAIT"),
            _ => ("cb", "CALLBACK"),
        };
        let id = self.fresh_id(prefix);
        let name = self.rng.bool().then(|| format!("n-{id}"));
        let sub_type = (self.rng.u32(..4) == 0).then(|| "Sub".to_owned());
        let mut op = Op {
            id,
            op_type,
            status: "STARTED",
            parent,
            name,
            sub_type,
        };
        let mut start = op.update("START");
        match op_type {
            "WAIT" => {
                start["WaitOptions"] = json!({"WaitSeconds": self.rng.u32(3600..=86400)});
            }
            "CALLBACK" if self.rng.bool() => {
                start["CallbackOptions"] = json!({"TimeoutSeconds": 86400});
            }
            "CONTEXT" if self.rng.bool() => {
                start["ContextOptions"] = json!({"ReplayChildren": self.rng.bool()});
            }
            _ => {}
        }
        let mut out = vec![start];
        if matches!(op_type, "STEP" | "CONTEXT") && self.rng.u32(..3) == 0 {
            // START and its end in one request.
            let close = self.close(&op);
            op.status = close.1;
            out.push(close.0);
        }
        self.ops.push(op);
        out
    }

    /// An update both servers apply to a started operation; the model follows.
    fn progress(&mut self, op: &Op) -> Value {
        let (update, status) = match op.op_type {
            "WAIT" => (op.update("CANCEL"), "CANCELLED"),
            "STEP" if self.rng.u32(..4) == 0 => {
                let mut u = op.update("RETRY");
                u["StepOptions"] = json!({"NextAttemptDelaySeconds": self.rng.u32(3600..=86400)});
                if self.rng.bool() {
                    let len = self.rng.usize(0..200);
                    u["Error"] = self.error(len);
                }
                (u, "PENDING")
            }
            _ => self.close(op),
        };
        if let Some(held) = self.op_mut(&op.id) {
            held.status = status;
        }
        update
    }

    /// A SUCCEED with a payload or a FAIL with an error, of a STEP or CONTEXT.
    fn close(&mut self, op: &Op) -> (Value, &'static str) {
        if self.rng.u32(..3) == 0 {
            let mut u = op.update("FAIL");
            let len = self.rng.usize(0..300);
            u["Error"] = self.error(len);
            (u, "FAILED")
        } else {
            let mut u = op.update("SUCCEED");
            if self.rng.u32(..5) != 0 {
                let size = self.payload_size();
                u["Payload"] = json!(xs(size));
            }
            (u, "SUCCEEDED")
        }
    }

    /// Small payloads; [`Gen::big_case`] makes those at the limits.
    fn payload_size(&mut self) -> usize {
        self.rng.usize(0..2000)
    }

    fn error(&mut self, message_len: usize) -> Value {
        let mut e = json!({"ErrorType": "Boom", "ErrorMessage": xs(message_len)});
        if self.rng.bool() {
            e["ErrorData"] = json!("{\"k\":1}");
        }
        if self.rng.u32(..4) == 0 {
            e["StackTrace"] = json!(["at a", "at b"]);
        }
        e
    }

    fn empty_checkpoint(&mut self) {
        let updates = match self.rng.u32(..3) {
            0 => Updates::List(Vec::new()),
            1 => Updates::Omitted,
            _ => Updates::Null,
        };
        let client_token = self.client_token();
        self.push(
            Request::Checkpoint {
                token: TokenRef::Current,
                client_token,
                updates,
                unknown_arn: false,
            },
            true,
        );
    }

    /// A state read with an ordinary MaxItems, from the first page or a marker answered by an
    /// earlier read (only while no checkpoint moved the chain since: both servers tie a marker
    /// to the token it was issued with).
    fn state_read(&mut self) {
        let max_items = match self.rng.u32(..6) {
            0 => None,
            1 => Some("1000".to_owned()),
            n => Some(n.to_string()),
        };
        let marker = match self.pick(&self.fresh_reads.clone()) {
            Some(k) if self.rng.bool() => MarkerRef::NextOf(k),
            _ if self.rng.u32(..5) == 0 => MarkerRef::Empty,
            _ => MarkerRef::Absent,
        };
        self.push(
            Request::State {
                token: TokenRef::Current,
                marker,
                max_items,
                unknown_arn: false,
            },
            false,
        );
        self.fresh_reads.push(self.requests.len() - 1);
    }

    /// The last applied checkpoint again: its token, its client token, its updates. Both
    /// replay it when it had a client token; without one both call the token stale.
    fn replay_last(&mut self) {
        let Some(&k) = self.applied.last() else {
            return self.valid_batch();
        };
        let Request::Checkpoint {
            client_token,
            updates,
            ..
        } = self.requests[k].clone()
        else {
            return;
        };
        self.push(
            Request::Checkpoint {
                token: TokenRef::Sent(k),
                client_token,
                updates,
                unknown_arn: false,
            },
            false,
        );
    }

    /// An EXECUTION SUCCEED or FAIL after `before`, under the execution operation's Id or
    /// another (the SDKs' `execution-result-<ms>`).
    fn complete_execution(&mut self, mut before: Vec<Value>) {
        let id = match self.rng.u32(..3) {
            0 => "$EXEC".to_owned(),
            1 => format!(
                "execution-result-{}",
                1_700_000_000_000u64 + self.rng.u64(..1 << 30)
            ),
            _ => format!("x{:08x}", self.rng.u32(..)),
        };
        let mut u = update(&id, "EXECUTION", "SUCCEED");
        if self.rng.u32(..3) == 0 {
            u["Action"] = json!("FAIL");
            if self.rng.u32(..4) != 0 {
                let len = self.rng.usize(0..200);
                u["Error"] = self.error(len);
            }
        } else if self.rng.u32(..5) != 0 {
            u["Payload"] = json!(xs(self.rng.usize(0..3000)));
        }
        before.push(u);
        self.checkpoint(before, true);
        self.completed = true;
    }

    /// After a completion: calls every server refuses, or the completing call replayed.
    fn after_completion(&mut self) {
        match self.rng.u32(..4) {
            0 => self.replay_last(),
            1 => self.state_read(),
            2 => self.empty_checkpoint(),
            _ => {
                let op = self.new_op();
                self.checkpoint(op, false);
            }
        }
    }

    /// One request with payloads or errors at or past the limits, or a state page past 5 MiB.
    fn big_case(&mut self) {
        let a = self.fresh_id("s");
        let step = |payload: usize| {
            vec![
                update(&a, "STEP", "START"),
                with(update(&a, "STEP", "SUCCEED"), "Payload", json!(xs(payload))),
            ]
        };
        match self.rng.u32(..7) {
            // At the limits: both accept.
            0 => {
                let size = if self.rng.bool() { MIB } else { 256 * KIB + 1 };
                self.ops.push(Op {
                    id: a.clone(),
                    op_type: "STEP",
                    status: "SUCCEEDED",
                    parent: None,
                    name: None,
                    sub_type: None,
                });
                self.checkpoint(step(size), true);
            }
            1 => {
                let u = with(
                    update("$EXEC", "EXECUTION", "SUCCEED"),
                    "Payload",
                    json!(xs(6 * MIB)),
                );
                self.checkpoint(vec![u], true);
                self.completed = true;
            }
            // Past them: the runner applies, this crate refuses.
            2 => self.last_checkpoint(step(MIB + 1)),
            3 => {
                let u = with(
                    update("$EXEC", "EXECUTION", "SUCCEED"),
                    "Payload",
                    json!(xs(6 * MIB + 1)),
                );
                self.last_checkpoint(vec![u]);
            }
            // An error over 1 MiB: both refuse (the runner at 32 KiB).
            4 => {
                let mut close = update(&a, "STEP", "FAIL");
                close["Error"] = json!({"ErrorType": "E", "ErrorMessage": xs(MIB + 1)});
                self.checkpoint(vec![update(&a, "STEP", "START"), close], false);
            }
            // Six payloads of nearly a MiB under a CONTEXT, then one state page: the runner
            // cuts it at 5 MiB.
            _ => {
                let c = self.fresh_id("c");
                let mut ups = vec![update(&c, "CONTEXT", "START")];
                for i in 0..6 {
                    let id = format!("{a}-{i}");
                    ups.push(with(update(&id, "STEP", "START"), "ParentId", json!(c)));
                    let mut done = with(update(&id, "STEP", "SUCCEED"), "ParentId", json!(c));
                    done["Payload"] = json!(xs(MIB - 16));
                    ups.push(done);
                }
                self.checkpoint(ups, true);
                self.push(
                    Request::State {
                        token: TokenRef::Current,
                        marker: MarkerRef::Absent,
                        max_items: Some("1000".to_owned()),
                        unknown_arn: false,
                    },
                    false,
                );
                self.over = true;
            }
        }
    }

    // ---------------------------------------------------------------- broken rules

    /// A request breaking one rule that both servers refuse.
    fn break_agreed(&mut self) {
        let steps = self.ops_where(|op| op.op_type == "STEP");
        let started = self.ops_where(|op| op.op_type == "STEP" && op.status == "STARTED");
        let finished = self
            .ops_where(|op| op.op_type == "STEP" && matches!(op.status, "SUCCEEDED" | "FAILED"));
        let contexts = self.ops_where(|op| op.op_type == "CONTEXT");
        let waits = self.ops_where(|op| op.op_type == "WAIT");
        let callbacks = self.ops_where(|op| op.op_type == "CALLBACK");
        let a = self.fresh_id("s");
        let b = self.fresh_id("c");
        let step_a = Op {
            id: a.clone(),
            op_type: "STEP",
            status: "STARTED",
            parent: None,
            name: None,
            sub_type: None,
        };
        let updates: Vec<Value> = match self.rng.u32(..26) {
            // The token.
            0 => {
                let token = self.stale_token();
                return self.with_token(token);
            }
            1 => return self.with_token(TokenRef::Garbage),
            2 => return self.with_token(TokenRef::Empty),
            3 => return self.with_token(TokenRef::Missing),
            // Rule 2: one EXECUTION update, last.
            4 => vec![
                update("$EXEC", "EXECUTION", "SUCCEED"),
                update("$EXEC", "EXECUTION", "FAIL"),
            ],
            5 => vec![
                update("$EXEC", "EXECUTION", "SUCCEED"),
                update(&a, "STEP", "START"),
            ],
            // Rule 3: one update per Id.
            6 => vec![update(&a, "STEP", "START"), update(&a, "STEP", "START")],
            7 => vec![
                update(&a, "STEP", "START"),
                update(&a, "STEP", "SUCCEED"),
                update(&a, "STEP", "FAIL"),
            ],
            8 => {
                let mut w = update(&a, "WAIT", "START");
                w["WaitOptions"] = json!({"WaitSeconds": 3600});
                vec![w.clone(), w]
            }
            9 => match self.pick(&started) {
                Some(op) => vec![op.update("SUCCEED"), op.update("SUCCEED")],
                None => vec![update(&a, "STEP", "SUCCEED"), update(&a, "STEP", "START")],
            },
            // Rule 4: the parent.
            10 => vec![with(update(&a, "STEP", "START"), "ParentId", json!("nope"))],
            11 => match self.pick(&steps) {
                Some(op) => vec![with(update(&a, "STEP", "START"), "ParentId", json!(op.id))],
                None => vec![with(
                    update(&a, "STEP", "START"),
                    "ParentId",
                    json!("$EXEC"),
                )],
            },
            12 => vec![with(
                update(&a, "STEP", "START"),
                "ParentId",
                json!("$EXEC"),
            )],
            13 => vec![
                with(update(&a, "STEP", "START"), "ParentId", json!(b)),
                update(&b, "CONTEXT", "START"),
            ],
            14 => vec![with(
                update(&a, "STEP", "START"),
                "ParentId",
                json!("p".repeat(65)),
            )],
            // Rule 5: transitions.
            15 => match self.pick(&finished) {
                Some(op) => vec![op.update("START")],
                None => vec![update("$EXEC", "EXECUTION", "START")],
            },
            16 => match self.pick(&started) {
                Some(op) => vec![op.update("START")],
                None => vec![step_a.update("CANCEL")],
            },
            17 => match self.pick(&finished) {
                Some(op) => vec![op.update("SUCCEED")],
                None => vec![update(&a, "WAIT", "SUCCEED")],
            },
            18 => match self.pick(&steps) {
                Some(op) => vec![update(&op.id, "CONTEXT", "SUCCEED")],
                None => vec![update(&a, "CALLBACK", "SUCCEED")],
            },
            19 => match self.pick(&contexts) {
                Some(op) => vec![op.update("START")],
                None => vec![update("$EXEC", "EXECUTION", "START")],
            },
            20 => match self.pick(&waits) {
                Some(op) => vec![with(
                    op.update("START"),
                    "WaitOptions",
                    json!({"WaitSeconds": 3600}),
                )],
                None => vec![update(&a, "WAIT", "CANCEL")],
            },
            21 => match self.pick(&callbacks) {
                Some(op) => vec![op.update("SUCCEED")],
                None => vec![update(&a, "CALLBACK", "FAIL")],
            },
            22 => match self.pick(&started) {
                Some(op) => vec![op.update("CANCEL")],
                None => vec![update(&a, "STEP", "CANCEL")],
            },
            // Rule 6: an EXECUTION SUCCEED carries no Error, a FAIL no Payload.
            23 => vec![with(
                update("$EXEC", "EXECUTION", "SUCCEED"),
                "Error",
                json!({"ErrorType": "E"}),
            )],
            24 => vec![with(
                update("$EXEC", "EXECUTION", "FAIL"),
                "Payload",
                json!("\"r\""),
            )],
            // The body.
            _ => return self.bad_body(),
        };
        self.checkpoint(updates, false);
    }

    /// A token of a checkpoint older than the last applied one, or the invocation's own once
    /// the chain moved.
    fn stale_token(&mut self) -> TokenRef {
        let older = self.older_applied();
        match (self.pick(&older), self.applied.last()) {
            (Some(k), _) => TokenRef::Sent(k),
            (None, Some(&k)) => TokenRef::Sent(k),
            (None, None) => TokenRef::Garbage,
        }
    }

    /// The applied checkpoints before the last one.
    fn older_applied(&self) -> Vec<usize> {
        let last = self.applied.last().copied();
        self.applied
            .iter()
            .copied()
            .filter(|&k| Some(k) != last)
            .collect()
    }

    fn with_token(&mut self, token: TokenRef) {
        let op = self.new_op();
        // The model took the operation in; the request is refused, so take it out again.
        self.ops.pop();
        let req = if self.rng.u32(..3) == 0 {
            Request::State {
                token,
                marker: MarkerRef::Absent,
                max_items: None,
                unknown_arn: false,
            }
        } else {
            Request::Checkpoint {
                token,
                client_token: None,
                updates: Updates::List(op),
                unknown_arn: false,
            }
        };
        self.push(req, false);
    }

    fn bad_body(&mut self) {
        let a = self.fresh_id("s");
        let (updates, unknown_arn) = match self.rng.u32(..7) {
            0 => (Updates::RawBody("{\"CheckpointToken\": ".to_owned()), false),
            1 => (Updates::List(vec![update(&a, "FOO", "START")]), false),
            2 => (Updates::List(vec![update(&a, "STEP", "JUMP")]), false),
            3 => (
                Updates::List(vec![json!({"Type": "STEP", "Action": "START"})]),
                false,
            ),
            4 => (Updates::List(vec![update(&a, "STEP", "START")]), true),
            5 => {
                return self.push(
                    Request::State {
                        token: TokenRef::Current,
                        marker: MarkerRef::Garbage,
                        max_items: None,
                        unknown_arn: false,
                    },
                    false,
                );
            }
            _ => {
                // Either a MaxItems that is no number or an unknown ARN, not both: the two
                // servers check them in a different order.
                let unknown_arn = self.rng.bool();
                return self.push(
                    Request::State {
                        token: TokenRef::Current,
                        marker: MarkerRef::Absent,
                        max_items: (!unknown_arn).then(|| "abc".to_owned()),
                        unknown_arn,
                    },
                    false,
                );
            }
        };
        self.push(
            Request::Checkpoint {
                token: TokenRef::Current,
                client_token: None,
                updates,
                unknown_arn,
            },
            false,
        );
    }

    /// A request where the runner is known to be lenient or different (the deliberate
    /// differences): the sequence ends with it when the two then hold different states.
    fn break_lenient(&mut self) {
        let a = self.fresh_id("s");
        let started = self.ops_where(|op| op.op_type == "STEP" && op.status == "STARTED");
        match self.rng.u32(..14) {
            0 => {
                let action = *["SUCCEED", "FAIL", "RETRY"]
                    .get(self.rng.usize(..3))
                    .unwrap_or(&"SUCCEED");
                let ty = if action == "RETRY" || self.rng.bool() {
                    "STEP"
                } else {
                    "CONTEXT"
                };
                let mut u = update(&a, ty, action);
                if action == "RETRY" {
                    u["StepOptions"] = json!({"NextAttemptDelaySeconds": 3600});
                }
                self.last_checkpoint(vec![u]);
            }
            1 => {
                let id = ["a b", "a.b", "", "été", &"i".repeat(65)][self.rng.usize(..5)].to_owned();
                self.last_checkpoint(vec![update(&id, "STEP", "START")]);
            }
            2 => self.last_checkpoint(vec![with(
                update("exec result", "EXECUTION", "SUCCEED"),
                "Payload",
                json!("\"r\""),
            )]),
            3 => {
                let (key, len) = if self.rng.bool() {
                    ("Name", 257)
                } else {
                    ("SubType", 33)
                };
                self.last_checkpoint(vec![with(
                    update(&a, "STEP", "START"),
                    key,
                    json!("n".repeat(len)),
                )]);
            }
            4 => {
                let ct =
                    ["c".repeat(65), "a b".to_owned(), String::new()][self.rng.usize(..3)].clone();
                self.push_last(Request::Checkpoint {
                    token: TokenRef::Current,
                    client_token: Some(ct),
                    updates: Updates::List(vec![update(&a, "STEP", "START")]),
                    unknown_arn: false,
                });
            }
            5 => match self.pick(&self.stale_reads.clone()) {
                // A marker answered before the last applied checkpoint: both refuse it.
                Some(k) => self.push(
                    Request::State {
                        token: TokenRef::Current,
                        marker: MarkerRef::NextOf(k),
                        max_items: Some("1".to_owned()),
                        unknown_arn: false,
                    },
                    false,
                ),
                None => self.state_read(),
            },
            6 | 7 => {
                let mut u = update(&a, "STEP", "START");
                let mut close = update(&a, "STEP", "FAIL");
                close["Error"] = json!({"ErrorType": "E", "ErrorMessage": xs(40 * KIB)});
                u["Name"] = json!("error-40k");
                self.last_checkpoint(vec![u, close]);
            }
            8 => {
                let n = ["0", "1001", "-1"][self.rng.usize(..3)];
                self.push(
                    Request::State {
                        token: TokenRef::Current,
                        marker: MarkerRef::Absent,
                        max_items: Some(n.to_owned()),
                        unknown_arn: false,
                    },
                    false,
                );
            }
            9 | 10 => {
                // The last applied call's client token and token, other updates.
                let last = self.applied.last().copied();
                match last.map(|k| self.requests[k].clone()) {
                    Some(Request::Checkpoint {
                        client_token: Some(ct),
                        ..
                    }) => {
                        let k = last.unwrap_or_default();
                        self.push(
                            Request::Checkpoint {
                                token: TokenRef::Sent(k),
                                client_token: Some(ct),
                                updates: Updates::List(vec![update(&a, "STEP", "START")]),
                                unknown_arn: false,
                            },
                            false,
                        );
                    }
                    _ => self.valid_batch(),
                }
            }
            11 => {
                // An older applied call replayed as it was.
                let older = self.older_applied();
                match self.pick(&older).map(|k| (k, self.requests[k].clone())) {
                    Some((
                        k,
                        Request::Checkpoint {
                            client_token: Some(ct),
                            updates,
                            ..
                        },
                    )) => self.push(
                        Request::Checkpoint {
                            token: TokenRef::Sent(k),
                            client_token: Some(ct),
                            updates,
                            unknown_arn: false,
                        },
                        false,
                    ),
                    _ => self.replay_last(),
                }
            }
            12 if self.rng.u32(..20) == 0 => {
                // More new operations than one answer page holds.
                let n = self.rng.usize(1001..=1100);
                let ups: Vec<Value> = (0..n)
                    .map(|i| update(&format!("{a}-{i}"), "STEP", "START"))
                    .collect();
                for i in 0..n {
                    self.ops.push(Op {
                        id: format!("{a}-{i}"),
                        op_type: "STEP",
                        status: "STARTED",
                        parent: None,
                        name: None,
                        sub_type: None,
                    });
                }
                self.checkpoint(ups, true);
                if self.rng.bool() {
                    // Its answer's NextMarker read back: only this crate's answer has one.
                    let k = self.requests.len() - 1;
                    self.push(
                        Request::State {
                            token: TokenRef::Current,
                            marker: MarkerRef::NextOf(k),
                            max_items: Some("1000".to_owned()),
                            unknown_arn: false,
                        },
                        false,
                    );
                }
            }
            13 => match self.pick(&started) {
                // START of a step whose retry is pending.
                Some(op) => {
                    let mut retry = op.update("RETRY");
                    retry["StepOptions"] = json!({"NextAttemptDelaySeconds": 3600});
                    if let Some(held) = self.op_mut(&op.id) {
                        held.status = "PENDING";
                    }
                    self.checkpoint(vec![retry], true);
                    self.last_checkpoint(vec![op.update("START")]);
                }
                None => self.valid_batch(),
            },
            _ => self.valid_batch(),
        }
    }

    fn last_checkpoint(&mut self, updates: Vec<Value>) {
        self.push_last(Request::Checkpoint {
            token: TokenRef::Current,
            client_token: None,
            updates: Updates::List(updates),
            unknown_arn: false,
        });
    }

    /// A request breaking one of the further rules this crate's emulator shares with the runner
    /// (both refuse, or both complete a WAIT of no time at once), or one where the two read
    /// these rules differently on purpose.
    fn break_shared_rule(&mut self) {
        let a = self.fresh_id("s");
        let started =
            self.ops_where(|op| matches!(op.op_type, "STEP" | "CONTEXT") && op.status == "STARTED");
        let started_steps = self.ops_where(|op| op.op_type == "STEP" && op.status == "STARTED");
        let callbacks = self.ops_where(|op| op.op_type == "CALLBACK" && op.status == "STARTED");
        let parented = self
            .ops_where(|op| op.parent.is_some() && op.status == "STARTED" && op.op_type == "STEP");
        let updates = match self.rng.u32(..10) {
            0 => match self.pick(&started) {
                Some(op) => {
                    let mut u = if self.rng.bool() {
                        with(op.update("FAIL"), "Payload", json!("\"p\""))
                    } else {
                        op.update("SUCCEED")
                    };
                    u["Error"] = json!({"ErrorType": "E"});
                    vec![u]
                }
                None => return self.valid_batch(),
            },
            1 => match self.pick(&started_steps) {
                Some(op) if self.rng.bool() => vec![op.update("RETRY")],
                Some(op) => vec![with(op.update("RETRY"), "StepOptions", json!({}))],
                None => return self.valid_batch(),
            },
            2 => match self.pick(&callbacks) {
                Some(op) => vec![op.update("CANCEL")],
                None => vec![update(&a, "CALLBACK", "CANCEL")],
            },
            3 => {
                let mut u = update(&a, "CHAINED_INVOKE", "START");
                if self.rng.bool() {
                    u["ChainedInvokeOptions"] = json!({});
                }
                vec![u]
            }
            4 => match self.pick(&started) {
                Some(op) => {
                    let mut u = with(op.update("FAIL"), "Error", json!({"ErrorType": "E"}));
                    let other_parent = self.pick(&self.ops_where(|c| {
                        c.op_type == "CONTEXT" && c.id != op.id && Some(&c.id) != op.parent.as_ref()
                    }));
                    match (self.rng.u32(..3), other_parent) {
                        (0, Some(parent)) => u["ParentId"] = json!(parent.id),
                        (1, _) => u["SubType"] = json!("Other"),
                        _ => u["Name"] = json!("another-name"),
                    }
                    vec![u]
                }
                None => return self.valid_batch(),
            },
            5 => {
                // A WAIT of no time: both complete it within the request.
                let mut u = update(&a, "WAIT", "START");
                if self.rng.bool() {
                    u["WaitOptions"] = json!({"WaitSeconds": 0});
                }
                self.ops.push(Op {
                    id: a,
                    op_type: "WAIT",
                    status: "SUCCEEDED",
                    parent: None,
                    name: None,
                    sub_type: None,
                });
                return self.checkpoint(vec![u], true);
            }
            // Read differently on purpose, or not settled: the sequence ends here.
            6 => match self.pick(&parented) {
                // A later update that leaves out the operation's ParentId.
                Some(op) => {
                    let mut u = op.update("SUCCEED");
                    if let Some(map) = u.as_object_mut() {
                        map.remove("ParentId");
                    }
                    return self.last_checkpoint(vec![u]);
                }
                None => return self.valid_batch(),
            },
            7 => {
                // The end of an operation started in the same request, breaking a rule.
                let start = with(update(&a, "STEP", "START"), "Name", json!("first"));
                let end = match self.rng.u32(..4) {
                    0 => with(
                        update(&a, "STEP", "SUCCEED"),
                        "Error",
                        json!({"ErrorType": "E"}),
                    ),
                    1 => with(
                        with(update(&a, "STEP", "FAIL"), "Payload", json!("\"p\"")),
                        "Error",
                        json!({"ErrorType": "E"}),
                    ),
                    2 => update(&a, "STEP", "RETRY"),
                    _ => with(update(&a, "STEP", "SUCCEED"), "Name", json!("second")),
                };
                return self.last_checkpoint(vec![start, end]);
            }
            8 => match self.pick(&started_steps) {
                Some(op) => {
                    let u = with(
                        op.update("RETRY"),
                        "StepOptions",
                        json!({"NextAttemptDelaySeconds": 0}),
                    );
                    return self.last_checkpoint(vec![u]);
                }
                None => return self.valid_batch(),
            },
            _ => match self.pick(&started_steps) {
                Some(op) => {
                    let mut u = with(
                        op.update("RETRY"),
                        "StepOptions",
                        json!({"NextAttemptDelaySeconds": 3600}),
                    );
                    u["Error"] = json!({"ErrorType": "E"});
                    u["Payload"] = json!("\"p\"");
                    return self.last_checkpoint(vec![u]);
                }
                None => return self.valid_batch(),
            },
        };
        self.checkpoint(updates, false);
    }
}

impl Gen {
    /// Further rules, by operation type: actions a type does not take, options at their
    /// edges, a CONTEXT's misplaced outcome, an EXECUTION update under a repeated or foreign
    /// Id, and where the runner reads an empty `Error` or an invoke's options differently.
    fn break_more(&mut self) {
        let a = self.fresh_id("s");
        let contexts = self.ops_where(|op| op.op_type == "CONTEXT" && op.status == "STARTED");
        let closable =
            self.ops_where(|op| matches!(op.op_type, "STEP" | "CONTEXT") && op.status == "STARTED");
        let waits = self.ops_where(|op| op.op_type == "WAIT" && op.status == "STARTED");
        let updates = match self.rng.u32(..12) {
            // Actions a type does not take: both refuse.
            0 => vec![update(&a, "CHAINED_INVOKE", "CANCEL")],
            1 => match self.pick(&contexts) {
                Some(op) => {
                    let action = if self.rng.bool() { "RETRY" } else { "CANCEL" };
                    let mut u = op.update(action);
                    if action == "RETRY" {
                        u["StepOptions"] = json!({"NextAttemptDelaySeconds": 3600});
                    }
                    vec![u]
                }
                None => vec![update(&a, "CONTEXT", "CANCEL")],
            },
            2 => match self.pick(&waits) {
                Some(op) if self.rng.bool() => vec![op.update("FAIL")],
                Some(op) => vec![with(
                    op.update("RETRY"),
                    "StepOptions",
                    json!({"NextAttemptDelaySeconds": 3600}),
                )],
                None => vec![update(&a, "WAIT", "FAIL")],
            },
            3 => {
                let action = if self.rng.bool() { "RETRY" } else { "CANCEL" };
                vec![update("$EXEC", "EXECUTION", action)]
            }
            // A CONTEXT's misplaced outcome, started in this request or never: both refuse.
            4 => {
                let c = self.fresh_id("c");
                let end = if self.rng.bool() {
                    with(
                        update(&c, "CONTEXT", "SUCCEED"),
                        "Error",
                        json!({"ErrorType": "E"}),
                    )
                } else {
                    with(update(&c, "CONTEXT", "FAIL"), "Payload", json!("\"p\""))
                };
                if self.rng.bool() {
                    vec![update(&c, "CONTEXT", "START"), end]
                } else {
                    vec![end]
                }
            }
            // An EXECUTION update repeating an earlier update's Id: both refuse.
            5 => {
                let x = self.fresh_id("x");
                vec![
                    with(
                        update(&x, "WAIT", "START"),
                        "WaitOptions",
                        json!({"WaitSeconds": 3600}),
                    ),
                    update(&x, "EXECUTION", "SUCCEED"),
                ]
            }
            // A WAIT of no time, asked for with an empty WaitOptions or a negative
            // WaitSeconds: both complete it within the request.
            6 => {
                let w = self.fresh_id("w");
                let options = if self.rng.bool() {
                    json!({})
                } else {
                    json!({"WaitSeconds": -(self.rng.i64(1..=3600))})
                };
                self.ops.push(Op {
                    id: w.clone(),
                    op_type: "WAIT",
                    status: "SUCCEEDED",
                    parent: None,
                    name: None,
                    sub_type: None,
                });
                return self.checkpoint(
                    vec![with(update(&w, "WAIT", "START"), "WaitOptions", options)],
                    true,
                );
            }
            // An EXECUTION completion under an Id of its own, naming a Name: both complete
            // the execution (the Name is compared only with an operation of that Id).
            7 => {
                let u = with(
                    update("execution-result-1", "EXECUTION", "SUCCEED"),
                    "Name",
                    json!("other"),
                );
                return self.complete_with(u);
            }
            // A SUCCEED with an empty Error: the runner applies, this crate refuses.
            8 => match self.pick(&closable) {
                Some(op) if self.rng.bool() => {
                    return self.last_checkpoint(vec![with(
                        op.update("SUCCEED"),
                        "Error",
                        json!({}),
                    )]);
                }
                _ => {
                    let ty = if self.rng.bool() { "STEP" } else { "CONTEXT" };
                    return self.last_checkpoint(vec![
                        update(&a, ty, "START"),
                        with(update(&a, ty, "SUCCEED"), "Error", json!({})),
                    ]);
                }
            },
            // A CHAINED_INVOKE whose options the runner refuses and this crate applies, or a
            // well-formed one, which the runner fails at once.
            9 => {
                let i = self.fresh_id("i");
                let options = match self.rng.u32(..7) {
                    0 => json!({"FunctionName": "not a function!"}),
                    1 => json!({"FunctionName": "arn:aws:lambda:us-east-1:function:f"}),
                    2 => {
                        json!({"FunctionName": "arn:aws:lambda:us-east-1:999999999999:function:f"})
                    }
                    3 => json!({"FunctionName": "f", "TenantId": ""}),
                    4 => json!({"FunctionName": "f", "TenantId": "bad#tenant"}),
                    // Well-formed: the runner fails it at once, this crate leaves it STARTED.
                    _ if self.rng.bool() => json!({"FunctionName": "f"}),
                    _ => json!({"FunctionName": "f:$LATEST", "TenantId": "t-1"}),
                };
                return self.last_checkpoint(vec![with(
                    update(&i, "CHAINED_INVOKE", "START"),
                    "ChainedInvokeOptions",
                    options,
                )]);
            }
            _ => return self.valid_batch(),
        };
        self.checkpoint(updates, false);
    }

    /// Completes the execution with `u`, a checkpoint both servers apply.
    fn complete_with(&mut self, u: Value) {
        self.checkpoint(vec![u], true);
        self.completed = true;
    }
}

fn with(mut update: Value, key: &str, value: Value) -> Value {
    update[key] = value;
    update
}
