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
//! A buffer is given back when it is empty. If no one else holds part of
//! it (a read buffer whose packets were all dropped, a write buffer all
//! written), it goes back whole, from the start of its memory. If packets
//! split off it are still held (replies on their way to their callers'
//! tasks), only its unused tail is lent, when at least `MIN_TAIL` is left:
//! the next session reads into the memory after those packets, which stay
//! untouched, as one session reading into its own buffer would. Without
//! that, a client whose sessions each read a reply before the caller takes
//! it (one call in flight per session, many sessions per thread) allocated
//! and freed a 64 KiB buffer per reply. A session whose socket is full, or
//! whose buffer holds part of a packet, keeps its buffer; the next session
//! then gets one of its own, and the first of them to finish gives its
//! buffer back (the others' are freed).
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

/// The least unused room a buffer still shared with packets must have to be
/// lent on. A stream read wants 8 KiB of room (else it reserves a fresh
/// buffer), so a smaller tail would serve a read or two before its taker
/// allocates anyway; the session keeps it instead.
const MIN_TAIL: usize = 16 * 1024;

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

    /// Gives back `buf` if it is empty: whole if no one else holds part of
    /// its memory, else its unused tail if that is at least `MIN_TAIL`. It
    /// becomes the thread's spare, or is freed when the thread has one
    /// already. True when it was taken (`buf` is then empty with no
    /// capacity); false leaves it as it was.
    pub(crate) fn give(self, buf: &mut BytesMut) -> bool {
        if !buf.is_empty() {
            return false;
        }
        // Bytes read or written are skipped, not removed: the next user
        // must start at the chunk's start, not walk on through memory long
        // out of cache. Allocates nothing; fails while the memory is
        // shared, and then only a roomy tail is worth lending.
        if !buf.try_reclaim(CHUNK) && buf.capacity() < MIN_TAIL {
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
    fn a_buffer_not_empty_or_shared_with_little_room_is_kept() {
        let mut buf = BytesMut::with_capacity(CHUNK);
        buf.extend_from_slice(&[1; 100]);
        assert!(!Spare::Read.give(&mut buf), "it holds unread bytes");
        buf.extend_from_slice(&vec![2; CHUNK - MIN_TAIL + 1 - 100]);
        let packet = buf.split().freeze();
        assert!(buf.capacity() < MIN_TAIL);
        assert!(
            !Spare::Read.give(&mut buf),
            "a packet still holds its memory and the tail is too small to lend"
        );
        assert!(buf.capacity() > 0);
        drop(packet);
        assert!(Spare::Read.give(&mut buf));
        let again = Spare::Read.take().expect("the buffer given");
        assert!(again.capacity() >= CHUNK, "taken back whole");
    }

    #[test]
    fn the_tail_of_a_buffer_still_shared_is_lent_and_its_packets_kept() {
        let mut buf = BytesMut::with_capacity(CHUNK);
        buf.extend_from_slice(&[3; 600]);
        let packet = buf.split().freeze();
        let tail_start = buf.as_ptr() as usize;
        assert!(Spare::Read.give(&mut buf), "the tail is lent");
        assert_eq!(buf.capacity(), 0);
        let mut lent = Spare::Read.take().expect("the tail given");
        assert_eq!(lent.as_ptr() as usize, tail_start, "after the packet");
        lent.extend_from_slice(&[4; 600]);
        assert_eq!(packet[..], [3; 600][..], "the packet is untouched");
        assert_eq!(lent[..], [4; 600][..]);
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
