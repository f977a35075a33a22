//! One read buffer and one write buffer per thread, lent to whichever
//! session on that thread has input to read or output to encode, and given
//! back when the session waits with the buffer empty.
//!
//! A session's own buffers are cold by the time the session runs again (a
//! hundred other sessions ran in between): the kernel's copy into the read
//! buffer, and every packet encoded into the write buffer, then write to
//! memory out of the core's caches, and the first locked instruction after
//! such a copy (a packet's shared buffer taken or released) waits for
//! those stores. Buffers that every session on the thread uses in turn
//! stay in cache. This is netty's pooled allocator's thread cache, kept to
//! the one case that matters here, and it costs idle sessions nothing:
//! they hold no buffer.
//!
//! A buffer is only given back when no one else holds part of it: a read
//! buffer whose packets are all dropped, a write buffer all written. A
//! session whose socket is full, or whose packets a handler still holds,
//! keeps its buffer; the next session then gets one of its own, and the
//! first of them to finish gives its buffer back (the others' are freed).
//!
//! Stream transports only: a message transport's buffers hold whole
//! messages, split off and handed on.

use std::{cell::Cell, thread::LocalKey};

use bytes::BytesMut;

/// A fresh buffer's size: a whole batch's worth (a smaller one is copied
/// as it grows).
pub(crate) const CHUNK: usize = 64 * 1024;

/// A buffer that grew past this (a large packet) is not kept for the
/// thread: its memory goes back to the allocator with it.
const KEEP_AT_MOST: usize = 4 * CHUNK;

thread_local! {
    static READ: Cell<Option<BytesMut>> = const { Cell::new(None) };
    static WRITE: Cell<Option<BytesMut>> = const { Cell::new(None) };
}

/// Which of the thread's two buffers.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Spare {
    Read,
    Write,
}

impl Spare {
    fn slot(self) -> &'static LocalKey<Cell<Option<BytesMut>>> {
        match self {
            Spare::Read => &READ,
            Spare::Write => &WRITE,
        }
    }

    /// The thread's spare buffer of this kind, if it has one.
    pub(crate) fn take(self) -> Option<BytesMut> {
        // During thread teardown the slot is gone: no spare.
        self.slot().try_with(Cell::take).ok().flatten()
    }

    /// Gives back `buf` if it is empty and no one else holds part of its
    /// memory: it becomes the thread's spare, or is freed when the thread
    /// has one already. True when it was taken (`buf` is then empty with
    /// no capacity); false leaves it as it was.
    pub(crate) fn give(self, buf: &mut BytesMut) -> bool {
        // Bytes read or written are skipped, not removed: the next user
        // must start at the chunk's start, not walk on through memory long
        // out of cache. Allocates nothing; fails while the memory is shared.
        if !buf.is_empty() || !buf.try_reclaim(CHUNK) {
            return false;
        }
        let buf = std::mem::take(buf);
        if buf.capacity() > KEEP_AT_MOST {
            return true;
        }
        // During thread teardown the slot is gone: the buffer is freed.
        let _ = self.slot().try_with(|spare| {
            let held = spare.take();
            spare.set(Some(held.unwrap_or(buf)));
        });
        true
    }
}

#[cfg(test)]
mod tests {
    use bytes::Buf;

    use super::*;

    #[test]
    fn a_given_buffer_is_the_next_taken_from_its_start() {
        let mut buf = BytesMut::with_capacity(CHUNK);
        buf.extend_from_slice(&[7; 1000]);
        buf.advance(1000);
        let start = buf.as_ptr() as usize - 1000;
        assert!(Spare::Write.give(&mut buf));
        assert_eq!(buf.capacity(), 0);
        let again = Spare::Write.take().expect("the buffer given");
        assert_eq!(again.as_ptr() as usize, start);
        assert!(again.capacity() >= CHUNK);
        // The slot is empty now, and the other kind's was never filled.
        assert!(Spare::Write.take().is_none());
        assert!(Spare::Read.take().is_none());
    }

    #[test]
    fn a_buffer_still_shared_or_not_empty_is_kept() {
        let mut buf = BytesMut::with_capacity(CHUNK);
        buf.extend_from_slice(&[1; 100]);
        assert!(!Spare::Read.give(&mut buf));
        let packet = buf.split_to(100).freeze();
        assert!(
            !Spare::Read.give(&mut buf),
            "a packet still holds its memory"
        );
        assert!(buf.capacity() > 0);
        drop(packet);
        assert!(Spare::Read.give(&mut buf));
        assert!(Spare::Read.take().is_some());
    }

    #[test]
    fn a_second_buffer_given_is_freed_and_a_large_one_is_not_kept() {
        let mut first = BytesMut::with_capacity(CHUNK);
        let first_ptr = first.as_ptr();
        let mut second = BytesMut::with_capacity(CHUNK);
        assert!(Spare::Write.give(&mut first));
        assert!(Spare::Write.give(&mut second));
        assert_eq!(Spare::Write.take().map(|b| b.as_ptr()), Some(first_ptr));
        let mut large = BytesMut::with_capacity(KEEP_AT_MOST + 1);
        assert!(Spare::Write.give(&mut large));
        assert!(Spare::Write.take().is_none());
    }
}
