//! [`RawProto`]: erpc v6's default "raw" protocol as a tokio-util codec.
//!
//! One message is one frame; integers are big-endian:
//!
//! ```text
//! +---- size: u32, the whole frame, these 4 bytes included
//! |        +-- N: u8, the number of transfer filter ids
//! |        |  +-- filter ids, N bytes, outermost first
//! v        v  v
//! +--------+--+-----+---------------------------------------------------+
//! |  size  |N | ids |                      payload                      |
//! +--------+--+-----+---------------------------------------------------+
//!
//! payload (run through the filters when N > 0):
//! +--+-----+--+--+------+-----+--------+-----+------+--+----------------+
//! |sl| seq |mt|ml|method| stl | status | mel | meta |co|      body      |
//! +--+-----+--+--+------+-----+--------+-----+------+--+----------------+
//!  u8  sl   u8 u8   ml    u16    stl     u16   mel   u8  the rest
//!
//! sl/seq      the i32 seq as signed base-36 text ("1", "zik0zj", "-5")
//! mt          message type: 1 CALL, 2 REPLY, 3 PUSH, 4 AUTH_CALL, 5 AUTH_REPLY
//! ml/method   service method, raw UTF-8, at most 255 bytes
//! stl/status  `code=..&msg=..&cause=..`, urlencoded
//! mel/meta    `k=v&k2=v2`, urlencoded
//! co          body codec id (`j` json, `p` protobuf, `s` plain, `f` form, 0 none)
//! ```
//!
//! There is no version byte or magic: the first bytes on a connection are
//! the first frame's size.
//!
//! Unlike erpc, the codec checks the declared size against its limit
//! before buffering anything, bounds every field by the frame, bounds the
//! output of every filter by the limit, and refuses to encode a status or
//! metadata whose length does not fit its `u16` (erpc writes those
//! corrupt).
//!
//! ```
//! use bytes::BytesMut;
//! use getty::rpc::{codec::CodecId, xfer::XferFilters, MessageType, RawProto};
//! use tokio_util::codec::Decoder;
//!
//! // A CALL as erpc's own `sess.Call` writes it.
//! let mut src = BytesMut::from(
//!     &b"\x00\x00\x00\x2c\x00\x01\x31\x01\x0e/home/echo?x=1\x00\x06code=0\x00\x03a=bj{\"a\":1}"[..],
//! );
//! let mut proto = RawProto::new(XferFilters::new(), 1 << 20);
//! let msg = proto.decode(&mut src)?.expect("a whole frame");
//! assert_eq!((msg.seq, msg.mtype), (1, MessageType::Call));
//! assert_eq!(msg.service_method, "/home/echo?x=1");
//! assert!(msg.status.is_ok());
//! assert_eq!(msg.meta.get("a"), Some("b"));
//! assert_eq!(msg.body_codec, CodecId::JSON);
//! assert_eq!(&msg.body[..], br#"{"a":1}"#);
//! assert!(src.is_empty());
//! # Ok::<(), std::io::Error>(())
//! ```

use std::{io, ops::Range};

use bytes::{Buf, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use super::{
    codec::CodecId, xfer::XferFilters, Message, MessageType, Meta, ServiceMethod, Status, XferPipe,
};
use crate::codec::PacketTooLarge;

mod error;
#[cfg(test)]
mod hostile;
#[cfg(test)]
mod tests;

pub use self::error::ProtoError;

/// The size field and the filter count.
const HEAD: usize = 5;

/// The most a decoder reserves ahead of bytes that have not arrived: a
/// peer declaring a large frame gets the buffer grown as it sends, not
/// all at once on its word.
const RESERVE_AHEAD: usize = 64 * 1024;

/// erpc v6's raw protocol: [`Message`]s to frames and back, through the
/// transfer filters a message names.
///
/// `max_len` bounds a whole frame, both ways: a larger declared size is a
/// [`PacketTooLarge`] error as soon as the 4 size bytes are in, and so is
/// a message that would encode larger (erpc's `SetReadLimit`, whose
/// default is 1 GiB). It also bounds what a filter may produce while
/// unpacking, so a small gzip frame cannot inflate past it.
///
/// ```
/// use bytes::BytesMut;
/// use getty::rpc::{codec::CodecId, xfer::{Gzip, XferFilters}, Message, MessageType, RawProto, XferPipe};
/// use tokio_util::codec::{Decoder, Encoder};
///
/// let mut filters = XferFilters::new();
/// filters.register(Gzip::default());
/// let mut proto = RawProto::new(filters, 1 << 20);
///
/// let msg = Message::new(MessageType::Push, 1, "/push/hello")
///     .with_body(CodecId::JSON, r#"{"hello":"world"}"#)
///     .with_xfer_pipe([b'g'].into_iter().collect::<XferPipe>());
/// let mut buf = BytesMut::new();
/// proto.encode(msg.clone(), &mut buf)?;
/// assert_eq!(&buf[4..6], b"\x01g");
/// assert_eq!(proto.decode(&mut buf)?, Some(msg));
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct RawProto {
    filters: XferFilters,
    max_len: usize,
}

impl RawProto {
    /// erpc v6's default limit, 1 GiB.
    pub const DEFAULT_MAX_LEN: usize = 1 << 30;

    /// The protocol with these filters and a frame limit of `max_len`
    /// bytes (at most `u32::MAX` counts: the size field is a `u32`).
    ///
    /// ```
    /// use getty::rpc::{xfer::XferFilters, RawProto};
    /// let proto = RawProto::new(XferFilters::new(), 4 << 20);
    /// assert_eq!(proto.max_len(), 4 << 20);
    /// assert_eq!(RawProto::default().max_len(), RawProto::DEFAULT_MAX_LEN);
    /// ```
    pub fn new(filters: XferFilters, max_len: usize) -> RawProto {
        RawProto {
            filters,
            max_len: max_len.min(u32::MAX as usize),
        }
    }

    /// The frame limit.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// The transfer filters.
    pub fn filters(&self) -> &XferFilters {
        &self.filters
    }

    /// Parses a whole frame.
    fn parse(&self, mut frame: Bytes) -> Result<Message, ProtoError> {
        let n = usize::from(frame[4]);
        let pipe: XferPipe = frame[HEAD..HEAD + n].iter().copied().collect();
        // Where the payload starts in `payload`: after the head in the
        // frame itself, which is advanced once, past everything before the
        // body, at the end (each `advance` here is a call, and the
        // `Message` built after it reads the moved pointer back through
        // memory).
        let (mut payload, start) = if n > 0 {
            if let Some(&id) = pipe.ids().iter().find(|id| !self.filters.contains(**id)) {
                return Err(ProtoError::UnknownXferFilter(id));
            }
            frame.advance(HEAD + n);
            let unpacked = self
                .filters
                .unpack(&pipe, frame, self.max_len)
                .map_err(ProtoError::XferFilter)?;
            (unpacked, 0)
        } else {
            (frame, HEAD)
        };
        let mut r = Fields {
            payload: &payload[start..],
            at: 0,
        };
        let seq = parse_seq(r.take("seq_len")?)?;
        let mtype = r.u8("mtype")?;
        let mtype =
            MessageType::from_u8(mtype).ok_or_else(|| ProtoError::UnknownMessageType(mtype))?;
        let method = r.take_range("sm_len")?;
        // Most messages' own, an OK status and no metadata, known by one
        // comparison of the bytes that say so.
        let (status, meta) = if r.rest().starts_with(OK_NO_META) {
            r.at += OK_NO_META.len();
            (Status::OK, Meta::new())
        } else {
            let status = Status::parse(r.take_long("status_len")?);
            (status, Meta::parse(r.take_long("meta_len")?))
        };
        let body_codec = CodecId(r.u8("body_codec")?);
        let body_at = start + r.at;
        // Copied in place when short, else a slice of the frame (nothing
        // at all when empty, as in replies).
        let service_method =
            ServiceMethod::from_frame(&payload, start + method.start..start + method.end)
                .map_err(|_| ProtoError::ServiceMethodNotUtf8)?;
        payload.advance(body_at);
        Ok(Message {
            seq,
            mtype,
            service_method,
            status,
            meta,
            body_codec,
            // What is left: the frame itself, not a copy.
            body: payload,
            xfer_pipe: pipe,
        })
    }

    /// Writes `msg`'s frame at the end of `dst`; on error `dst` is left as
    /// it was.
    fn encode_message(&self, msg: &Message, dst: &mut BytesMut) -> io::Result<()> {
        let start = dst.len();
        let result = self.put_frame(msg, dst);
        if result.is_err() {
            dst.truncate(start);
        }
        result
    }

    fn put_frame(&self, msg: &Message, dst: &mut BytesMut) -> io::Result<()> {
        let start = dst.len();
        let ids = msg.xfer_pipe.ids();
        let n = u8::try_from(ids.len())
            .map_err(|_| ProtoError::TooManyXferFilters(ids.len()).invalid_input())?;
        if let Some(&id) = ids.iter().find(|id| !self.filters.contains(**id)) {
            return Err(ProtoError::UnknownXferFilter(id).invalid_input());
        }
        // The size is patched below, once known.
        if ids.is_empty() {
            // The hot path: the payload goes straight into `dst`, after the
            // size and filter count written with its first fields.
            put_payload(msg, dst, [0, 0, 0, 0, n]).map_err(ProtoError::invalid_input)?;
        } else {
            dst.extend_from_slice(&[0, 0, 0, 0, n]);
            dst.extend_from_slice(ids);
            let mut payload = BytesMut::new();
            put_payload(msg, &mut payload, []).map_err(ProtoError::invalid_input)?;
            let packed = self
                .filters
                .pack(&msg.xfer_pipe, payload.freeze())
                .map_err(|e| ProtoError::XferFilter(e).invalid_input())?;
            if HEAD + ids.len() + packed.len() > self.max_len {
                return Err(too_large(HEAD + ids.len() + packed.len(), self.max_len));
            }
            dst.extend_from_slice(&packed);
        }
        let size = dst.len() - start;
        if size > self.max_len {
            return Err(too_large(size, self.max_len));
        }
        // max_len is at most u32::MAX (see `new`), so the size fits.
        let size = u32::try_from(size).map_err(|_| too_large(size, self.max_len))?;
        dst[start..start + 4].copy_from_slice(&size.to_be_bytes());
        Ok(())
    }
}

/// Checks, before `msg` is queued, that [`RawProto`] with these filters
/// and limit will encode it. The encoder's refusal ends the whole session
/// (every call waiting on it fails), where erpc refuses only the one
/// message and its caller gets 104 Write Failed. Exact for a message
/// without filters; with filters the frame's size is known only once
/// packed, so only its fields are checked here.
pub(crate) fn check_writable(
    msg: &Message,
    filters: &XferFilters,
    max_len: usize,
) -> Result<(), String> {
    let ids = msg.xfer_pipe.ids();
    let method = msg.service_method.len();
    let ok_no_meta = msg.status == Status::OK && msg.meta.is_empty();
    if ids.is_empty() && ok_no_meta && method <= usize::from(u8::MAX) {
        // The common case, bounded with the longest seq (7 bytes) rather
        // than measured: a frame that fits so fits exactly.
        let most = HEAD + 1 + 7 + 2 + method + OK_NO_META.len() + 1 + msg.body.len();
        if most <= max_len {
            return Ok(());
        }
    }
    if ids.len() > usize::from(u8::MAX) {
        return Err(ProtoError::TooManyXferFilters(ids.len()).to_string());
    }
    if let Some(&id) = ids.iter().find(|id| !filters.contains(**id)) {
        return Err(ProtoError::UnknownXferFilter(id).to_string());
    }
    if method > usize::from(u8::MAX) {
        return Err(ProtoError::ServiceMethodTooLong(method).to_string());
    }
    // An OK status and no metadata without encoding them.
    let (status, meta) = if ok_no_meta {
        (b"code=0".len(), 0)
    } else {
        let mut scratch = BytesMut::new();
        msg.status.encode(&mut scratch);
        let status = scratch.len();
        scratch.clear();
        msg.meta.encode(&mut scratch);
        (status, scratch.len())
    };
    if status > usize::from(u16::MAX) {
        return Err(ProtoError::StatusTooLong(status).to_string());
    }
    if meta > usize::from(u16::MAX) {
        return Err(ProtoError::MetaTooLong(meta).to_string());
    }
    if ids.is_empty() {
        let size = HEAD
            + 1
            + seq_text_len(msg.seq)
            + 1
            + 1
            + method
            + 2
            + status
            + 2
            + meta
            + 1
            + msg.body.len();
        if size > max_len {
            return Err(PacketTooLarge::new(size as u64, max_len).to_string());
        }
    }
    Ok(())
}

/// The length of the seq's base-36 text, sign included.
fn seq_text_len(seq: i32) -> usize {
    let mut n = seq.unsigned_abs();
    let mut len = usize::from(seq < 0) + 1;
    while n >= 36 {
        n /= 36;
        len += 1;
    }
    len
}

impl Default for RawProto {
    /// No filters and erpc's default limit of 1 GiB.
    fn default() -> RawProto {
        RawProto::new(XferFilters::new(), RawProto::DEFAULT_MAX_LEN)
    }
}

fn too_large(size: usize, max: usize) -> io::Error {
    let e = PacketTooLarge::new(size as u64, max);
    io::Error::new(io::ErrorKind::InvalidInput, e)
}

impl Decoder for RawProto {
    type Item = Message;
    type Error = io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> io::Result<Option<Message>> {
        let Some(head) = src.get(..4) else {
            return Ok(None);
        };
        let size = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        // Checked on the declared size, before a byte of the frame is
        // awaited or a byte of room reserved for it.
        if size > self.max_len {
            return Err(PacketTooLarge::new(size as u64, self.max_len).into());
        }
        if size < HEAD {
            return Err(ProtoError::BadSize { size, min: HEAD }.invalid_data());
        }
        let Some(&n) = src.get(4) else {
            return Ok(None);
        };
        let min = HEAD + usize::from(n);
        if size < min {
            return Err(ProtoError::BadSize { size, min }.invalid_data());
        }
        if src.len() < size {
            src.reserve((size - src.len()).min(RESERVE_AHEAD));
            return Ok(None);
        }
        let frame = src.split_to(size).freeze();
        self.parse(frame)
            .map(Some)
            .map_err(ProtoError::invalid_data)
    }
}

impl Encoder<Message> for RawProto {
    type Error = io::Error;

    fn encode(&mut self, msg: Message, dst: &mut BytesMut) -> io::Result<()> {
        self.encode_message(&msg, dst)
    }
}

/// The fields of a payload, read front to back by position: borrowed,
/// so reading a field touches no reference count.
struct Fields<'a> {
    payload: &'a [u8],
    at: usize,
}

impl Fields<'_> {
    /// What is left to read.
    fn rest(&self) -> &[u8] {
        &self.payload[self.at..]
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, ProtoError> {
        let b = *self
            .payload
            .get(self.at)
            .ok_or_else(|| ProtoError::Truncated { field })?;
        self.at += 1;
        Ok(b)
    }

    /// A field after its `u8` length.
    fn take(&mut self, len_field: &'static str) -> Result<&[u8], ProtoError> {
        let range = self.take_range(len_field)?;
        Ok(&self.payload[range])
    }

    /// Where a field after its `u8` length lies.
    fn take_range(&mut self, len_field: &'static str) -> Result<Range<usize>, ProtoError> {
        let len = usize::from(self.u8(len_field)?);
        self.range(len_field, len)
    }

    /// A field after its `u16` length.
    fn take_long(&mut self, len_field: &'static str) -> Result<&[u8], ProtoError> {
        let Some(&[hi, lo]) = self.payload.get(self.at..self.at + 2) else {
            return Err(ProtoError::Truncated { field: len_field });
        };
        self.at += 2;
        let len = usize::from(u16::from_be_bytes([hi, lo]));
        let range = self.range(len_field, len)?;
        Ok(&self.payload[range])
    }

    fn range(&mut self, len_field: &'static str, len: usize) -> Result<Range<usize>, ProtoError> {
        if len > self.payload.len() - self.at {
            return Err(ProtoError::Overrun {
                field: len_field,
                len,
            });
        }
        let range = self.at..self.at + len;
        self.at += len;
        Ok(range)
    }
}

/// The seq's text: base-36 as Go's `strconv.ParseInt(s, 36, 32)` reads it
/// (either case, an optional sign). By hand rather than `from_utf8` and
/// `i32::from_str_radix`: a call's seq is read per message, and the two
/// cost more than the rest of its header.
fn parse_seq(text: &[u8]) -> Result<i32, ProtoError> {
    let bad = || ProtoError::BadSeq {
        text: String::from_utf8_lossy(text).into_owned(),
    };
    let (negative, digits) = match text {
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        _ => (false, text),
    };
    if digits.is_empty() {
        return Err(bad());
    }
    let mut n: i64 = 0;
    for &b in digits {
        let digit = char::from(b).to_digit(36).ok_or_else(bad)?;
        n = n * 36 + i64::from(digit);
        // Past any i32 (leading zeros are allowed, so not by length).
        if n > 1 << 31 {
            return Err(bad());
        }
    }
    i32::try_from(if negative { -n } else { n }).map_err(|_| bad())
}

/// Writes the seq's length and text at the start of `buf` (at least 8
/// bytes): lowercase signed base-36, as Go's `strconv.FormatInt(seq, 36)`
/// writes it. Returns how many bytes it wrote.
fn seq_text(buf: &mut [u8], seq: i32) -> usize {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    // Written in place, last digit first, once the length is known (a copy
    // from a scratch buffer would be a `memcpy` call of a varying length).
    let len = seq_text_len(seq);
    buf[0] = len as u8;
    let mut n = seq.unsigned_abs();
    for at in (1 + usize::from(seq < 0)..=len).rev() {
        buf[at] = DIGITS[(n % 36) as usize];
        n /= 36;
    }
    if seq < 0 {
        buf[1] = b'-';
    }
    len + 1
}

/// Appends the payload: everything from the seq to the body.
///
/// The fields before the body go out in as few writes as their order
/// allows (each write to a `BytesMut` checks its room and copies through
/// `memcpy`, and one per field cost as much as the body's copy): with an
/// OK status and empty metadata, most messages' own, everything up to the
/// body is one write from a stack buffer; otherwise the seq, type and
/// method are, and the status and metadata follow.
fn put_payload<const LEAD: usize>(
    msg: &Message,
    dst: &mut BytesMut,
    lead: [u8; LEAD],
) -> Result<(), ProtoError> {
    let method = msg.service_method.as_bytes();
    let method_len =
        u8::try_from(method.len()).map_err(|_| ProtoError::ServiceMethodTooLong(method.len()))?;
    // A little more than the common case needs, so the writes below stay
    // within one reservation (the head goes in whole, see below).
    dst.reserve(HEAD_MAX + method.len() + msg.body.len());
    let mut head = [0u8; HEAD_MAX];
    head[..LEAD].copy_from_slice(&lead);
    let mut at = LEAD + seq_text(&mut head[LEAD..], msg.seq);
    head[at] = msg.mtype as u8;
    head[at + 1] = method_len;
    at += 2;
    let ok_no_meta = msg.status == Status::OK && msg.meta.is_empty();
    if ok_no_meta && method.len() <= METHOD_IN_HEAD {
        // Copies of fixed sizes, inlined, rather than of the fields' own
        // lengths (each a `memcpy` call): a short method's whole buffer
        // (what follows it is overwritten next), then the whole head,
        // cut back to its length.
        match msg.service_method.inline_key() {
            Some(key) => head[at..at + key.buffer().len()].copy_from_slice(key.buffer()),
            None if method.is_empty() => {}
            None => head[at..at + method.len()].copy_from_slice(method),
        }
        at += method.len();
        head[at..at + OK_NO_META.len()].copy_from_slice(OK_NO_META);
        at += OK_NO_META.len();
        head[at] = msg.body_codec.as_u8();
        let end = dst.len() + at + 1;
        dst.extend_from_slice(&head);
        dst.truncate(end);
    } else {
        dst.extend_from_slice(&head[..at]);
        dst.extend_from_slice(method);
        if ok_no_meta {
            dst.extend_from_slice(OK_NO_META);
        } else {
            put_long(dst, |dst| msg.status.encode(dst), ProtoError::StatusTooLong)?;
            put_long(dst, |dst| msg.meta.encode(dst), ProtoError::MetaTooLong)?;
        }
        dst.extend_from_slice(&[msg.body_codec.as_u8()]);
    }
    dst.extend_from_slice(&msg.body);
    Ok(())
}

/// The most bytes written before the payload from the same stack buffer:
/// the frame's size and its filter count (a frame without filters).
const LEAD_MAX: usize = HEAD;

/// The seq's length byte and text, the type and the method's length: at
/// most 1 + 7 + 1 + 1 bytes.
const SEQ_HEAD: usize = 10;

/// The stack buffer of everything before the body: the lead, the seq's
/// head, a method of at most [`METHOD_IN_HEAD`] bytes, an OK status and no
/// metadata, and the codec: 64 bytes, kept small because it is zeroed per
/// message.
const HEAD_MAX: usize = LEAD_MAX + SEQ_HEAD + METHOD_IN_HEAD + OK_NO_META.len() + 1;

/// The longest method written with the rest of the head in one go; a
/// longer one (rare: most are a few path segments) is a write of its own.
const METHOD_IN_HEAD: usize = 38;

/// An OK status (`code=0`, as erpc writes it) and no metadata, with their
/// `u16` lengths.
const OK_NO_META: &[u8] = b"\x00\x06code=0\x00\x00";

/// Appends a field written by `put` after its `u16` length, which is only
/// known once it is written.
fn put_long(
    dst: &mut BytesMut,
    put: impl FnOnce(&mut BytesMut),
    too_long: fn(usize) -> ProtoError,
) -> Result<(), ProtoError> {
    let at = dst.len();
    dst.extend_from_slice(&[0, 0]);
    put(dst);
    let len = dst.len() - at - 2;
    let len16 = u16::try_from(len).map_err(|_| too_long(len))?;
    dst[at..at + 2].copy_from_slice(&len16.to_be_bytes());
    Ok(())
}
