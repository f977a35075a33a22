//! Body codecs: how a message's body is encoded, erpc's `codec` package.
//!
//! A body travels encoded, with its codec's one-byte id in the frame.
//! Built in, with erpc's ids: json `j` (serde_json), plain `s` (the bytes
//! as they are; strings, numbers and booleans as text), protobuf `p`
//! (prost) and form `f` (`application/x-www-form-urlencoded`). Register
//! your own in [`Codecs`].
//!
//! Which Rust types a body decodes into, and from which codecs:
//!
//! | type                     | codecs                                        |
//! |--------------------------|-----------------------------------------------|
//! | any serde type `T`       | json, form, plain (text and numbers), yours   |
//! | [`Raw`]                  | any: the body as it is (Go's `[]byte`)        |
//! | [`Proto<T>`] (prost)     | protobuf                                      |
//!
//! A body that does not decode is a [`Status`] 400 (Bad Message) naming the
//! error; one that cannot be encoded is a 500.
//!
//! ```
//! use getty::rpc::codec::{CodecId, Codecs, FromBody, IntoBody};
//!
//! let codecs = Codecs::new();
//! let (id, body) = vec![1, 2, 3].into_body(CodecId::JSON, &codecs).unwrap();
//! assert_eq!((id, &body[..]), (CodecId::JSON, &b"[1,2,3]"[..]));
//! let back: Vec<u8> = FromBody::from_body(id, body, &codecs).unwrap();
//! assert_eq!(back, [1, 2, 3]);
//! ```

use std::{fmt, sync::Arc};

use bytes::Bytes;

use super::Status;
use crate::BoxError;

mod body;
#[cfg(test)]
mod tests;

/// A body codec's one-byte id, as it travels in a frame.
///
/// ```
/// use getty::rpc::codec::CodecId;
/// assert_eq!(CodecId::JSON.as_u8(), b'j');
/// assert_eq!(CodecId::from(b's'), CodecId::PLAIN);
/// assert_eq!(CodecId::PROTOBUF.to_string(), "p");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CodecId(pub u8);

impl CodecId {
    /// No body (error replies).
    pub const NONE: CodecId = CodecId(0);
    /// JSON, `j`: erpc's default for calls and pushes.
    pub const JSON: CodecId = CodecId(b'j');
    /// Protobuf, `p`.
    pub const PROTOBUF: CodecId = CodecId(b'p');
    /// Plain, `s`: the bytes as they are.
    pub const PLAIN: CodecId = CodecId(b's');
    /// Form, `f`: `application/x-www-form-urlencoded`.
    pub const FORM: CodecId = CodecId(b'f');

    /// The byte.
    pub fn as_u8(self) -> u8 {
        self.0
    }
}

impl From<u8> for CodecId {
    fn from(b: u8) -> CodecId {
        CodecId(b)
    }
}

impl fmt::Debug for CodecId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CodecId({self})")
    }
}

impl fmt::Display for CodecId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_ascii_graphic() {
            write!(f, "{}", self.0 as char)
        } else {
            write!(f, "{}", self.0)
        }
    }
}

/// A body codec of your own, registered in [`Codecs`] under its id (erpc's
/// `codec.Codec`). It works on `serde_json::Value`, the meeting point of
/// every serde type: a value is turned into one before `encode` and built
/// from the one `decode` returns.
///
/// ```
/// use getty::rpc::codec::{Codec, CodecId, Codecs, FromBody, IntoBody};
/// use getty::BoxError;
///
/// /// JSON with a trailing newline, under id `n`.
/// struct NdJson;
///
/// impl Codec for NdJson {
///     fn id(&self) -> CodecId { CodecId(b'n') }
///     fn name(&self) -> &'static str { "ndjson" }
///     fn encode(&self, value: &serde_json::Value) -> Result<Vec<u8>, BoxError> {
///         let mut out = serde_json::to_vec(value)?;
///         out.push(b'\n');
///         Ok(out)
///     }
///     fn decode(&self, body: &[u8]) -> Result<serde_json::Value, BoxError> {
///         Ok(serde_json::from_slice(body)?)
///     }
/// }
///
/// let mut codecs = Codecs::new();
/// codecs.register(NdJson);
/// let (id, body) = "hi".to_string().into_body(CodecId(b'n'), &codecs).unwrap();
/// assert_eq!(&body[..], b"\"hi\"\n");
/// let back: String = FromBody::from_body(id, body, &codecs).unwrap();
/// assert_eq!(back, "hi");
/// ```
pub trait Codec: Send + Sync + 'static {
    /// The id it travels under.
    fn id(&self) -> CodecId;
    /// Its name, for logs.
    fn name(&self) -> &'static str;
    /// Encodes a value.
    fn encode(&self, value: &serde_json::Value) -> Result<Vec<u8>, BoxError>;
    /// Decodes a body (never empty: an empty body is not handed to a codec).
    fn decode(&self, body: &[u8]) -> Result<serde_json::Value, BoxError>;
}

/// A body that decodes into `Self`: the argument of a handler, the reply of
/// a call. See the [module docs](self) for which types take which codecs.
pub trait FromBody: Sized {
    /// Decodes `body`, which is in `codec`; a failure is a 400 status.
    fn from_body(codec: CodecId, body: Bytes, codecs: &Codecs) -> Result<Self, Status>;
}

/// A value that encodes into a body: a call's argument, a handler's reply.
pub trait IntoBody {
    /// The codec to use when the caller names none (`None`: the peer's
    /// default, json unless configured).
    fn preferred_codec(&self) -> Option<CodecId> {
        None
    }

    /// Encodes the value in `codec` (or in the codec it must use, such as
    /// protobuf for [`Proto`]), returning the codec used and the body; a
    /// failure is a 500 status.
    fn into_body(self, codec: CodecId, codecs: &Codecs) -> Result<(CodecId, Bytes), Status>;
}

/// A body as it is, whatever its codec: Go's `[]byte` argument. An echo
/// handler taking and returning `Raw` answers with the call's own bytes in
/// the call's codec.
///
/// ```
/// use getty::rpc::codec::{CodecId, Codecs, FromBody, IntoBody, Raw};
///
/// let codecs = Codecs::new();
/// let raw = Raw::from_body(CodecId::PROTOBUF, bytes::Bytes::from_static(b"\x08\x01"), &codecs).unwrap();
/// assert_eq!(raw.into_body(CodecId::PROTOBUF, &codecs).unwrap().1, &b"\x08\x01"[..]);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Raw(pub Bytes);

/// A prost message as a body: protobuf, codec `p`, whatever codec the
/// caller asked for.
///
/// ```
/// use getty::rpc::codec::{CodecId, Codecs, FromBody, IntoBody, Proto};
///
/// #[derive(Clone, PartialEq, prost::Message)]
/// struct Pair {
///     #[prost(int32, tag = "1")]
///     a: i32,
///     #[prost(int32, tag = "2")]
///     b: i32,
/// }
///
/// let codecs = Codecs::new();
/// let (id, body) = Proto(Pair { a: 1, b: 2 }).into_body(CodecId::JSON, &codecs).unwrap();
/// assert_eq!((id, &body[..]), (CodecId::PROTOBUF, &[0x08, 0x01, 0x10, 0x02][..]));
/// let Proto(back) = Proto::<Pair>::from_body(id, body, &codecs).unwrap();
/// assert_eq!(back, Pair { a: 1, b: 2 });
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Proto<T>(pub T);

/// The body codecs a peer knows: the built-in four and any registered.
///
/// Cloning is cheap (the registered codecs sit behind an `Arc`), so a peer
/// and all its sessions share one set.
///
/// ```
/// use getty::rpc::codec::{CodecId, Codecs};
/// let codecs = Codecs::new();
/// assert!(codecs.contains(CodecId::JSON));
/// assert_eq!(codecs.name(CodecId::PLAIN), Some("plain"));
/// assert!(!codecs.contains(CodecId(b'z')));
/// ```
#[derive(Clone, Default)]
pub struct Codecs {
    own: Arc<Vec<Arc<dyn Codec>>>,
}

impl Codecs {
    /// The built-in codecs: json `j`, plain `s`, protobuf `p`, form `f`.
    pub fn new() -> Codecs {
        Codecs::default()
    }

    /// Registers a codec of your own, replacing any registered under the
    /// same id. A codec registered under a built-in id (`j`, `s`, `f`)
    /// takes its place for serde types, as erpc's `codec.Reg` replaces one;
    /// [`Proto`] and [`Raw`] bodies are not affected.
    ///
    /// ```
    /// use getty::rpc::codec::{Codec, CodecId, Codecs};
    /// # struct Yaml;
    /// # impl Codec for Yaml {
    /// #     fn id(&self) -> CodecId { CodecId(b'y') }
    /// #     fn name(&self) -> &'static str { "yaml" }
    /// #     fn encode(&self, _: &serde_json::Value) -> Result<Vec<u8>, getty::BoxError> { Ok(Vec::new()) }
    /// #     fn decode(&self, _: &[u8]) -> Result<serde_json::Value, getty::BoxError> { Ok(serde_json::Value::Null) }
    /// # }
    /// let mut codecs = Codecs::new();
    /// codecs.register(Yaml);
    /// assert_eq!(codecs.name(CodecId(b'y')), Some("yaml"));
    /// assert!(codecs.get(CodecId(b'y')).is_some());
    /// assert!(codecs.get(CodecId::JSON).is_none()); // built-ins are not `dyn Codec`s
    /// ```
    pub fn register(&mut self, codec: impl Codec) -> &mut Codecs {
        let id = codec.id();
        // Copy-on-write: clones already handed out keep the old set.
        let own = Arc::make_mut(&mut self.own);
        own.retain(|c| c.id() != id);
        own.push(Arc::new(codec));
        self
    }

    /// Whether `id` names a codec known here (built in or registered).
    pub fn contains(&self, id: CodecId) -> bool {
        self.name(id).is_some()
    }

    /// The name of the codec under `id`: `"json"`, `"plain"`,
    /// `"protobuf"`, `"form"` or a registered codec's.
    pub fn name(&self, id: CodecId) -> Option<&'static str> {
        if let Some(codec) = self.get(id) {
            return Some(codec.name());
        }
        Some(match id {
            CodecId::JSON => "json",
            CodecId::PLAIN => "plain",
            CodecId::PROTOBUF => "protobuf",
            CodecId::FORM => "form",
            _ => return None,
        })
    }

    /// The registered codec under `id` (`None` for the built-in ones,
    /// which are not trait objects).
    pub fn get(&self, id: CodecId) -> Option<&dyn Codec> {
        self.own.iter().find(|c| c.id() == id).map(|c| &**c)
    }
}

impl fmt::Debug for Codecs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.own.iter().map(|c| (c.id(), c.name())))
            .finish()
    }
}
