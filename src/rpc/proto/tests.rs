use super::*;
use crate::rpc::xfer::{Gzip, Md5};

fn proto() -> RawProto {
    let mut filters = XferFilters::new();
    filters.register(Gzip::default()).register(Md5::new());
    RawProto::new(filters, 1 << 20)
}

fn full() -> Message {
    let mut meta = Meta::new();
    meta.add("k 1", "v&=/é").add("k", "1");
    Message::new(MessageType::Call, 36, "/home/echo")
        .with_status(Status::new(1234, "home fail").with_cause("ü"))
        .with_meta(meta)
        .with_body(CodecId::JSON, r#"{"a":1}"#)
}

fn encode(proto: &mut RawProto, msg: Message) -> io::Result<BytesMut> {
    let mut dst = BytesMut::new();
    proto.encode(msg, &mut dst)?;
    Ok(dst)
}

#[test]
fn a_message_round_trips_without_filters() {
    let mut p = proto();
    let mut buf = encode(&mut p, full()).unwrap();
    assert_eq!(buf[4], 0);
    assert_eq!(p.decode(&mut buf).unwrap(), Some(full()));
    assert!(buf.is_empty());
}

#[test]
fn a_message_round_trips_through_md5_and_gzip() {
    let mut p = proto();
    let msg = full().with_xfer_pipe([b'm', b'g'].into_iter().collect());
    let mut buf = encode(&mut p, msg.clone()).unwrap();
    assert_eq!(&buf[4..7], b"\x02mg");
    assert_eq!(p.decode(&mut buf).unwrap(), Some(msg));
}

#[test]
fn the_size_field_counts_the_whole_frame() {
    let buf = encode(&mut proto(), full()).unwrap();
    let size = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    assert_eq!(size, buf.len());
}

#[test]
fn seqs_are_written_as_lowercase_signed_base_36() {
    for (seq, text) in [
        (0, "0"),
        (1, "1"),
        (36, "10"),
        (-5, "-5"),
        (i32::MAX, "zik0zj"),
        (i32::MIN, "-zik0zk"),
    ] {
        let mut buf = [0u8; SEQ_HEAD];
        let n = seq_text(&mut buf, seq);
        assert_eq!(n, text.len() + 1, "{seq}");
        assert_eq!(usize::from(buf[0]), text.len(), "{seq}");
        assert_eq!(&buf[1..n], text.as_bytes(), "{seq}");
        assert_eq!(seq_text_len(seq), text.len(), "{seq}");
        assert_eq!(parse_seq(text.as_bytes()).unwrap(), seq);
    }
}

#[test]
fn seq_text_in_upper_case_parses() {
    assert_eq!(parse_seq(b"A").unwrap(), 10);
    assert_eq!(parse_seq(b"ZIK0ZJ").unwrap(), i32::MAX);
}

#[test]
fn seq_text_is_read_as_go_parse_int_reads_it() {
    // A sign, leading zeros: Go's `strconv.ParseInt(s, 36, 32)` takes them.
    assert_eq!(parse_seq(b"+5").unwrap(), 5);
    assert_eq!(parse_seq(b"-0").unwrap(), 0);
    assert_eq!(parse_seq(b"0000000000001").unwrap(), 1);
    assert_eq!(parse_seq(b"-00zik0zk").unwrap(), i32::MIN);
    // One past either end of an i32, a bare sign, a sign twice: refused.
    for text in [
        &b"zik0zk"[..],
        b"-zik0zl",
        b"-",
        b"+",
        b"--1",
        b"+-1",
        b"zzzzzzzzzzzzzzzz",
    ] {
        assert!(parse_seq(text).is_err(), "{text:?}");
    }
}

#[test]
fn a_partial_frame_waits_for_the_rest() {
    let mut p = proto();
    let whole = encode(&mut p, full()).unwrap();
    let mut buf = BytesMut::from(&whole[..whole.len() - 1]);
    assert_eq!(p.decode(&mut buf).unwrap(), None);
    buf.extend_from_slice(&whole[whole.len() - 1..]);
    assert_eq!(p.decode(&mut buf).unwrap(), Some(full()));
}

#[test]
fn two_frames_in_one_buffer_decode_in_order() {
    let mut p = proto();
    let mut buf = encode(&mut p, full()).unwrap();
    let second = Message::new(MessageType::Push, 2, "/x");
    p.encode(second.clone(), &mut buf).unwrap();
    assert_eq!(p.decode(&mut buf).unwrap(), Some(full()));
    assert_eq!(p.decode(&mut buf).unwrap(), Some(second));
    assert_eq!(p.decode(&mut buf).unwrap(), None);
}

#[test]
fn the_body_is_a_slice_of_the_frame() {
    let mut p = proto();
    let mut buf = encode(&mut p, full()).unwrap();
    let frame_start = buf.as_ptr() as usize;
    let frame_end = frame_start + buf.len();
    let msg = p.decode(&mut buf).unwrap().unwrap();
    let body = msg.body.as_ptr() as usize;
    assert!(body >= frame_start && body + msg.body.len() <= frame_end);
}

#[test]
fn an_encode_error_leaves_dst_as_it_was() {
    let mut p = proto();
    let mut dst = BytesMut::from(&b"before"[..]);
    let long = Message::new(MessageType::Call, 1, "x".repeat(256));
    let err = p.encode(long, &mut dst).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    assert_eq!(&dst[..], b"before");
}

#[test]
fn a_message_over_the_limit_is_refused_as_packet_too_large() {
    let mut p = RawProto::new(XferFilters::new(), 100);
    let msg = Message::new(MessageType::Push, 1, "/x").with_body(CodecId::PLAIN, vec![b'a'; 100]);
    let mut dst = BytesMut::new();
    let err = p.encode(msg, &mut dst).unwrap_err();
    let inner = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<PacketTooLarge>());
    assert_eq!(inner.map(|e| e.max), Some(100), "{err}");
    assert!(dst.is_empty());
}

#[test]
fn an_unknown_filter_is_refused_on_encode() {
    let mut p = RawProto::default();
    let msg = full().with_xfer_pipe([b'g'].into_iter().collect());
    let err = encode(&mut p, msg).unwrap_err();
    assert_eq!(err.to_string(), "raw proto: unknown transfer filter id 'g'");
}

/// `check_writable` says yes exactly when the encoder writes the frame.
#[test]
fn check_writable_agrees_with_the_encoder() {
    let filters = proto().filters().clone();
    let mut meta = Meta::new();
    meta.add("k", "v w");
    let shapes = [
        Message::new(MessageType::Call, 1, "/home/echo"),
        Message::new(MessageType::Reply, i32::MIN, "").with_status(Status::new(1234, "a b")),
        Message::new(MessageType::Push, 35, "/p").with_meta(meta),
        Message::new(MessageType::Call, 36, "/home/echo").with_status(Status::OK.with_cause("c")),
    ];
    for shape in shapes {
        for body in 0..64 {
            let msg = shape.clone().with_body(CodecId::PLAIN, vec![b'x'; body]);
            for max_len in 30..100 {
                let mut p = RawProto::new(filters.clone(), max_len);
                let encoded = encode(&mut p, msg.clone()).is_ok();
                let checked = check_writable(&msg, &filters, max_len);
                assert_eq!(
                    checked.is_ok(),
                    encoded,
                    "{msg:?} max {max_len}: {checked:?}"
                );
            }
        }
    }
    let big = 1 << 20;
    let long = Message::new(MessageType::Call, 1, "/".repeat(256));
    assert!(check_writable(&long, &filters, big)
        .unwrap_err()
        .contains("longer than 255"));
    let unknown = full().with_xfer_pipe([b'z'].into_iter().collect());
    assert!(check_writable(&unknown, &filters, big)
        .unwrap_err()
        .contains("'z'"));
    let mut meta = Meta::new();
    meta.add("k", " ".repeat(30_000));
    let huge_meta = full().with_meta(meta);
    assert!(check_writable(&huge_meta, &filters, big).is_err());
    assert!(encode(&mut proto(), huge_meta).is_err());
}

/// The head goes out in one write for short methods and in several for
/// long ones: either way the frame is the fields in erpc's order.
#[test]
fn methods_short_and_long_encode_field_by_field() {
    let mut p = proto();
    for len in [
        0,
        1,
        METHOD_IN_HEAD - 1,
        METHOD_IN_HEAD,
        METHOD_IN_HEAD + 1,
        100,
        255,
    ] {
        let method = "m".repeat(len);
        for seq in [0, -5, i32::MIN, i32::MAX] {
            for msg in [
                Message::new(MessageType::Call, seq, method.clone())
                    .with_body(CodecId::PLAIN, &b"body"[..]),
                Message::new(MessageType::Call, seq, method.clone())
                    .with_status(Status::new(7, "x"))
                    .with_body(CodecId::PLAIN, &b"body"[..]),
            ] {
                let buf = encode(&mut p, msg.clone()).unwrap();
                // By hand: size, no filters, seq, type, method, status,
                // metadata, codec, body.
                let mut text = [0u8; SEQ_HEAD];
                let n = seq_text(&mut text, seq);
                let mut want = vec![0, 0, 0, 0, 0];
                want.extend_from_slice(&text[..n]);
                want.extend_from_slice(&[MessageType::Call as u8, len as u8]);
                want.extend_from_slice(method.as_bytes());
                let mut status = BytesMut::new();
                msg.status.encode(&mut status);
                want.extend_from_slice(&(status.len() as u16).to_be_bytes());
                want.extend_from_slice(&status);
                want.extend_from_slice(&[0, 0, b's']);
                want.extend_from_slice(b"body");
                let size = (want.len() as u32).to_be_bytes();
                want[..4].copy_from_slice(&size);
                assert_eq!(&buf[..], &want[..], "method of {len}, seq {seq}");
                let mut buf = buf;
                assert_eq!(p.decode(&mut buf).unwrap(), Some(msg));
            }
        }
    }
}

/// A decoded message's short method is kept in place and re-encoded from
/// that buffer at a fixed size: the frame must come out byte for byte as
/// the one it was decoded from, for every method length.
#[test]
fn a_decoded_message_re_encodes_to_the_same_bytes_for_every_method_length() {
    let mut p = proto();
    for len in 0..=255usize {
        let method: String = (0..len)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        for seq in [0, 35, -36, i32::MIN, i32::MAX] {
            for status in [Status::OK, Status::new(7, "x")] {
                let msg = Message::new(MessageType::Reply, seq, method.clone())
                    .with_status(status)
                    .with_body(CodecId::PLAIN, &b"body"[..]);
                let first = encode(&mut p, msg).unwrap();
                let mut buf = first.clone();
                let decoded = p.decode(&mut buf).unwrap().expect("a whole frame");
                assert_eq!(
                    decoded.service_method.inline_key().is_some(),
                    len <= crate::rpc::method::INLINE,
                    "method of {len}"
                );
                let again = encode(&mut p, decoded).unwrap();
                assert_eq!(&again[..], &first[..], "method of {len}, seq {seq}");
            }
        }
    }
}
