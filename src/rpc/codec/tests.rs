use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::*;

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Pair {
    a: i32,
    b: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct PbPair {
    #[prost(int32, tag = "1")]
    a: i32,
    #[prost(int32, tag = "2")]
    b: i32,
}

/// Upper-cases json text, under id `u`: a user codec that shows it was used.
struct Shout;

impl Codec for Shout {
    fn id(&self) -> CodecId {
        CodecId(b'u')
    }
    fn name(&self) -> &'static str {
        "shout"
    }
    fn encode(&self, value: &serde_json::Value) -> Result<Vec<u8>, BoxError> {
        Ok(serde_json::to_string(value)?.to_uppercase().into_bytes())
    }
    fn decode(&self, body: &[u8]) -> Result<serde_json::Value, BoxError> {
        let text = std::str::from_utf8(body)?.to_lowercase();
        Ok(serde_json::from_str(&text)?)
    }
}

fn decode<T: FromBody>(codec: CodecId, body: &'static [u8]) -> Result<T, Status> {
    T::from_body(codec, Bytes::from_static(body), &Codecs::new())
}

fn encode<T: IntoBody>(value: T, codec: CodecId) -> Result<(CodecId, Bytes), Status> {
    value.into_body(codec, &Codecs::new())
}

#[test]
fn builtins_are_known_by_id_and_name() {
    let codecs = Codecs::new();
    for (id, name) in [
        (CodecId::JSON, "json"),
        (CodecId::PLAIN, "plain"),
        (CodecId::PROTOBUF, "protobuf"),
        (CodecId::FORM, "form"),
    ] {
        assert!(codecs.contains(id));
        assert_eq!(codecs.name(id), Some(name));
        assert!(codecs.get(id).is_none());
    }
    assert!(!codecs.contains(CodecId::NONE));
    assert!(!codecs.contains(CodecId(b'x')));
}

#[test]
fn register_replaces_the_codec_of_the_same_id_and_leaves_clones_alone() {
    let mut codecs = Codecs::new();
    codecs.register(Shout);
    let before = codecs.clone();
    struct Other;
    impl Codec for Other {
        fn id(&self) -> CodecId {
            CodecId(b'u')
        }
        fn name(&self) -> &'static str {
            "other"
        }
        fn encode(&self, _: &serde_json::Value) -> Result<Vec<u8>, BoxError> {
            Ok(Vec::new())
        }
        fn decode(&self, _: &[u8]) -> Result<serde_json::Value, BoxError> {
            Ok(serde_json::Value::Null)
        }
    }
    codecs.register(Other);
    assert_eq!(codecs.name(CodecId(b'u')), Some("other"));
    assert_eq!(format!("{codecs:?}"), "[(CodecId(u), \"other\")]");
    assert_eq!(before.name(CodecId(b'u')), Some("shout"));
}

#[test]
fn json_round_trips_a_struct() {
    let pair = Pair {
        a: 1,
        b: "x".into(),
    };
    let (id, body) = encode(&pair, CodecId::JSON).unwrap();
    assert_eq!((id, &body[..]), (CodecId::JSON, &br#"{"a":1,"b":"x"}"#[..]));
    assert_eq!(Pair::from_body(id, body, &Codecs::new()).unwrap(), pair);
}

#[test]
fn no_codec_named_encodes_as_json() {
    let (id, body) = encode("x", CodecId::NONE).unwrap();
    assert_eq!((id, &body[..]), (CodecId::JSON, &b"\"x\""[..]));
}

#[test]
fn form_round_trips_a_map() {
    let map: BTreeMap<String, String> = [("a b".to_string(), "1&2".to_string())].into();
    let (id, body) = encode(&map, CodecId::FORM).unwrap();
    assert_eq!(&body[..], b"a+b=1%262");
    let back: BTreeMap<String, String> = FromBody::from_body(id, body, &Codecs::new()).unwrap();
    assert_eq!(back, map);
}

#[test]
fn plain_reads_text_as_a_string_and_numbers_and_bools_as_scalars() {
    assert_eq!(decode::<String>(CodecId::PLAIN, b"hello").unwrap(), "hello");
    assert_eq!(decode::<String>(CodecId::PLAIN, b"42").unwrap(), "42");
    assert_eq!(decode::<i64>(CodecId::PLAIN, b"42").unwrap(), 42);
    assert_eq!(decode::<f64>(CodecId::PLAIN, b"1.5").unwrap(), 1.5);
    assert!(decode::<bool>(CodecId::PLAIN, b"true").unwrap());
    let err = decode::<i64>(CodecId::PLAIN, b"hello").unwrap_err();
    assert_eq!(err.code(), Status::CODE_BAD_MESSAGE);
}

#[test]
fn plain_writes_strings_numbers_and_bools_as_text_and_refuses_the_rest() {
    assert_eq!(&encode("hello", CodecId::PLAIN).unwrap().1[..], b"hello");
    assert_eq!(&encode(42, CodecId::PLAIN).unwrap().1[..], b"42");
    assert_eq!(&encode(false, CodecId::PLAIN).unwrap().1[..], b"false");
    let err = encode(vec![1, 2], CodecId::PLAIN).unwrap_err();
    assert_eq!(err.code(), Status::CODE_INTERNAL_SERVER_ERROR);
}

#[test]
fn an_empty_body_is_null_for_unit_and_option_and_400_otherwise() {
    decode::<()>(CodecId::JSON, b"").unwrap();
    assert_eq!(decode::<Option<Pair>>(CodecId::NONE, b"").unwrap(), None);
    let err = decode::<Pair>(CodecId::JSON, b"").unwrap_err();
    assert_eq!(err.code(), Status::CODE_BAD_MESSAGE);
}

#[test]
fn an_unknown_codec_is_400_in_erpc_words() {
    let err = decode::<Pair>(CodecId(122), b"{}").unwrap_err();
    assert_eq!(
        err.to_query(),
        "code=400&msg=Bad%20Message&cause=unsupported%20codec%20id%3A%20122"
    );
}

#[test]
fn an_unknown_codec_is_500_when_encoding() {
    let err = encode(1, CodecId(122)).unwrap_err();
    assert_eq!(err.code(), Status::CODE_INTERNAL_SERVER_ERROR);
    assert_eq!(err.cause(), Some("unsupported codec id: 122"));
}

#[test]
fn bad_json_is_400_with_the_decoder_error_as_cause() {
    let err = decode::<Pair>(CodecId::JSON, b"{\"a\":").unwrap_err();
    assert_eq!(err.code(), Status::CODE_BAD_MESSAGE);
    assert_eq!(err.msg(), "Bad Message");
    assert!(err.cause().unwrap().contains("EOF"), "{err:?}");
}

#[test]
fn a_user_codec_encodes_and_decodes_through_value() {
    let mut codecs = Codecs::new();
    codecs.register(Shout);
    let pair = Pair {
        a: 1,
        b: "x".into(),
    };
    let (id, body) = (&pair).into_body(CodecId(b'u'), &codecs).unwrap();
    assert_eq!((id, &body[..]), (CodecId(b'u'), &br#"{"A":1,"B":"X"}"#[..]));
    assert_eq!(Pair::from_body(id, body, &codecs).unwrap(), pair);
}

#[test]
fn raw_keeps_the_bytes_and_the_codec_even_none() {
    let raw = decode::<Raw>(CodecId(122), b"\xff\x00").unwrap();
    assert_eq!(&raw.0[..], b"\xff\x00");
    let (id, body) = encode(&raw, CodecId::NONE).unwrap();
    assert_eq!((id, &body[..]), (CodecId::NONE, &b"\xff\x00"[..]));
    let (id, _) = encode(raw, CodecId::PLAIN).unwrap();
    assert_eq!(id, CodecId::PLAIN);
}

#[test]
fn proto_always_encodes_as_protobuf_and_prefers_it() {
    let value = Proto(PbPair { a: 1, b: 2 });
    assert_eq!(value.preferred_codec(), Some(CodecId::PROTOBUF));
    assert_eq!(IntoBody::preferred_codec(&&value), Some(CodecId::PROTOBUF));
    let (id, body) = encode(&value, CodecId::JSON).unwrap();
    assert_eq!((id, &body[..]), (CodecId::PROTOBUF, &[8, 1, 16, 2][..]));
    let (id, _) = encode(value, CodecId::NONE).unwrap();
    assert_eq!(id, CodecId::PROTOBUF);
}

#[test]
fn proto_decodes_protobuf_only() {
    let Proto(pair) = decode::<Proto<PbPair>>(CodecId::PROTOBUF, &[8, 1, 16, 2]).unwrap();
    assert_eq!(pair, PbPair { a: 1, b: 2 });
    let err = decode::<Proto<PbPair>>(CodecId::JSON, b"{}").unwrap_err();
    assert_eq!(err.code(), Status::CODE_BAD_MESSAGE);
    assert!(err.cause().unwrap().contains("protobuf"), "{err:?}");
    let err = decode::<Proto<PbPair>>(CodecId::PROTOBUF, &[8]).unwrap_err();
    assert_eq!(err.code(), Status::CODE_BAD_MESSAGE);
}

#[test]
fn a_serde_type_does_not_take_protobuf() {
    assert_eq!(
        decode::<Pair>(CodecId::PROTOBUF, &[8, 1])
            .unwrap_err()
            .code(),
        Status::CODE_BAD_MESSAGE
    );
    assert_eq!(
        encode(1, CodecId::PROTOBUF).unwrap_err().code(),
        Status::CODE_INTERNAL_SERVER_ERROR
    );
}
