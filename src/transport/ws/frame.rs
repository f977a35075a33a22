//! WebSocket frames (RFC 6455 §5): the header, the mask, the close codes.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-------+-+-------------+-------------------------------+
//! |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
//! |I|S|S|S|  (4)  |A|     (7)     |     (16 or 64, big-endian)    |
//! |N|V|V|V|       |S|             |  (if payload len is 126/127)  |
//! | |1|2|3|       |K|             |                               |
//! +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
//! |   Masking key (4 bytes, client to server only)  |  Payload... |
//! +-------------------------------------------------+-------------+
//! ```
//!
//! Written by hand rather than taken from tungstenite: tungstenite's frame
//! layer reads into buffers it owns and keeps for the connection's life
//! (about 4 MiB held by an idle session after one 1 MiB message), so the
//! transport parses from its own `BytesMut`, which it gives back when the
//! session is idle, and hands each payload on without a copy. What is left
//! to write is small: a 2 to 14-byte header and a 4-byte XOR mask.
//!
//! Every check a header allows is made here, before any of the payload is
//! read: reserved bits, reserved opcodes, masking, control frames that are
//! fragmented or longer than 125 bytes.

use std::{
    fmt,
    hash::{BuildHasher, Hasher},
};

use bytes::BytesMut;

/// The largest header: 2 bytes, a 64-bit length, a mask.
pub(super) const MAX_HEADER: usize = 14;
/// The largest control frame payload (RFC 6455 §5.5).
pub(super) const MAX_CONTROL: usize = 125;

/// Close codes this side sends (RFC 6455 §7.4.1).
pub(super) mod code {
    pub(crate) const NORMAL: u16 = 1000;
    pub(crate) const GOING_AWAY: u16 = 1001;
    pub(crate) const PROTOCOL: u16 = 1002;
    pub(crate) const UNSUPPORTED: u16 = 1003;
    pub(crate) const INVALID: u16 = 1007;
    pub(crate) const POLICY: u16 = 1008;
    pub(crate) const TOO_BIG: u16 = 1009;
    pub(crate) const ERROR: u16 = 1011;
}

/// Whether a peer may send `code` in a Close frame: the codes RFC 6455 and
/// the IANA registry define for use on the wire, and the ranges for
/// libraries (3000–3999) and applications (4000–4999). 1005, 1006 and 1015
/// only ever describe a close locally.
pub(super) fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OpCode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl OpCode {
    fn from_bits(bits: u8) -> Option<Self> {
        Some(match bits {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            _ => return None,
        })
    }

    fn bits(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
        }
    }

    pub(super) fn is_control(self) -> bool {
        matches!(self, OpCode::Close | OpCode::Ping | OpCode::Pong)
    }
}

/// A parsed frame header.
#[derive(Debug, Clone, Copy)]
pub(super) struct Header {
    pub(super) fin: bool,
    pub(super) opcode: OpCode,
    pub(super) mask: Option<[u8; 4]>,
    /// Payload bytes that follow the header.
    pub(super) len: u64,
    /// Bytes the header itself takes.
    pub(super) size: usize,
}

/// Input that breaks the protocol: the session closes with `code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Violation {
    pub(super) code: u16,
    pub(super) reason: &'static str,
}

impl Violation {
    pub(super) const fn protocol(reason: &'static str) -> Self {
        Violation {
            code: code::PROTOCOL,
            reason,
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "WebSocket protocol violation: {} (close code {})",
            self.reason, self.code
        )
    }
}

impl std::error::Error for Violation {}

/// The size of the header at the start of `buf` (mask included) and the
/// payload length it declares, once all of the header has arrived;
/// nothing else is checked (it finds where a refused frame ends).
pub(super) fn extent(buf: &[u8]) -> Option<(usize, u64)> {
    let second = *buf.get(1)?;
    let (len, size) = match second & 0x7f {
        126 => {
            let b = buf.get(2..4)?;
            (u64::from(u16::from_be_bytes([b[0], b[1]])), 4)
        }
        127 => {
            let mut be = [0u8; 8];
            be.copy_from_slice(buf.get(2..10)?);
            (u64::from_be_bytes(be), 10)
        }
        n => (u64::from(n), 2),
    };
    let size = size + if second & 0x80 != 0 { 4 } else { 0 };
    (buf.len() >= size).then_some((size, len))
}

/// Parses the header at the start of `buf`: `Ok(None)` until all of it has
/// arrived. `masked` is whether frames from this peer must be masked (a
/// client's, RFC 6455 §5.1) or must not be (a server's).
pub(super) fn parse_header(buf: &[u8], masked: bool) -> Result<Option<Header>, Violation> {
    let [first, second, ..] = *buf else {
        return Ok(None);
    };
    if first & 0x70 != 0 {
        // No extension was negotiated, so no reserved bit may be set.
        return Err(Violation::protocol("a reserved bit is set"));
    }
    let opcode = OpCode::from_bits(first & 0x0f).ok_or(Violation::protocol("a reserved opcode"))?;
    let fin = first & 0x80 != 0;
    if (second & 0x80 != 0) != masked {
        return Err(Violation::protocol(if masked {
            "an unmasked frame from a client"
        } else {
            "a masked frame from a server"
        }));
    }
    let Some((size, len)) = extent(buf) else {
        return Ok(None);
    };
    if len >> 63 != 0 {
        return Err(Violation::protocol("a 64-bit length with its top bit set"));
    }
    if opcode.is_control() {
        if !fin {
            return Err(Violation::protocol("a fragmented control frame"));
        }
        if len > MAX_CONTROL as u64 {
            return Err(Violation::protocol("a control frame longer than 125 bytes"));
        }
    }
    let mask = masked.then(|| [buf[size - 4], buf[size - 3], buf[size - 2], buf[size - 1]]);
    Ok(Some(Header {
        fin,
        opcode,
        mask,
        len,
        size,
    }))
}

/// The code of a Close frame's payload (`None` when it has none).
pub(super) fn close_payload(payload: &[u8]) -> Result<Option<u16>, Violation> {
    match payload {
        [] => Ok(None),
        [_] => Err(Violation::protocol("a Close frame with a one-byte body")),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !is_valid_close_code(code) {
                return Err(Violation::protocol("a Close frame with a reserved code"));
            }
            if std::str::from_utf8(reason).is_err() {
                return Err(Violation {
                    code: code::INVALID,
                    reason: "a Close reason that is not UTF-8",
                });
            }
            Ok(Some(code))
        }
    }
}

/// Appends a header for a frame of `len` payload bytes.
pub(super) fn put_header(
    out: &mut BytesMut,
    fin: bool,
    opcode: OpCode,
    len: usize,
    mask: Option<[u8; 4]>,
) {
    out.reserve(MAX_HEADER);
    out.extend_from_slice(&[if fin { 0x80 } else { 0 } | opcode.bits()]);
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    match len {
        0..=125 => out.extend_from_slice(&[mask_bit | len as u8]),
        126..=0xffff => {
            out.extend_from_slice(&[mask_bit | 126]);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.extend_from_slice(&[mask_bit | 127]);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    if let Some(mask) = mask {
        out.extend_from_slice(&mask);
    }
}

/// Appends a whole control frame (a payload of at most 125 bytes).
pub(super) fn put_control(
    out: &mut BytesMut,
    opcode: OpCode,
    payload: &[u8],
    mask: Option<[u8; 4]>,
) {
    debug_assert!(opcode.is_control() && payload.len() <= MAX_CONTROL);
    put_header(out, true, opcode, payload.len(), mask);
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(mask) = mask {
        apply_mask(&mut out[start..], mask, 0);
    }
}

/// XORs `buf` with `mask`, `buf` starting at byte `offset` of its payload
/// (so a payload can be masked in pieces).
pub(super) fn apply_mask(buf: &mut [u8], mask: [u8; 4], offset: usize) {
    let mut m = mask;
    m.rotate_left(offset % 4);
    // Eight bytes at a time; the compiler turns this into vector code.
    let wide = u64::from_ne_bytes([m[0], m[1], m[2], m[3], m[0], m[1], m[2], m[3]]);
    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(word) ^ wide).to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= m[i % 4];
    }
}

/// A client's masking keys: unpredictable to the page or program whose
/// data is masked (RFC 6455 §10.3), from SipHash under a random key (the
/// standard library's `RandomState`) over a counter, so no RNG crate is
/// needed.
pub(super) struct Masker {
    keys: std::collections::hash_map::RandomState,
    next: u64,
}

impl Masker {
    pub(super) fn new() -> Self {
        Masker {
            keys: std::collections::hash_map::RandomState::new(),
            next: 0,
        }
    }

    pub(super) fn mask(&mut self) -> [u8; 4] {
        let mut h = self.keys.build_hasher();
        h.write_u64(self.next);
        self.next = self.next.wrapping_add(1);
        let bits = h.finish();
        [
            bits as u8,
            (bits >> 8) as u8,
            (bits >> 16) as u8,
            (bits >> 24) as u8,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_6455_sample_frames_parse() {
        // §5.7: a single-frame unmasked text message "Hello".
        let h = parse_header(b"\x81\x05Hello", false).unwrap().unwrap();
        assert!(h.fin);
        assert_eq!((h.opcode, h.len, h.size), (OpCode::Text, 5, 2));
        // §5.7: the same, masked.
        let frame = b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58";
        let h = parse_header(frame, true).unwrap().unwrap();
        assert_eq!((h.len, h.size), (5, 6));
        let mut payload = frame[6..].to_vec();
        apply_mask(&mut payload, h.mask.unwrap(), 0);
        assert_eq!(payload, b"Hello");
        // §5.7: 256 bytes binary, 16-bit length.
        let h = parse_header(b"\x82\x7e\x01\x00", false).unwrap().unwrap();
        assert_eq!((h.opcode, h.len, h.size), (OpCode::Binary, 256, 4));
    }

    #[test]
    fn a_header_in_pieces_is_incomplete_until_whole() {
        let mut out = BytesMut::new();
        put_header(&mut out, true, OpCode::Binary, 70_000, Some([1, 2, 3, 4]));
        assert_eq!(out.len(), MAX_HEADER);
        for end in 0..out.len() {
            assert!(parse_header(&out[..end], true).unwrap().is_none(), "{end}");
        }
        let h = parse_header(&out, true).unwrap().unwrap();
        assert_eq!((h.len, h.size, h.mask), (70_000, 14, Some([1, 2, 3, 4])));
    }

    #[test]
    fn violations_are_found_in_the_header() {
        let cases: [(&[u8], bool); 6] = [
            (b"\xc2\x00", false),         // rsv1
            (b"\x83\x00", false),         // reserved data opcode
            (b"\x8b\x00", false),         // reserved control opcode
            (b"\x09\x00", false),         // fragmented ping
            (b"\x89\x7e\x00\x7e", false), // ping of 126 bytes
            (b"\x82\x00", true),          // unmasked from a client
        ];
        for (bytes, masked) in cases {
            let v = parse_header(bytes, masked).unwrap_err();
            assert_eq!(v.code, code::PROTOCOL, "{bytes:?}: {v}");
        }
    }

    #[test]
    fn masking_in_pieces_equals_masking_at_once() {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        let data: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let mut whole = data.clone();
        apply_mask(&mut whole, mask, 0);
        let mut pieces = data.clone();
        let (a, b) = pieces.split_at_mut(13);
        apply_mask(a, mask, 0);
        apply_mask(b, mask, 13);
        assert_eq!(whole, pieces);
        let bytewise: Vec<u8> = data
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i % 4])
            .collect();
        assert_eq!(whole, bytewise);
    }

    #[test]
    fn close_codes_that_may_cross_the_wire() {
        for ok in [1000, 1001, 1003, 1007, 1011, 1014, 3000, 4999] {
            assert!(is_valid_close_code(ok), "{ok}");
        }
        for bad in [0, 999, 1004, 1005, 1006, 1015, 2000, 2999, 5000] {
            assert!(!is_valid_close_code(bad), "{bad}");
        }
    }
}
