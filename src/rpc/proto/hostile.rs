//! Frames a broken or hostile peer could send, and messages erpc would
//! encode corrupt: each is refused with the error naming what is wrong.

use std::io::Write;

use flate2::{write::GzEncoder, Compression};

use super::*;
use crate::rpc::xfer::{Gzip, Md5};

const MAX: usize = 1 << 20;

fn proto() -> RawProto {
    let mut filters = XferFilters::new();
    filters.register(Gzip::default()).register(Md5::new());
    RawProto::new(filters, MAX)
}

/// A frame of `ids` and `payload`, its size field computed.
fn frame(ids: &[u8], payload: &[u8]) -> Vec<u8> {
    let size = (HEAD + ids.len() + payload.len()) as u32;
    let mut out = size.to_be_bytes().to_vec();
    out.push(ids.len() as u8);
    out.extend_from_slice(ids);
    out.extend_from_slice(payload);
    out
}

/// A payload from its parts (lengths computed; `trailer` is raw bytes
/// appended after the method, for truncation tests).
fn payload(seq: &[u8], mtype: u8, method: &[u8], trailer: &[u8]) -> Vec<u8> {
    let mut out = vec![seq.len() as u8];
    out.extend_from_slice(seq);
    out.push(mtype);
    out.push(method.len() as u8);
    out.extend_from_slice(method);
    out.extend_from_slice(trailer);
    out
}

/// The usual tail: status `code=0`, no meta, codec `j`, no body.
const OK_TAIL: &[u8] = b"\x00\x06code=0\x00\x00j";

fn decode_err(bytes: &[u8]) -> io::Error {
    decode_err_with(&mut proto(), bytes)
}

fn decode_err_with(p: &mut RawProto, bytes: &[u8]) -> io::Error {
    let mut src = BytesMut::from(bytes);
    match p.decode(&mut src) {
        Ok(got) => panic!("decoded {got:?}"),
        Err(e) => {
            assert_eq!(e.kind(), io::ErrorKind::InvalidData);
            e
        }
    }
}

fn proto_err(e: &io::Error) -> &ProtoError {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<ProtoError>())
        .unwrap_or_else(|| panic!("not a ProtoError: {e:?}"))
}

#[test]
fn the_smallest_frame_decodes() {
    // 14 bytes: 1-char seq, empty method, status and meta, codec 0.
    let bytes = frame(&[], &payload(b"1", 1, b"", b"\x00\x00\x00\x00\x00"));
    assert_eq!(bytes.len(), 14);
    let msg = proto().decode(&mut BytesMut::from(&bytes[..])).unwrap();
    assert_eq!(msg, Some(Message::new(MessageType::Call, 1, "")));
}

#[test]
fn size_3_is_a_bad_package() {
    let e = decode_err(b"\x00\x00\x00\x03");
    assert!(matches!(
        proto_err(&e),
        ProtoError::BadSize { size: 3, min: 5 }
    ));
    assert_eq!(
        e.to_string(),
        "raw proto: bad package: size 3 is below the minimum 5"
    );
}

#[test]
fn size_below_5_plus_n_is_a_bad_package() {
    let e = decode_err(b"\x00\x00\x00\x07\x03gm");
    assert!(matches!(
        proto_err(&e),
        ProtoError::BadSize { size: 7, min: 8 }
    ));
}

#[test]
fn a_size_over_the_limit_fails_on_the_four_size_bytes_alone() {
    // Only the size field is supplied: the error cannot have waited for
    // (or made room for) the declared frame.
    let declared = (MAX + 1) as u32;
    let e = decode_err(&declared.to_be_bytes());
    let too_large = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<PacketTooLarge>())
        .expect("a PacketTooLarge");
    assert_eq!(*too_large, PacketTooLarge::new(MAX as u64 + 1, MAX));

    let mut p = RawProto::default();
    let e = decode_err_with(&mut p, &u32::MAX.to_be_bytes());
    assert!(e.get_ref().is_some_and(|i| i.is::<PacketTooLarge>()));
}

#[test]
fn a_size_at_the_limit_waits_for_its_bytes() {
    let mut src = BytesMut::from(&(MAX as u32).to_be_bytes()[..]);
    assert_eq!(proto().decode(&mut src).unwrap(), None);
}

#[test]
fn seq_len_overrunning_the_frame_is_refused() {
    let e = decode_err(&frame(&[], b"\x09123"));
    assert!(matches!(
        proto_err(&e),
        ProtoError::Overrun {
            field: "seq_len",
            len: 9
        }
    ));
    assert_eq!(e.to_string(), "raw proto: seq_len 9 overruns the frame");
}

#[test]
fn a_frame_of_only_its_header_is_truncated_at_seq_len() {
    let e = decode_err(&frame(&[], b""));
    assert!(matches!(
        proto_err(&e),
        ProtoError::Truncated { field: "seq_len" }
    ));
}

#[test]
fn seq_text_that_is_not_base_36_i32_is_refused() {
    for seq in [&b"1!"[..], b"", b"zzzzzzz", b"\xff", b"1 "] {
        let e = decode_err(&frame(&[], &payload(seq, 1, b"/x", OK_TAIL)));
        assert!(
            matches!(proto_err(&e), ProtoError::BadSeq { .. }),
            "{seq:?}: {e}"
        );
    }
}

#[test]
fn seq_text_in_upper_case_or_negative_decodes() {
    for (seq, want) in [(&b"A"[..], 10), (b"-5", -5), (b"ZIK0ZJ", i32::MAX)] {
        let bytes = frame(&[], &payload(seq, 3, b"/x", OK_TAIL));
        let msg = proto().decode(&mut BytesMut::from(&bytes[..])).unwrap();
        assert_eq!(msg.map(|m| m.seq), Some(want));
    }
}

#[test]
fn mtypes_0_6_and_9_are_unknown() {
    for mtype in [0, 6, 9] {
        let e = decode_err(&frame(&[], &payload(b"1", mtype, b"/x", OK_TAIL)));
        assert!(matches!(proto_err(&e), ProtoError::UnknownMessageType(t) if *t == mtype));
    }
    let e = decode_err(&frame(&[], &payload(b"1", 9, b"/x", OK_TAIL)));
    assert_eq!(e.to_string(), "raw proto: unknown message type 9");
}

#[test]
fn an_unknown_filter_id_is_refused() {
    let e = decode_err(&frame(b"z", &payload(b"1", 1, b"/x", OK_TAIL)));
    assert!(matches!(proto_err(&e), ProtoError::UnknownXferFilter(b'z')));
    assert_eq!(e.to_string(), "raw proto: unknown transfer filter id 'z'");
}

#[test]
fn an_md5_mismatch_is_refused() {
    let mut dst = BytesMut::new();
    let msg = Message::new(MessageType::Push, 1, "/x").with_xfer_pipe([b'm'].into_iter().collect());
    proto().encode(msg, &mut dst).unwrap();
    let last = dst.len() - 1;
    dst[last] ^= 0x01;
    let e = decode_err(&dst);
    assert!(matches!(proto_err(&e), ProtoError::XferFilter(_)));
    assert!(e.to_string().contains("md5 check failed"), "{e}");
}

#[test]
fn a_gzip_bomb_stops_at_the_limit() {
    // 10 MB of zeros inflating from a frame of a few KB, against 1 MB.
    let mut gz = GzEncoder::new(Vec::new(), Compression::new(9));
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..10 {
        gz.write_all(&zeros).unwrap();
    }
    let bomb = gz.finish().unwrap();
    assert!(bomb.len() < 64 * 1024);
    let e = decode_err(&frame(b"g", &bomb));
    assert!(matches!(proto_err(&e), ProtoError::XferFilter(_)));
    assert!(e.to_string().contains("exceeds the limit"), "{e}");
}

#[test]
fn corrupt_gzip_is_refused() {
    let e = decode_err(&frame(b"g", b"\x1f\x8b\x08\x00garbage"));
    assert!(matches!(proto_err(&e), ProtoError::XferFilter(_)));
}

#[test]
fn a_frame_ending_inside_or_before_a_field_names_it() {
    let cases: [(&[u8], &str); 7] = [
        (b"", "mtype"),
        (b"\x01", "sm_len"),
        (b"\x01\x00\x00", "status_len"),
        (b"\x01\x00\x00\x06code", "status_len"),
        (b"\x01\x00\x00\x06code=0\x00", "meta_len"),
        (b"\x01\x00\x00\x00\x00\x03a=", "meta_len"),
        (b"\x01\x00\x00\x00\x00\x00", "body_codec"),
    ];
    for (tail, field) in cases {
        let mut p = vec![1, b'1'];
        p.extend_from_slice(tail);
        let e = decode_err(&frame(&[], &p));
        let named = match proto_err(&e) {
            ProtoError::Truncated { field } | ProtoError::Overrun { field, .. } => *field,
            other => panic!("{other:?}"),
        };
        assert_eq!(named, field, "{tail:?}");
    }
}

#[test]
fn sm_len_overrunning_the_frame_is_refused() {
    let e = decode_err(&frame(&[], b"\x011\x01\x20/x"));
    assert!(matches!(
        proto_err(&e),
        ProtoError::Overrun {
            field: "sm_len",
            len: 32
        }
    ));
}

#[test]
fn a_service_method_that_is_not_utf8_is_refused() {
    let e = decode_err(&frame(&[], &payload(b"1", 1, b"/\xff\xfe", OK_TAIL)));
    assert!(matches!(proto_err(&e), ProtoError::ServiceMethodNotUtf8));
}

fn encode_err(msg: Message) -> io::Error {
    let mut dst = BytesMut::new();
    let e = proto().encode(msg, &mut dst).unwrap_err();
    assert!(dst.is_empty(), "{} bytes written", dst.len());
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    e
}

fn encodes(msg: Message) -> bool {
    proto().encode(msg, &mut BytesMut::new()).is_ok()
}

#[test]
fn a_status_of_65536_bytes_is_refused_on_encode() {
    // "code=1&msg=" is 11 bytes.
    let status = |n| Status::new(1, "a".repeat(n));
    let msg = |n| Message::new(MessageType::Reply, 1, "").with_status(status(n));
    assert!(encodes(msg(65_535 - 11)));
    let e = encode_err(msg(65_536 - 11));
    assert!(matches!(proto_err(&e), ProtoError::StatusTooLong(65_536)));
}

#[test]
fn meta_of_65536_bytes_is_refused_on_encode() {
    // "k=" is 2 bytes.
    let msg = |n| {
        let mut meta = Meta::new();
        meta.add("k", "a".repeat(n));
        Message::new(MessageType::Push, 1, "/x").with_meta(meta)
    };
    assert!(encodes(msg(65_535 - 2)));
    let e = encode_err(msg(65_536 - 2));
    assert!(matches!(proto_err(&e), ProtoError::MetaTooLong(65_536)));
}

#[test]
fn a_256_byte_service_method_is_refused_on_encode() {
    assert!(encodes(Message::new(MessageType::Call, 1, "m".repeat(255))));
    let e = encode_err(Message::new(MessageType::Call, 1, "m".repeat(256)));
    assert!(matches!(
        proto_err(&e),
        ProtoError::ServiceMethodTooLong(256)
    ));
}

#[test]
fn more_than_255_filters_are_refused_on_encode() {
    let pipe: XferPipe = std::iter::repeat_n(b'm', 256).collect();
    let e = encode_err(Message::new(MessageType::Push, 1, "/x").with_xfer_pipe(pipe));
    assert!(matches!(proto_err(&e), ProtoError::TooManyXferFilters(256)));
}

#[test]
fn a_frame_fed_one_byte_at_a_time_decodes_to_the_same_message() {
    let mut p = proto();
    for pipe in [&b""[..], b"g", b"mg"] {
        let msg = Message::new(MessageType::Call, 36, "/home/echo")
            .with_body(CodecId::JSON, r#"{"a":1}"#)
            .with_xfer_pipe(pipe.iter().copied().collect());
        let mut whole = BytesMut::new();
        p.encode(msg.clone(), &mut whole).unwrap();
        let mut src = BytesMut::new();
        let mut got = None;
        for (i, b) in whole.iter().enumerate() {
            assert!(got.is_none(), "decoded before byte {i}");
            src.extend_from_slice(&[*b]);
            got = p.decode(&mut src).unwrap();
        }
        assert_eq!(got, Some(msg));
        assert!(src.is_empty());
    }
}
