//! Packet summaries: a `Debug` rendering cut at a byte budget.

use std::fmt::{self, Write};

/// What marks a summary that was cut.
pub(super) const ELLIPSIS: &str = "...";

/// The packet's `Debug` rendering, at most `max_bytes` bytes of it (cut on
/// a character boundary) followed by `...` when it was longer. Formatting
/// stops at the budget, so a large packet costs no more than a small one.
pub(super) fn summarize<P: fmt::Debug + ?Sized>(packet: &P, max_bytes: usize) -> String {
    let mut out = Bounded {
        buf: String::with_capacity(max_bytes.min(256) + ELLIPSIS.len()),
        max: max_bytes,
        cut: false,
    };
    // An error here is our own "budget spent" signal (or a broken Debug
    // impl): either way what was written so far is the summary.
    let _ = write!(out, "{packet:?}");
    let mut buf = out.buf;
    if out.cut {
        buf.push_str(ELLIPSIS);
    }
    buf
}

struct Bounded {
    buf: String,
    max: usize,
    cut: bool,
}

impl Write for Bounded {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = self.max - self.buf.len();
        if s.len() <= room {
            self.buf.push_str(s);
            return Ok(());
        }
        let mut end = room;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        self.buf.push_str(&s[..end]);
        self.cut = true;
        Err(fmt::Error)
    }
}

#[cfg(test)]
mod tests {
    use super::summarize;

    #[test]
    fn short_packets_are_whole() {
        assert_eq!(summarize(&bytes::Bytes::from_static(b"hi"), 16), "b\"hi\"");
        assert_eq!(summarize("exact", 7), "\"exact\"");
    }

    #[test]
    fn long_packets_are_cut_at_the_budget() {
        let s = summarize(&vec![7u8; 1000], 10);
        assert_eq!(s, "[7, 7, 7, ...");
        assert_eq!(summarize(&(), 0), "...");
    }

    #[test]
    fn cuts_fall_on_character_boundaries() {
        // "é" is two bytes; a budget of 2 fits the quote, not half the é.
        assert_eq!(summarize("é", 2), "\"...");
        assert_eq!(summarize("é", 3), "\"é...");
    }
}
