//! How Rust values become bodies and back: [`FromBody`] and [`IntoBody`]
//! for every serde type, [`Raw`] and [`Proto`].
//!
//! The serde impls are blanket impls over `T`; `Raw` and `Proto` are local
//! types that implement neither serde trait, so their own impls do not
//! overlap with them.

use bytes::Bytes;
use serde::{de::DeserializeOwned, Serialize};
use serde_json::Value;

use super::{CodecId, Codecs, FromBody, IntoBody, Proto, Raw};
use crate::rpc::Status;

/// 400 Bad Message with `cause`: what erpc answers for a body it cannot
/// decode.
fn bad(cause: impl ToString) -> Status {
    Status::framework_with(Status::CODE_BAD_MESSAGE, cause.to_string())
}

/// 500 Internal Server Error with `cause`: a body that cannot be encoded.
fn internal(cause: impl ToString) -> Status {
    Status::framework_with(Status::CODE_INTERNAL_SERVER_ERROR, cause.to_string())
}

/// erpc's words for a codec id it does not know (decimal, as Go prints a
/// byte).
fn unsupported(codec: CodecId) -> String {
    format!("unsupported codec id: {}", codec.0)
}

impl<T: DeserializeOwned> FromBody for T {
    fn from_body(codec: CodecId, body: Bytes, codecs: &Codecs) -> Result<T, Status> {
        // erpc never hands an empty body to a codec: the value stays Go's
        // zero value. Null is serde's nearest: `()` and `Option` take it.
        if body.is_empty() {
            return T::deserialize(Value::Null).map_err(|e| bad(format!("empty body: {e}")));
        }
        if let Some(own) = codecs.get(codec) {
            let value = own.decode(&body).map_err(bad)?;
            return T::deserialize(value).map_err(bad);
        }
        match codec {
            CodecId::JSON => serde_json::from_slice(&body).map_err(bad),
            CodecId::FORM => serde_urlencoded::from_bytes(&body).map_err(bad),
            CodecId::PLAIN => from_plain(&body),
            CodecId::PROTOBUF => Err(bad(
                "a protobuf body decodes into Proto<T> or Raw, not a serde type",
            )),
            _ => Err(bad(unsupported(codec))),
        }
    }
}

/// A plain body: its text as a string, or, when `T` does not take a
/// string, the text read as a JSON number or boolean (Go's plain codec
/// writes those as decimal and `true`/`false` text).
fn from_plain<T: DeserializeOwned>(body: &[u8]) -> Result<T, Status> {
    let text = std::str::from_utf8(body).map_err(|e| bad(format!("plain body: {e}")))?;
    match T::deserialize(Value::String(text.to_owned())) {
        Ok(value) => Ok(value),
        Err(as_text) => match serde_json::from_str::<Value>(text) {
            Ok(scalar @ (Value::Number(_) | Value::Bool(_))) => T::deserialize(scalar).map_err(bad),
            // The text error says what `T` wanted, which is more useful
            // than why the text is not a number.
            _ => Err(bad(as_text)),
        },
    }
}

impl<T: Serialize> IntoBody for T {
    fn into_body(self, codec: CodecId, codecs: &Codecs) -> Result<(CodecId, Bytes), Status> {
        // No codec named: json, erpc's default.
        let codec = if codec == CodecId::NONE {
            CodecId::JSON
        } else {
            codec
        };
        if let Some(own) = codecs.get(codec) {
            let value = serde_json::to_value(&self).map_err(internal)?;
            let body = own.encode(&value).map_err(internal)?;
            return Ok((codec, Bytes::from(body)));
        }
        let body = match codec {
            CodecId::JSON => serde_json::to_vec(&self).map_err(internal)?,
            CodecId::FORM => serde_urlencoded::to_string(&self)
                .map_err(internal)?
                .into_bytes(),
            CodecId::PLAIN => to_plain(&self)?,
            CodecId::PROTOBUF => {
                return Err(internal(
                    "a protobuf body is made from Proto<T> or Raw, not a serde type",
                ))
            }
            _ => return Err(internal(unsupported(codec))),
        };
        Ok((codec, Bytes::from(body)))
    }
}

/// A plain body: a string as it is, a number or boolean as its text, a
/// unit or `None` as no body.
fn to_plain<T: Serialize>(value: &T) -> Result<Vec<u8>, Status> {
    match serde_json::to_value(value).map_err(internal)? {
        Value::String(s) => Ok(s.into_bytes()),
        Value::Number(n) => Ok(n.to_string().into_bytes()),
        Value::Bool(b) => Ok(b.to_string().into_bytes()),
        Value::Null => Ok(Vec::new()),
        Value::Array(_) | Value::Object(_) => Err(internal(
            "the plain codec takes a string, a number or a boolean (use Raw for bytes)",
        )),
    }
}

impl FromBody for Raw {
    fn from_body(_codec: CodecId, body: Bytes, _codecs: &Codecs) -> Result<Raw, Status> {
        Ok(Raw(body))
    }
}

impl IntoBody for Raw {
    fn into_body(self, codec: CodecId, _codecs: &Codecs) -> Result<(CodecId, Bytes), Status> {
        Ok((codec, self.0))
    }
}

impl IntoBody for &Raw {
    fn into_body(self, codec: CodecId, _codecs: &Codecs) -> Result<(CodecId, Bytes), Status> {
        Ok((codec, self.0.clone()))
    }
}

impl<T: prost::Message + Default> FromBody for Proto<T> {
    fn from_body(codec: CodecId, body: Bytes, _codecs: &Codecs) -> Result<Proto<T>, Status> {
        // The codec byte of an empty body says nothing (erpc does not
        // decode it); the empty message is also what protobuf makes of it.
        if body.is_empty() {
            return Ok(Proto(T::default()));
        }
        if codec != CodecId::PROTOBUF {
            return Err(bad(format!(
                "expected a protobuf body (codec p), got codec {codec}"
            )));
        }
        T::decode(body).map(Proto).map_err(bad)
    }
}

impl<T: prost::Message> IntoBody for Proto<T> {
    fn preferred_codec(&self) -> Option<CodecId> {
        Some(CodecId::PROTOBUF)
    }

    fn into_body(self, codec: CodecId, codecs: &Codecs) -> Result<(CodecId, Bytes), Status> {
        (&self).into_body(codec, codecs)
    }
}

impl<T: prost::Message> IntoBody for &Proto<T> {
    fn preferred_codec(&self) -> Option<CodecId> {
        Some(CodecId::PROTOBUF)
    }

    fn into_body(self, _codec: CodecId, _codecs: &Codecs) -> Result<(CodecId, Bytes), Status> {
        Ok((CodecId::PROTOBUF, Bytes::from(self.0.encode_to_vec())))
    }
}
