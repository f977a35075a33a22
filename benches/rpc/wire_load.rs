//! A wire-level load generator for the getty RPC server: erpc raw frames
//! made and checked by hand, written from the wire spec
//! (`../shared/erpc/SPEC.md`) rather than with the library's client, so
//! that it costs per call about what the TCP echo's generator
//! (`../echo/load.rs`) costs per packet. Loading the RPC server with it
//! and the TCP echo server with that one compares the two servers, not a
//! client with a hand-written generator.
//!
//! Each of `conns` connections keeps `depth` calls to `/home/echo` in
//! flight (plain codec, the body `seq` as 8 bytes big-endian then a fixed
//! fill). A reply may come in any order (the peer answers as calls
//! complete); each is checked: a REPLY, status `code=0`, plain codec, the
//! seq of a call in flight, the body that call sent.
//!
//! ```text
//! call   | size u32 | 0 | len seq36 | 1 | 10 "/home/echo" | 0 6 "code=0" | 0 0 | 's' | body |
//! reply  | size u32 | 0 | len seq36 | 2 | 0               | 0 6 "code=0" | 0 0 | 's' | body |
//! ```

use std::{
    process::ExitCode,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use bytes::{Buf, BufMut, BytesMut};
use tokio::{net::TcpStream, task::JoinSet};

use crate::{
    load::{exchange, measure, run_child, within, Conn, Run, STALL},
    rpc_load::{self, Load},
    rpc_server::ECHO_METHOD,
};

/// The role of a wire load child.
pub(crate) const ROLE: &str = "rpc-wire-load";

/// erpc's message types.
const CALL: u8 = 1;
const REPLY: u8 = 2;
/// The plain codec's id.
const PLAIN: u8 = b's';
/// An OK status (as erpc writes it) and no metadata, with their lengths.
const OK_NO_META: &[u8] = b"\x00\x06code=0\x00\x00";

/// Runs one wire load child (pinned to `cpu`) against the getty server of
/// `load` and returns what it measured.
pub(crate) fn run(load: &Load, cpu: Option<usize>) -> Result<Run, String> {
    rpc_load::run_as(ROLE, "RPC wire load generator", load, cpu)
}

/// The wire load child: one run, reported as the echo bench's generator
/// reports.
pub(crate) fn child_main() -> ExitCode {
    run_child(|| {
        let load = Load::from_env()?;
        let window = (
            Duration::from_secs_f64(load.warmup_secs),
            Duration::from_secs_f64(load.secs),
        );
        Ok(async move {
            let received = Arc::new(AtomicU64::new(0));
            let stop = Arc::new(AtomicBool::new(false));
            let frames = Arc::new(Frames::new(load.payload));
            let mut tasks = JoinSet::new();
            for _ in 0..load.conns {
                let stream = within(STALL, "connect", TcpStream::connect(load.addr)).await?;
                let _ = stream.set_nodelay(true);
                let conn = Conn {
                    frames: Arc::clone(&frames),
                    depth: load.depth,
                    received: Arc::clone(&received),
                    stop: Arc::clone(&stop),
                };
                tasks.spawn(conn.drive(stream));
            }
            let server_pid = load.server_pid.to_string();
            measure(tasks, &received, &stop, window, &server_pid).await
        })
    })
}

/// The seq as erpc writes it: signed base-36 text, lowercase.
fn seq_text(seq: i32) -> ([u8; 7], usize) {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut text = [0u8; 7];
    let mut i = text.len();
    let mut n = seq.unsigned_abs();
    loop {
        i -= 1;
        text[i] = DIGITS[(n % 36) as usize];
        n /= 36;
        if n == 0 {
            break;
        }
    }
    if seq < 0 {
        i -= 1;
        text[i] = b'-';
    }
    text.copy_within(i.., 0);
    (text, 7 - i)
}

/// The seq from its base-36 text (lowercase, as the server writes it).
fn parse_seq36(text: &[u8]) -> Option<i32> {
    let (negative, digits) = match text {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, text),
    };
    if digits.is_empty() || digits.len() > 7 {
        return None;
    }
    let mut n: i64 = 0;
    for &b in digits {
        n = n * 36 + i64::from(char::from(b).to_digit(36)?);
    }
    i32::try_from(if negative { -n } else { n }).ok()
}

/// How calls go out and replies are checked.
struct Frames {
    /// The body, `fill` from byte 8 on.
    template: Vec<u8>,
    /// A call's bytes between the seq and the body: type, method, status,
    /// metadata, codec.
    call_middle: Vec<u8>,
}

impl Frames {
    fn new(payload: usize) -> Frames {
        let method = ECHO_METHOD.as_bytes();
        let mut call_middle = vec![CALL, method.len() as u8];
        call_middle.extend_from_slice(method);
        call_middle.extend_from_slice(OK_NO_META);
        call_middle.push(PLAIN);
        Frames {
            template: (0..payload).map(|i| (i * 7 + 3) as u8).collect(),
            call_middle,
        }
    }

    /// A reply's frame length at most.
    fn max_len(&self) -> usize {
        4 + 1 + 8 + 1 + 1 + OK_NO_META.len() + 1 + self.template.len()
    }

    fn push_call(&self, out: &mut BytesMut, seq: i32) {
        let (text, len) = seq_text(seq);
        let size = 4 + 1 + 1 + len + self.call_middle.len() + self.template.len();
        let mut head = [0u8; 4 + 1 + 1 + 7];
        head[..4].copy_from_slice(&(size as u32).to_be_bytes());
        head[5] = len as u8;
        head[6..6 + len].copy_from_slice(&text[..len]);
        out.put_slice(&head[..6 + len]);
        out.put_slice(&self.call_middle);
        out.put_u64(seq as u64);
        out.put_slice(&self.template[8..]);
    }

    /// The whole reply at the front of `buf`: its length and seq, after
    /// checking it; `None` while incomplete.
    fn parse_reply(&self, buf: &[u8]) -> Result<Option<(usize, i32)>, String> {
        let Some(size) = buf.get(..4) else {
            return Ok(None);
        };
        let size = u32::from_be_bytes([size[0], size[1], size[2], size[3]]) as usize;
        if size > self.max_len() {
            return Err(format!(
                "a reply of {size} bytes, at most {} expected",
                self.max_len()
            ));
        }
        let Some(frame) = buf.get(4..size) else {
            return Ok(None);
        };
        let bad = |what: &str| format!("reply frame: {what}");
        let (&filters, rest) = frame.split_first().ok_or_else(|| bad("empty"))?;
        if filters != 0 {
            return Err(bad("transfer filters on a plain call's reply"));
        }
        let (&seq_len, rest) = rest.split_first().ok_or_else(|| bad("no seq"))?;
        let (seq, rest) = rest
            .split_at_checked(usize::from(seq_len))
            .ok_or_else(|| bad("seq overruns"))?;
        let seq = parse_seq36(seq).ok_or_else(|| bad("seq not base-36"))?;
        let [mtype, method_len, rest @ ..] = rest else {
            return Err(bad("truncated after the seq"));
        };
        if *mtype != REPLY || *method_len != 0 {
            return Err(bad("not a REPLY without a method"));
        }
        let rest = rest
            .strip_prefix(OK_NO_META)
            .ok_or_else(|| bad("status not code=0, or metadata"))?;
        let [codec, body @ ..] = rest else {
            return Err(bad("no body codec"));
        };
        let len = self.template.len();
        if *codec != PLAIN || body.len() != len {
            return Err(bad("not the plain body sent"));
        }
        if body[..8] != (seq as u64).to_be_bytes() || body[len - 1] != self.template[len - 1] {
            return Err(format!("reply #{seq}: another call's body, or corrupted"));
        }
        Ok(Some((size, seq)))
    }
}

impl Conn<Frames> {
    /// Keeps `depth` calls in flight: per wake-up, checks every reply
    /// read, sends one new call for each in one write.
    async fn drive(self, mut stream: TcpStream) -> Result<(), String> {
        let frames = &*self.frames;
        let mut out = BytesMut::with_capacity(self.depth * frames.max_len());
        let mut inbuf = BytesMut::new();
        // The seqs in flight: at most `depth`, searched linearly.
        let mut in_flight: Vec<i32> = Vec::with_capacity(self.depth);
        let mut next: i32 = 1;
        for _ in 0..self.depth {
            frames.push_call(&mut out, next);
            in_flight.push(next);
            next = next.wrapping_add(1).max(1);
        }
        while !self.stop.load(Ordering::Relaxed) {
            exchange(&mut stream, &mut out, &mut inbuf, frames.max_len()).await?;
            let mut got = 0;
            while let Some((len, seq)) = frames.parse_reply(&inbuf)? {
                inbuf.advance(len);
                let at = in_flight
                    .iter()
                    .position(|&s| s == seq)
                    .ok_or_else(|| format!("a reply to #{seq}, which is not in flight"))?;
                in_flight.swap_remove(at);
                got += 1;
                frames.push_call(&mut out, next);
                in_flight.push(next);
                next = next.wrapping_add(1).max(1);
            }
            if got > 0 {
                self.received.fetch_add(got, Ordering::Relaxed);
            }
        }
        Ok(())
    }
}
