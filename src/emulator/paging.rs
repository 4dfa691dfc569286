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
//! Markers are opaque to clients but have a fixed, documented form:
//!
//! - `c.<n>.<offset>`: the operations changed by applied checkpoint number `<n>` of this
//!   execution, from `<offset>` on. A checkpoint whose changes exceed the page size
//!   stores its list of changed operations and answers `NextMarker = c.<n>.<page>`, so
//!   the rest is fetched with `GetDurableExecutionState` using the **new** token. Pages
//!   show each operation's current state at fetch time.
//! - `s.<offset>`: all operations in creation order, from `<offset>` on. An invocation
//!   event ([`super::Emulator::invocation_event`]) holds the first page of these and
//!   answers the rest with `NextMarker = s.<page>`.
//!
//! Anything else, an unknown `<n>`, or an offset past the end is refused with 400.
//!
//! # Invariants
//!
//! - A marker is only handed out when operations remain past it, and it points at the
//!   first operation not yet sent.
//! - Offsets index lists that only grow (`Execution::ops` and the stored change lists
//!   never shrink), so a marker stays valid for the life of the execution.

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

/// Where a marker points.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Marker {
    /// Into the changed operations of applied checkpoint `n`.
    Checkpoint { n: u64, offset: usize },
    /// Into all operations, in creation order.
    State { offset: usize },
}

impl Marker {
    fn parse(s: &str) -> Option<Self> {
        let digits = |p: &str| {
            (!p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
                .then(|| p.parse().ok())
                .flatten()
        };
        let mut parts = s.split('.');
        let marker = match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some("c"), Some(n), Some(offset), None) => Self::Checkpoint {
                n: digits(n).and_then(|n: usize| u64::try_from(n).ok())?,
                offset: digits(offset)?,
            },
            (Some("s"), Some(offset), None, None) => Self::State {
                offset: digits(offset)?,
            },
            _ => return None,
        };
        Some(marker)
    }

    fn render(self) -> String {
        match self {
            Self::Checkpoint { n, offset } => format!("c.{n}.{offset}"),
            Self::State { offset } => format!("s.{offset}"),
        }
    }

    fn offset(self) -> usize {
        match self {
            Self::Checkpoint { offset, .. } | Self::State { offset } => offset,
        }
    }

    /// The same list, at another offset.
    fn at(self, offset: usize) -> Self {
        match self {
            Self::Checkpoint { n, .. } => Self::Checkpoint { n, offset },
            Self::State { .. } => Self::State { offset },
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
    match raw.parse::<usize>() {
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
        let token = query
            .checkpoint_token
            .as_deref()
            .ok_or_else(|| ApiError::InvalidParameter("CheckpointToken is required".to_owned()))?;
        if token.is_empty() {
            return Err(ApiError::InvalidToken("the token is empty"));
        }
        exec.check_token(token)?;
        let max_items = parse_max_items(query.max_items.as_deref())?;
        let marker = match query.marker.as_deref().filter(|m| !m.is_empty()) {
            None => Marker::State { offset: 0 },
            Some(raw) => Marker::parse(raw)
                .ok_or_else(|| ApiError::InvalidParameter(format!("invalid marker {raw:?}")))?,
        };
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
            Marker::Checkpoint { n: 3, offset: 10 },
            Marker::State { offset: 0 },
        ] {
            assert_eq!(
                Marker::parse(&m.render()),
                Some(m),
                "render then parse is identity"
            );
        }
        for bad in [
            "", "c.1", "s.", "s.-1", "x.1", "c.1.2.3", "s.1e3", "s. 1", "s.+1",
        ] {
            assert_eq!(Marker::parse(bad), None, "{bad:?} must be refused");
        }
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
        let first = page(&ops, &all, Marker::State { offset: 0 }, 100, 9);
        assert_eq!(ids(&first), ["a", "b", "c"]);
        assert_eq!(first.next_marker.as_deref(), Some("s.3"));
        // "d" alone is over the budget: it travels alone rather than never.
        let second = page(&ops, &all, Marker::State { offset: 3 }, 100, 5);
        assert_eq!(ids(&second), ["d"]);
        assert_eq!(second.next_marker.as_deref(), Some("s.4"));
        // The count still cuts first when it is the smaller bound.
        let counted = page(&ops, &all, Marker::State { offset: 0 }, 2, usize::MAX);
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
