//! Small pieces the per-session layers share: whether the session is
//! closed (for a `poll_ready` that must stop waiting once it is, with no
//! request at hand), and coalesced error reports.

use getty::Session;

/// Type-erased so a service needs no packet type parameter.
pub(crate) struct ClosedProbe(Box<dyn Fn() -> bool + Send + Sync>);

impl ClosedProbe {
    pub(crate) fn new<W: Send + 'static>(session: &Session<W>) -> Self {
        let session = session.clone();
        ClosedProbe(Box::new(move || session.is_closed()))
    }

    pub(crate) fn is_closed(&self) -> bool {
        (self.0)()
    }
}

/// At most one report per this interval; each report carries the running
/// count of refused packets.
const REPORT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Whether a report is due, noting it when it is.
pub(crate) fn report_due(last: &mut Option<tokio::time::Instant>) -> bool {
    let now = tokio::time::Instant::now();
    if last.is_some_and(|at| now < at + REPORT_INTERVAL) {
        return false;
    }
    *last = Some(now);
    true
}
