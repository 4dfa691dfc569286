//! [`EmulatorBuilder`]: where the emulator listens, how it pages, what it refuses, and
//! which faults it starts with.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use tokio::net::TcpListener;

use super::Emulator;
use super::faults::{FaultDice, Faults};
use super::http;
use super::rules::EmulatorLimits;
use super::store::{Executions, Store};

/// Default page size of `NewExecutionState.Operations`: the largest page
/// `GetDurableExecutionState` may return (`MaxItems` ≤ 1000), so a checkpoint never
/// answers more than one state page could.
pub const DEFAULT_PAGE_SIZE: usize = 1000;

/// Default seed of the fault and id generators.
pub const DEFAULT_SEED: u64 = 0x5EED;

/// Configures and starts an [`Emulator`]; made by [`Emulator::builder`].
#[derive(Clone, Debug)]
#[must_use = "a builder does nothing until `start` is awaited"]
pub struct EmulatorBuilder {
    bind: SocketAddr,
    page_size: usize,
    limits: EmulatorLimits,
    omit_error_type_header: bool,
    faults: Faults,
    seed: u64,
}

impl Default for EmulatorBuilder {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            page_size: DEFAULT_PAGE_SIZE,
            limits: EmulatorLimits::default(),
            omit_error_type_header: false,
            faults: Faults::default(),
            seed: DEFAULT_SEED,
        }
    }
}

impl EmulatorBuilder {
    /// Address to listen on.
    ///
    /// Default: `127.0.0.1:0` (loopback, a free port chosen by the system).
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.bind = addr;
        self
    }

    /// Most operations in a checkpoint's `NewExecutionState` before it answers with a
    /// `NextMarker`; values below 1 count as 1.
    ///
    /// Default: [`DEFAULT_PAGE_SIZE`] (1000). Small values let tests exercise paging.
    pub fn page_size(mut self, page_size: usize) -> Self {
        self.page_size = page_size.max(1);
        self
    }

    /// All size limits at once.
    ///
    /// Default: [`EmulatorLimits::default`], the service's figures.
    pub fn limits(mut self, limits: EmulatorLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Largest request body accepted; a larger one is answered 413.
    ///
    /// Default: 7 MiB (see [`EmulatorLimits::max_request_bytes`]).
    pub fn max_request_bytes(mut self, bytes: usize) -> Self {
        self.limits.max_request_bytes = bytes;
        self
    }

    /// Largest `Payload` of a non-EXECUTION update.
    ///
    /// Default: 1 MiB.
    pub fn max_payload_bytes(mut self, bytes: usize) -> Self {
        self.limits.max_payload_bytes = bytes;
        self
    }

    /// Most updates in one request, or `None` for no cap.
    ///
    /// Default: `None`, as in the API model.
    pub fn max_updates(mut self, max: Option<usize>) -> Self {
        self.limits.max_updates = max;
        self
    }

    /// Leaves the `X-Amzn-ErrorType` header out of error responses; the body's `Type`
    /// then names the exception, so clients must classify by status and message.
    ///
    /// Default: false (the header is sent, as by the service).
    pub fn omit_error_type_header(mut self, omit: bool) -> Self {
        self.omit_error_type_header = omit;
        self
    }

    /// Faults injected from the start; change them later with [`Emulator::set_faults`].
    ///
    /// Default: none.
    pub fn faults(mut self, faults: Faults) -> Self {
        self.faults = faults;
        self
    }

    /// Seed of the fault generator (and of generated ids and tokens): the same seed and
    /// the same request sequence give the same faults.
    ///
    /// Default: [`DEFAULT_SEED`].
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Binds the listener and spawns the server on the current tokio runtime.
    ///
    /// # Errors
    ///
    /// The error from binding the address or reading back the bound address.
    ///
    /// # Panics
    ///
    /// When called outside a tokio runtime (from `tokio::spawn`).
    pub async fn start(self) -> std::io::Result<Emulator> {
        let listener = TcpListener::bind(self.bind).await?;
        let addr = listener.local_addr()?;
        let store = Arc::new(Store::new(
            Executions::new(self.seed, self.page_size, self.limits),
            FaultDice::new(self.faults, self.seed),
            self.omit_error_type_header,
            self.limits,
        ));
        let router = http::router(Arc::clone(&store));
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            // Either a send or the sender's drop (the handle dropped) stops the server.
            let stop = async move {
                let _ = stop_rx.await;
            };
            if let Err(err) = axum::serve(listener, router)
                .with_graceful_shutdown(stop)
                .await
            {
                tracing::warn!(error = %err, "emulator server stopped with an error");
            }
        });
        Ok(Emulator::new(addr, store, stop_tx, task))
    }
}
