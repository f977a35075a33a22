//! [`Message`]: one frame of erpc's raw protocol, decoded.

use std::fmt;

use bytes::Bytes;

use super::{codec::CodecId, Meta, ServiceMethod, Status, XferPipe};

/// What a message is: erpc's `mtype` byte.
///
/// ```
/// use getty::rpc::MessageType;
/// assert_eq!(MessageType::from_u8(2), Some(MessageType::Reply));
/// assert_eq!(MessageType::from_u8(9), None);
/// assert_eq!(MessageType::Push as u8, 3);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MessageType {
    /// A call: the receiver answers with a `Reply` of the same seq.
    Call = 1,
    /// The answer to a call, matched by seq.
    Reply = 2,
    /// A one-way message, never answered.
    Push = 3,
    /// The first message of an authenticating client (erpc's auth plugin).
    AuthCall = 4,
    /// The server's answer to `AuthCall`.
    AuthReply = 5,
}

impl MessageType {
    /// The type of a wire byte, `None` for an unknown one.
    pub fn from_u8(b: u8) -> Option<MessageType> {
        Some(match b {
            1 => MessageType::Call,
            2 => MessageType::Reply,
            3 => MessageType::Push,
            4 => MessageType::AuthCall,
            5 => MessageType::AuthReply,
            _ => return None,
        })
    }

    /// erpc's name for it, for logs: `"CALL"`, `"REPLY"`, `"PUSH"`,
    /// `"AUTH_CALL"`, `"AUTH_REPLY"`.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageType::Call => "CALL",
            MessageType::Reply => "REPLY",
            MessageType::Push => "PUSH",
            MessageType::AuthCall => "AUTH_CALL",
            MessageType::AuthReply => "AUTH_REPLY",
        }
    }
}

impl fmt::Display for MessageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One erpc message: what [`RawProto`](super::RawProto) decodes a frame
/// into and encodes back.
///
/// The fields are public, as in a plain data type; the body is kept
/// encoded (its codec is [`body_codec`](Message::body_codec)), and the
/// transfer filters named by [`xfer_pipe`](Message::xfer_pipe) are already
/// undone on a decoded message and applied when it is encoded.
///
/// ```
/// use getty::rpc::{codec::CodecId, Message, MessageType};
///
/// let msg = Message::new(MessageType::Call, 1, "/home/echo")
///     .with_body(CodecId::JSON, r#"{"a":1}"#);
/// assert_eq!(msg.mtype, MessageType::Call);
/// assert!(msg.status.is_ok());
/// assert_eq!(&msg.body[..], br#"{"a":1}"#);
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    /// The sequence number: a reply carries its call's.
    pub seq: i32,
    /// What the message is.
    pub mtype: MessageType,
    /// The route, such as `/home/echo`; empty in replies.
    pub service_method: ServiceMethod,
    /// How the call went (OK on everything but failed replies).
    pub status: Status,
    /// The metadata.
    pub meta: Meta,
    /// The codec of the body ([`CodecId::NONE`] for none).
    pub body_codec: CodecId,
    /// The encoded body.
    pub body: Bytes,
    /// The transfer filters the frame goes through, outermost first.
    pub xfer_pipe: XferPipe,
}

impl Message {
    /// A message with an OK status, no metadata, no body and no filters.
    pub fn new(mtype: MessageType, seq: i32, service_method: impl Into<ServiceMethod>) -> Message {
        Message {
            seq,
            mtype,
            service_method: service_method.into(),
            status: Status::OK,
            meta: Meta::new(),
            body_codec: CodecId::NONE,
            body: Bytes::new(),
            xfer_pipe: XferPipe::new(),
        }
    }

    /// The same message with a body in `codec`.
    pub fn with_body(mut self, codec: CodecId, body: impl Into<Bytes>) -> Message {
        self.body_codec = codec;
        self.body = body.into();
        self
    }

    /// The same message with a status.
    pub fn with_status(mut self, status: Status) -> Message {
        self.status = status;
        self
    }

    /// The same message with metadata.
    pub fn with_meta(mut self, meta: Meta) -> Message {
        self.meta = meta;
        self
    }

    /// The same message with transfer filters.
    pub fn with_xfer_pipe(mut self, pipe: XferPipe) -> Message {
        self.xfer_pipe = pipe;
        self
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("seq", &self.seq)
            .field("mtype", &self.mtype)
            .field("service_method", &self.service_method)
            .field("status", &self.status)
            .field("meta", &self.meta)
            .field("body_codec", &self.body_codec)
            .field("body_len", &self.body.len())
            .field("xfer_pipe", &self.xfer_pipe)
            .finish()
    }
}
