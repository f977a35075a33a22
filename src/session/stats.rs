use std::{
    fmt,
    sync::atomic::{AtomicU64, Ordering::Relaxed},
};

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) bytes_in: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    pub(crate) packets_in: AtomicU64,
    pub(crate) packets_out: AtomicU64,
    pub(crate) writes: AtomicU64,
    pub(crate) buffered_input: AtomicU64,
}

impl Counters {
    /// Adds `n`. Only the session's driver writes the counters (others
    /// read snapshots), so this is a load and a store: a locked
    /// read-modify-write, several per batch, is measurable.
    #[inline]
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.store(counter.load(Relaxed).wrapping_add(n), Relaxed);
    }

    pub(crate) fn snapshot(&self) -> SessionStats {
        SessionStats {
            bytes_in: self.bytes_in.load(Relaxed),
            bytes_out: self.bytes_out.load(Relaxed),
            packets_in: self.packets_in.load(Relaxed),
            packets_out: self.packets_out.load(Relaxed),
            writes: self.writes.load(Relaxed),
            buffered_input: self.buffered_input.load(Relaxed),
        }
    }
}

/// A snapshot of a session's traffic counters (getty's `Stat()`).
///
/// Bytes count what crossed the socket; packets count what the codec decoded
/// and encoded. Raw [`send_bytes`](crate::Session::send_bytes) writes count as
/// bytes, not packets.
///
/// ```
/// use getty::SessionStats;
///
/// let s = SessionStats::default();
/// assert_eq!(s.to_string(), "read bytes: 0, write bytes: 0, read pkgs: 0, write pkgs: 0");
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionStats {
    /// Bytes read from the socket.
    pub bytes_in: u64,
    /// Bytes written to the socket.
    pub bytes_out: u64,
    /// Packets decoded.
    pub packets_in: u64,
    /// Packets encoded for writing.
    pub packets_out: u64,
    /// Socket write calls. The driver batches, so under load this is far
    /// below `packets_out`. Not part of the getty-style `Display`.
    pub writes: u64,
    /// Bytes of input the session holds in its buffers now, not yet handed
    /// to the stack (an incomplete packet, packets not yet decoded): what it
    /// charges against the input budget
    /// ([`ServerBuilder::max_buffered_input`](crate::ServerBuilder::max_buffered_input)).
    /// A gauge, not a counter; an idle session holds 0.
    pub buffered_input: u64,
}

impl fmt::Display for SessionStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "read bytes: {}, write bytes: {}, read pkgs: {}, write pkgs: {}",
            self.bytes_in, self.bytes_out, self.packets_in, self.packets_out
        )
    }
}
