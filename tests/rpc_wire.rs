//! erpc v6's raw protocol against frames packed by real Go erpc (the
//! golden vectors in `tests/rpc_wire/`, from the wire spec's Part 2): each
//! decodes to the fields the spec gives for it, written out here by hand,
//! and our encoder writes the same bytes back.
#![cfg(feature = "rpc")]

use bytes::{Bytes, BytesMut};
use getty::rpc::{
    codec::{CodecId, Codecs, FromBody, Proto},
    xfer::{Gzip, Md5, XferFilter, XferFilters},
    Message, MessageType, Meta, RawProto, Status, XferPipe,
};
use tokio_util::codec::{Decoder, Encoder};

/// Bytes of a hex text (a golden file: lowercase hex on one line).
fn hex(text: &str) -> Vec<u8> {
    let text = text.trim();
    assert!(text.len() % 2 == 0, "odd hex length");
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex digit"))
        .collect()
}

macro_rules! golden {
    ($name:literal) => {
        hex(include_str!(concat!("rpc_wire/", $name, ".hex")))
    };
}

/// The filters erpc programs conventionally register: gzip `g`, md5 `m`.
fn proto() -> RawProto {
    let mut filters = XferFilters::new();
    filters.register(Gzip::new(5)).register(Md5::new());
    RawProto::new(filters, RawProto::DEFAULT_MAX_LEN)
}

/// Decodes exactly one frame, which must fill `frame`.
fn decode(frame: &[u8]) -> Message {
    let mut src = BytesMut::from(frame);
    let msg = proto()
        .decode(&mut src)
        .expect("decodes")
        .expect("a whole frame");
    assert!(src.is_empty(), "{} bytes left after the frame", src.len());
    msg
}

fn encode(msg: Message) -> Vec<u8> {
    let mut dst = BytesMut::new();
    proto().encode(msg, &mut dst).expect("encodes");
    dst.to_vec()
}

/// Decodes to `expected` and encodes back to the same bytes.
fn round_trip(frame: &[u8], expected: Message) {
    assert_eq!(decode(frame), expected);
    assert_eq!(hex_of(&encode(expected)), hex_of(frame));
}

/// Hex for readable assertion failures.
fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn meta(pairs: &[(&str, &str)]) -> Meta {
    pairs.iter().copied().collect()
}

fn call(seq: i32, method: &'static str) -> Message {
    Message::new(MessageType::Call, seq, method)
}

fn reply(seq: i32) -> Message {
    Message::new(MessageType::Reply, seq, "")
}

fn push(seq: i32, method: &'static str) -> Message {
    Message::new(MessageType::Push, seq, method)
}

#[test]
fn a_call_echo_query() {
    round_trip(
        &golden!("a_call_echo_query"),
        call(1, "/home/echo?x=1")
            .with_meta(meta(&[("a", "b")]))
            .with_body(CodecId::JSON, r#"{"a":1}"#),
    );
}

#[test]
fn b_reply_echo_ok() {
    round_trip(
        &golden!("b_reply_echo_ok"),
        reply(1).with_body(CodecId::JSON, r#"{"a":1}"#),
    );
}

#[test]
fn b2_reply_not_found() {
    let frame = golden!("b2_reply_not_found");
    round_trip(
        &frame,
        reply(1).with_status(Status::new(404, "Not Found").with_cause("")),
    );
    // erpc's own status for the code is the same thing.
    assert_eq!(
        encode(reply(1).with_status(Status::framework(Status::CODE_NOT_FOUND))),
        frame
    );
}

#[test]
fn c_reply_error_status() {
    let msg = decode(&golden!("c_reply_error_status"));
    assert_eq!(msg.status.code(), 1234);
    assert_eq!(msg.status.msg(), "home fail");
    assert_eq!(msg.status.cause(), Some("requested failure: ü"));
    assert_eq!((msg.body_codec, msg.body.len()), (CodecId::NONE, 0));
    round_trip(
        &golden!("c_reply_error_status"),
        reply(1).with_status(Status::new(1234, "home fail").with_cause("requested failure: ü")),
    );
}

fn hello_push() -> Message {
    push(1, "/push/hello").with_body(CodecId::JSON, r#"{"hello":"world"}"#)
}

#[test]
fn d2_push_plain() {
    round_trip(&golden!("d2_push_plain"), hello_push());
}

fn g_pipe() -> XferPipe {
    [b'g'].into_iter().collect()
}

fn mg_pipe() -> XferPipe {
    [b'm', b'g'].into_iter().collect()
}

#[test]
fn d_push_gzip_decodes_to_the_plain_push_through_gzip() {
    let frame = golden!("d_push_gzip");
    assert_eq!(&frame[4..6], b"\x01g");
    assert_eq!(decode(&frame), hello_push().with_xfer_pipe(g_pipe()));
    // The gunzipped payload is the plain frame's payload.
    let inner = Gzip::new(5)
        .on_unpack(Bytes::copy_from_slice(&frame[6..]), 1 << 20)
        .unwrap();
    assert_eq!(&inner[..], &golden!("d2_push_plain")[5..]);
}

#[test]
fn d_push_gzip_our_encoding_gunzips_to_the_plain_payload_and_round_trips() {
    let msg = hello_push().with_xfer_pipe(g_pipe());
    let ours = encode(msg.clone());
    assert_eq!(&ours[4..6], b"\x01g");
    let size = u32::from_be_bytes([ours[0], ours[1], ours[2], ours[3]]) as usize;
    assert_eq!(size, ours.len());
    let inner = Gzip::new(5)
        .on_unpack(Bytes::copy_from_slice(&ours[6..]), 1 << 20)
        .unwrap();
    assert_eq!(&inner[..], &golden!("d2_push_plain")[5..]);
    assert_eq!(decode(&ours), msg);
}

#[test]
fn f_push_md5_gzip_decodes_to_the_plain_push_through_md5_then_gzip() {
    let frame = golden!("f_push_md5_gzip");
    assert_eq!(&frame[4..7], b"\x02mg");
    assert_eq!(decode(&frame), hello_push().with_xfer_pipe(mg_pipe()));
}

#[test]
fn f_push_md5_gzip_go_digest_verifies_over_the_go_gzip_stream() {
    let frame = golden!("f_push_md5_gzip");
    let checked = Md5::new()
        .on_unpack(Bytes::copy_from_slice(&frame[7..]), 1 << 20)
        .expect("Go's digest verifies");
    // What md5 covered is d's gzip stream, byte for byte.
    assert_eq!(&checked[..], &golden!("d_push_gzip")[6..]);
    // And the digest we compute over it is Go's.
    let ours = Md5::new().on_pack(checked).unwrap();
    assert_eq!(&ours[..], &frame[7..]);
}

#[test]
fn f_push_md5_gzip_our_encoding_round_trips() {
    let msg = hello_push().with_xfer_pipe(mg_pipe());
    let ours = encode(msg.clone());
    assert_eq!(&ours[4..7], b"\x02mg");
    let gz = Md5::new()
        .on_unpack(Bytes::copy_from_slice(&ours[7..]), 1 << 20)
        .unwrap();
    let inner = Gzip::new(5).on_unpack(gz, 1 << 20).unwrap();
    assert_eq!(&inner[..], &golden!("d2_push_plain")[5..]);
    assert_eq!(decode(&ours), msg);
}

#[test]
fn e_call_protobuf() {
    let frame = golden!("e_call_protobuf");
    round_trip(
        &frame,
        call(1, "/home/echo").with_body(CodecId::PROTOBUF, &[0x08, 0x01, 0x10, 0x02][..]),
    );
    #[derive(Clone, PartialEq, prost::Message)]
    struct Pair {
        #[prost(int32, tag = "1")]
        a: i32,
        #[prost(int32, tag = "2")]
        b: i32,
    }
    let msg = decode(&frame);
    let Proto(pair) = Proto::<Pair>::from_body(msg.body_codec, msg.body, &Codecs::new()).unwrap();
    assert_eq!(pair, Pair { a: 1, b: 2 });
}

#[test]
fn e2_call_plain() {
    let frame = golden!("e2_call_plain");
    round_trip(
        &frame,
        call(1, "/home/echo").with_body(CodecId::PLAIN, "hello"),
    );
    let msg = decode(&frame);
    let text = String::from_body(msg.body_codec, msg.body, &Codecs::new()).unwrap();
    assert_eq!(text, "hello");
}

#[test]
fn g_push_seq_max() {
    let frame = golden!("g_push_seq_max");
    assert_eq!(&frame[4..12], b"\x00\x06zik0zj");
    round_trip(
        &frame,
        push(i32::MAX, "/x").with_body(CodecId::JSON, Bytes::new()),
    );
}

#[test]
fn g2_push_seq_negative() {
    round_trip(
        &golden!("g2_push_seq_negative"),
        push(-5, "/x").with_body(CodecId::JSON, Bytes::new()),
    );
}

#[test]
fn h_auth_call() {
    let frame = golden!("h_auth_call");
    round_trip(
        &frame,
        Message::new(MessageType::AuthCall, 1, "")
            .with_body(CodecId::JSON, r#""client-auth-info-12345""#),
    );
    let msg = decode(&frame);
    let info = String::from_body(msg.body_codec, msg.body, &Codecs::new()).unwrap();
    assert_eq!(info, "client-auth-info-12345");
}

#[test]
fn h2_auth_reply() {
    round_trip(
        &golden!("h2_auth_reply"),
        Message::new(MessageType::AuthReply, 1, "").with_body(CodecId::JSON, r#""server-ok""#),
    );
}

#[test]
fn i_heartbeat_push() {
    round_trip(
        &golden!("i_heartbeat_push"),
        push(1, "/heartbeat")
            .with_meta(meta(&[("hb_", "3")]))
            .with_body(CodecId::JSON, Bytes::new()),
    );
}

#[test]
fn j_call_meta_escapes() {
    let frame = golden!("j_call_meta_escapes");
    round_trip(
        &frame,
        call(36, "/home/echo")
            .with_meta(meta(&[
                ("k 1", "v&=/é"),
                ("k", "1"),
                ("k", "2"),
                ("X-Accept-Body-Codec", "115"),
            ]))
            .with_body(CodecId::JSON, r#""x""#),
    );
    assert_eq!(&frame[5..8], b"\x0210");
}

#[test]
fn live_heartbeat_call_and_its_null_reply() {
    round_trip(
        &hex("00000023000132010a2f6865617274626561740006636f64653d30000568625f3d336a"),
        call(2, "/heartbeat")
            .with_meta(meta(&[("hb_", "3")]))
            .with_body(CodecId::JSON, Bytes::new()),
    );
    round_trip(
        &hex("0000001800013202000006636f64653d3000006a6e756c6c"),
        reply(2).with_body(CodecId::JSON, "null"),
    );
}

#[test]
fn live_plain_echo_reply() {
    round_trip(
        &hex("0000001900013102000006636f64653d3000007368656c6c6f"),
        reply(1).with_body(CodecId::PLAIN, "hello"),
    );
}

#[test]
fn live_protobuf_echo_reply() {
    round_trip(
        &hex("0000001800013102000006636f64653d3000007008011002"),
        reply(1).with_body(CodecId::PROTOBUF, &[0x08, 0x01, 0x10, 0x02][..]),
    );
}

#[test]
fn every_golden_frame_back_to_back_decodes_in_order() {
    let frames = [
        golden!("a_call_echo_query"),
        golden!("d_push_gzip"),
        golden!("f_push_md5_gzip"),
        golden!("j_call_meta_escapes"),
    ];
    let mut src = BytesMut::new();
    for f in &frames {
        src.extend_from_slice(f);
    }
    let mut p = proto();
    for f in &frames {
        assert_eq!(p.decode(&mut src).unwrap(), Some(decode(f)));
    }
    assert!(src.is_empty());
}
