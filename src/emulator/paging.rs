//! Paging of operations: markers, `MaxItems`, page slicing, and the
//! `GetDurableExecutionState` call.
//!
//! Three answers hold a page of operations: a checkpoint's `NewExecutionState`, the
//! `GetDurableExecutionState` response and an invocation event's
//! `InitialExecutionState`. All three are cut by [`page`], so a page and the marker of
//! the next one are computed in one place. A checkpoint's answer is cut by the page size
//! alone; a state page and an invocation event also by bytes
//! ([`super::EmulatorLimits::max_page_bytes`]), as the service bounds what one response
//! or invocation payload can carry.
//!
//! # Markers
//!
//! Markers are opaque to clients but have a fixed, documented form. `<tag>` is 8 lowercase
//! hex digits naming the checkpoint token the marker was issued with ([`token_tag`]):
//!
//! - `c.<n>.<tag>.<offset>`: the operations changed by applied checkpoint number `<n>` of
//!   this execution, from `<offset>` on. A checkpoint whose changes exceed the page size
//!   stores its list of changed operations and answers `NextMarker = c.<n>.<tag>.<page>`,
//!   tagged with the **new** token it answers, so the rest is fetched with
//!   `GetDurableExecutionState` using that token. Pages show each operation's current
//!   state at fetch time.
//! - `s.<tag>.<offset>`: all operations in creation order, from `<offset>` on. A state page
//!   tags its `NextMarker` with the token it was read with; an invocation event
//!   ([`super::Emulator::invocation_event`]) holds the first page of these, tagged with the
//!   execution's current token, and answers the rest with `NextMarker = s.<tag>.<page>`.
//!
//! Anything else, an unknown `<n>`, or an offset past the end is refused with 400, and so is
//! a marker whose tag is not that of the query's token: a marker is tied to the token it was
//! issued with, so once a checkpoint (or a rotation or revocation of the token) moves the
//! chain, the markers issued before it are refused, as AWS's local runner refuses them.
//!
//! # Invariants
//!
//! - A marker is only handed out when operations remain past it, and it points at the
//!   first operation not yet sent.
//! - Offsets index lists that only grow (`Execution::ops` and the stored change lists
//!   never shrink), so a marker stays in range for the life of the execution; only its
//!   token decides whether it is still taken.

use super::error::ApiError;
use super::faults::Roll;
use super::operation::Op;
use super::store::Executions;
use super::wire;

/// `MaxItems` when absent or 0.
pub(crate) const DEFAULT_MAX_ITEMS: usize = 100;
/// Largest `MaxItems` the service accepts.
pub(crate) const MAX_MAX_ITEMS: usize = 1000;

/// Query of `GetDurableExecutionState`, still raw.
#[derive(Clone, Debug, Default)]
pub(crate) struct StateQuery {
    pub(crate) checkpoint_token: Option<String>,
    pub(crate) marker: Option<String>,
    pub(crate) max_items: Option<String>,
}

/// The tag a marker carries of the checkpoint token it was issued with: the 32-bit FNV-1a
/// hash of the token's bytes. It only needs to tell the execution's successive tokens apart,
/// not to resist forgery: a marker with another token's tag is refused as a wrong marker.
pub(super) fn token_tag(token: &str) -> u32 {
    token.bytes().fold(0x811c_9dc5_u32, |hash, b| {
        (hash ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// Where a marker points, and the tag ([`token_tag`]) of the token it was issued with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Marker {
    /// Into the changed operations of applied checkpoint `n`.
    Checkpoint { n: u64, tag: u32, offset: usize },
    /// Into all operations, in creation order.
    State { tag: u32, offset: usize },
}

impl Marker {
    fn parse(s: &str) -> Option<Self> {
        let digits = |p: &str| {
            (!p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
                .then(|| p.parse().ok())
                .flatten()
        };
        let tag = |p: &str| {
            (p.len() == 8 && p.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
                .then(|| u32::from_str_radix(p, 16).ok())
                .flatten()
        };
        let mut parts = s.split('.');
        let marker = match (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) {
            (Some("c"), Some(n), Some(t), Some(offset), None) => Self::Checkpoint {
                n: digits(n).and_then(|n: usize| u64::try_from(n).ok())?,
                tag: tag(t)?,
                offset: digits(offset)?,
            },
            (Some("s"), Some(t), Some(offset), None, None) => Self::State {
                tag: tag(t)?,
                offset: digits(offset)?,
            },
            _ => return None,
        };
        Some(marker)
    }

    fn render(self) -> String {
        match self {
            Self::Checkpoint { n, tag, offset } => format!("c.{n}.{tag:08x}.{offset}"),
            Self::State { tag, offset } => format!("s.{tag:08x}.{offset}"),
        }
    }

    fn offset(self) -> usize {
        match self {
            Self::Checkpoint { offset, .. } | Self::State { offset, .. } => offset,
        }
    }

    fn tag(self) -> u32 {
        match self {
            Self::Checkpoint { tag, .. } | Self::State { tag, .. } => tag,
        }
    }

    /// The same list and token, at another offset.
    fn at(self, offset: usize) -> Self {
        match self {
            Self::Checkpoint { n, tag, .. } => Self::Checkpoint { n, tag, offset },
            Self::State { tag, .. } => Self::State { tag, offset },
        }
    }
}

/// The page of `source` (positions in `ops`) that `marker` points to: at most `size`
/// operations weighing at most `max_bytes` together ([`Op::page_bytes`]), but never
/// fewer than one, with the marker of the next page when operations remain after it.
pub(super) fn page(
    ops: &[Op],
    source: &[usize],
    marker: Marker,
    size: usize,
    max_bytes: usize,
) -> wire::OperationsPage {
    let offset = marker.offset();
    let mut operations: Vec<wire::Operation> = Vec::new();
    let mut bytes = 0usize;
    let mut end = offset;
    for op in source.iter().skip(offset).filter_map(|&i| ops.get(i)) {
        let weight = op.page_bytes();
        let over_bytes = bytes.saturating_add(weight) > max_bytes;
        if operations.len() >= size || (!operations.is_empty() && over_bytes) {
            break;
        }
        operations.push(op.to_wire());
        bytes = bytes.saturating_add(weight);
        end = end.saturating_add(1);
    }
    let next_marker = (end < source.len()).then(|| marker.at(end).render());
    wire::OperationsPage {
        operations,
        next_marker,
    }
}

/// Parses `MaxItems`: absent or 0 means [`DEFAULT_MAX_ITEMS`], 1–1000 is taken as is.
pub(crate) fn parse_max_items(raw: Option<&str>) -> Result<usize, ApiError> {
    let Some(raw) = raw.filter(|r| !r.is_empty()) else {
        return Ok(DEFAULT_MAX_ITEMS);
    };
    // Digits only: `parse` would also take a leading `+`.
    let digits = raw.bytes().all(|b| b.is_ascii_digit());
    match raw.parse::<usize>().ok().filter(|_| digits).ok_or(()) {
        Ok(0) => Ok(DEFAULT_MAX_ITEMS),
        Ok(n) if n <= MAX_MAX_ITEMS => Ok(n),
        _ => Err(ApiError::InvalidParameter(format!(
            "MaxItems must be an integer between 1 and {MAX_MAX_ITEMS}, got {raw:?}"
        ))),
    }
}

impl Executions {
    /// Processes one `GetDurableExecutionState` call.
    pub(crate) fn state(
        &mut self,
        arn: &str,
        query: &StateQuery,
        roll: &Roll,
    ) -> Result<Vec<u8>, ApiError> {
        let max_page_bytes = self.limits.max_page_bytes;
        let exec = self
            .executions
            .get_mut(arn)
            .ok_or_else(|| ApiError::NotFound(arn.to_owned()))?;
        exec.state_calls = exec.state_calls.saturating_add(1);
        if let Some(err) = roll.injected_error() {
            return Err(err);
        }
        // A read without a token, like one with an empty token, names no token the service
        // issued: stale, as AWS's local runner answers both.
        let token = match query.checkpoint_token.as_deref() {
            None => return Err(ApiError::InvalidToken("no CheckpointToken")),
            Some("") => return Err(ApiError::InvalidToken("the token is empty")),
            Some(token) => token,
        };
        exec.check_token(token)?;
        let max_items = parse_max_items(query.max_items.as_deref())?;
        let tag = token_tag(token);
        let marker = match query.marker.as_deref().filter(|m| !m.is_empty()) {
            None => Marker::State { tag, offset: 0 },
            Some(raw) => Marker::parse(raw)
                .ok_or_else(|| ApiError::InvalidParameter(format!("invalid marker {raw:?}")))?,
        };
        if marker.tag() != tag {
            return Err(ApiError::InvalidParameter(format!(
                "invalid marker {:?}: issued with another checkpoint token",
                marker.render()
            )));
        }
        let all: Vec<usize>;
        let source: &[usize] = match marker {
            Marker::State { .. } => {
                all = (0..exec.ops.len()).collect();
                &all
            }
            Marker::Checkpoint { n, .. } => exec.paged_changes.get(&n).ok_or_else(|| {
                ApiError::InvalidParameter(format!(
                    "invalid marker {:?}: unknown page",
                    marker.render()
                ))
            })?,
        };
        if marker.offset() > source.len() {
            return Err(ApiError::InvalidParameter(format!(
                "invalid marker {:?}: past the end",
                marker.render()
            )));
        }
        let page = page(&exec.ops, source, marker, max_items, max_page_bytes);
        serde_json::to_vec(&page).map_err(|_| ApiError::Service("could not serialize the response"))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn markers_round_trip_and_garbage_is_refused() {
        for m in [
            Marker::Checkpoint {
                n: 3,
                tag: 0xdead_beef,
                offset: 10,
            },
            Marker::State { tag: 0, offset: 0 },
        ] {
            assert_eq!(
                Marker::parse(&m.render()),
                Some(m),
                "render then parse is identity"
            );
        }
        assert_eq!(
            Marker::State {
                tag: 0xab,
                offset: 7
            }
            .render(),
            "s.000000ab.7",
            "the tag is 8 lowercase hex digits"
        );
        for bad in [
            "",
            "c.1",
            "s.",
            "s.1",
            "s.0000000a.-1",
            "x.0000000a.1",
            "c.1.2.3",
            "c.1.0000000a.2.3",
            "s.0000000a.1e3",
            "s.0000000a. 1",
            "s.0000000a.+1",
            "s.0000000A.1",
            "s.000000a.1",
            "s.00000000a.1",
            "s.0000000g.1",
        ] {
            assert_eq!(Marker::parse(bad), None, "{bad:?} must be refused");
        }
    }

    #[test]
    fn the_token_tag_is_fnv1a_and_tells_tokens_apart() {
        // FNV-1a's published 32-bit values for "" and "a".
        assert_eq!(token_tag(""), 0x811c_9dc5);
        assert_eq!(token_tag("a"), 0xe40c_292c);
        assert_ne!(token_tag("token-1"), token_tag("token-2"));
    }

    #[test]
    fn a_page_is_cut_at_its_byte_budget_but_holds_at_least_one_operation() {
        let op = |id: &str, result: usize| {
            let mut op = Op::new(id, super::super::rules::OpType::Step, 0.0);
            op.result = (result > 0).then(|| "r".repeat(result));
            op
        };
        let ops = [op("a", 4), op("b", 4), op("c", 0), op("d", 9), op("e", 2)];
        let all: Vec<usize> = (0..ops.len()).collect();
        let ids = |page: &wire::OperationsPage| -> Vec<String> {
            page.operations
                .iter()
                .filter_map(|o| o.id.clone())
                .collect()
        };
        // 4 + 4 + 1 (an operation without payloads weighs 1) fit in 9; "d" does not.
        let at = |offset| Marker::State { tag: 0x1f, offset };
        let first = page(&ops, &all, at(0), 100, 9);
        assert_eq!(ids(&first), ["a", "b", "c"]);
        assert_eq!(
            first.next_marker.as_deref(),
            Some("s.0000001f.3"),
            "the next page's marker keeps the token's tag"
        );
        // "d" alone is over the budget: it travels alone rather than never.
        let second = page(&ops, &all, at(3), 100, 5);
        assert_eq!(ids(&second), ["d"]);
        assert_eq!(second.next_marker.as_deref(), Some("s.0000001f.4"));
        // The count still cuts first when it is the smaller bound.
        let counted = page(&ops, &all, at(0), 2, usize::MAX);
        assert_eq!(ids(&counted), ["a", "b"]);
    }

    #[test]
    fn max_items_defaults_and_bounds() {
        assert_eq!(parse_max_items(None).unwrap(), 100, "absent means 100");
        assert_eq!(parse_max_items(Some("0")).unwrap(), 100, "0 means 100");
        assert_eq!(parse_max_items(Some("1000")).unwrap(), 1000);
        for bad in ["1001", "-1", "x", "1.5"] {
            assert!(
                parse_max_items(Some(bad)).is_err(),
                "{bad:?} is out of range"
            );
        }
    }
}
