//! [`HeartbeatPing`]: sends heartbeats on quiet sessions.

use std::{
    task::{Context, Poll},
    time::{Duration, Instant},
};

use bytes::Bytes;
use tower::{Layer, Service};

use super::{fit_cron_period, META_KEY, MIN_RATE, SERVICE_METHOD};
use crate::{
    rpc::{session::Conn, Message, MessageType, Meta, Status},
    Event, Request,
};

/// Sends a heartbeat on every session with no CALL or PUSH either way for
/// `rate` (erpc's `heartbeat.NewPing(rateSecond, useCall)`). A session
/// layer, on either side: add it with
/// [`PeerBuilder::session_layer`](crate::rpc::PeerBuilder::session_layer).
///
/// The heartbeat is a CALL (`use_call`) or a PUSH to `/heartbeat`, meta
/// `hb_=<rate in seconds>`, an empty body in the peer's default codec. A
/// heartbeat CALL that fails, whatever the status (a peer without
/// [`pong`](super::pong) answers 404), or that gets no reply within the
/// peer's [call timeout](crate::rpc::PeerBuilder::call_timeout), closes
/// the session, as does a PUSH that cannot be sent.
///
/// The check runs on the session's cron: on `Open` the cron period is made
/// at most `rate` and every `rate` the layer looks whether any CALL or PUSH
/// (other than heartbeats) went since its previous look.
///
/// ```
/// use getty::rpc::{plugin::heartbeat::HeartbeatPing, Peer};
/// use std::time::Duration;
///
/// let ping = HeartbeatPing::new(Duration::from_secs(1), false);
/// assert_eq!(ping.rate(), Duration::from_secs(3), "erpc's minimum");
/// let peer = Peer::builder().session_layer(ping).build();
/// # let _ = peer;
/// ```
#[derive(Debug, Clone, Copy)]
pub struct HeartbeatPing {
    rate: Duration,
    /// `rate` in whole seconds, rounded up: the `hb_` value.
    rate_secs: u64,
    use_call: bool,
}

impl HeartbeatPing {
    /// Heartbeats every `rate`, rounded up to whole seconds and raised to
    /// erpc's minimum of 3 s ([`MIN_RATE`]); CALLs when `use_call`, else
    /// PUSHes.
    pub fn new(rate: Duration, use_call: bool) -> HeartbeatPing {
        let secs = whole_secs(rate).max(MIN_RATE.as_secs());
        HeartbeatPing {
            rate: Duration::from_secs(secs),
            rate_secs: secs,
            use_call,
        }
    }

    /// Heartbeats every `rate` exactly, below erpc's minimum too (at least
    /// 1 ms): for tests and links where a dead peer must be found fast. The
    /// `hb_` sent is `rate` rounded up to whole seconds, at least 1, so an
    /// erpc pong expects no more than it gets.
    ///
    /// ```
    /// use getty::rpc::plugin::heartbeat::HeartbeatPing;
    /// use std::time::Duration;
    ///
    /// let ping = HeartbeatPing::with_any_rate(Duration::from_millis(200), true);
    /// assert_eq!(ping.rate(), Duration::from_millis(200));
    /// ```
    pub fn with_any_rate(rate: Duration, use_call: bool) -> HeartbeatPing {
        let rate = rate.max(Duration::from_millis(1));
        HeartbeatPing {
            rate,
            rate_secs: whole_secs(rate).max(1),
            use_call,
        }
    }

    /// How often quiet sessions are sent a heartbeat.
    pub fn rate(&self) -> Duration {
        self.rate
    }

    /// The heartbeat message, its seq still to be assigned.
    fn message(&self, conn: &Conn) -> Message {
        let mtype = if self.use_call {
            MessageType::Call
        } else {
            MessageType::Push
        };
        let mut meta = Meta::new();
        meta.set(META_KEY, self.rate_secs.to_string());
        Message::new(mtype, 0, SERVICE_METHOD)
            .with_meta(meta)
            .with_body(conn.peer.default_codec, Bytes::new())
    }
}

fn whole_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

impl<S> Layer<S> for HeartbeatPing {
    type Service = HeartbeatPingService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        HeartbeatPingService {
            inner,
            config: *self,
            checked: None,
            traffic: 0,
        }
    }
}

/// The service [`HeartbeatPing`] wraps a session's stack in.
///
/// ```
/// use getty::rpc::{plugin::heartbeat::{HeartbeatPing, HeartbeatPingService}, SessionStack};
/// use tower::Layer;
///
/// fn wrap(stack: SessionStack) -> HeartbeatPingService<SessionStack> {
///     HeartbeatPing::new(std::time::Duration::from_secs(5), true).layer(stack)
/// }
/// # let _ = wrap;
/// ```
#[derive(Debug)]
pub struct HeartbeatPingService<S> {
    inner: S,
    config: HeartbeatPing,
    /// When the session was last looked at (its opening, at first).
    checked: Option<Instant>,
    /// The connection's traffic count then.
    traffic: u64,
}

impl<S> HeartbeatPingService<S> {
    fn on_tick(&mut self, session: &crate::Session<Message>) {
        fit_cron_period(session, self.config.rate);
        let (Some(checked), Some(conn)) = (self.checked, Conn::of(session)) else {
            return;
        };
        let now = Instant::now();
        // Ticks may come more often than `rate` (a finer cron set by someone
        // else) and a little early or late: look once per `rate`, give or
        // take half a tick.
        let period = session.cron_period().unwrap_or(self.config.rate);
        if now.saturating_duration_since(checked) + period / 2 < self.config.rate {
            return;
        }
        self.checked = Some(now);
        let traffic = conn.traffic_count();
        if std::mem::replace(&mut self.traffic, traffic) != traffic || session.is_closed() {
            return;
        }
        let msg = self.config.message(&conn);
        let session = session.clone();
        let use_call = self.config.use_call;
        // The call waits for its reply, which this tick cannot do.
        tokio::spawn(async move {
            let sent = if use_call {
                let timeout = conn.peer.call_timeout;
                match conn.call(msg, timeout).await {
                    Ok(reply) if reply.status.is_ok() => Ok(()),
                    Ok(reply) => Err(reply.status),
                    Err(status) => Err(status),
                }
            } else {
                conn.push(msg).await
            };
            if let Err(status) = sent {
                heartbeat_failed(&session, &status);
            }
        });
    }
}

fn heartbeat_failed(session: &crate::Session<Message>, status: &Status) {
    if !session.is_closed() {
        session.close_with_error(format!("heartbeat failed: {status}"));
    }
}

impl<S> Service<Request<Message, Message>> for HeartbeatPingService<S>
where
    S: Service<Request<Message, Message>, Response = Option<Message>>,
{
    type Response = Option<Message>;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Message, Message>) -> Self::Future {
        match req.event {
            Event::Open => {
                fit_cron_period(&req.session, self.config.rate);
                self.checked = Some(Instant::now());
                // Traffic is counted from here on (see `Conn::traffic_count`).
                if let Some(conn) = Conn::of(&req.session) {
                    self.traffic = conn.traffic_count();
                }
            }
            Event::Tick => self.on_tick(&req.session),
            _ => {}
        }
        self.inner.call(req)
    }
}
