//! [`pong`] and [`HeartbeatPong`]: answer heartbeats, close sessions that
//! stopped sending them.

use std::{
    task::{Context, Poll},
    time::{Duration, Instant},
};

use tower::{Layer, Service};

use super::{fit_cron_period, META_KEY, SERVICE_METHOD};
use crate::{
    rpc::{codec::Raw, session::Conn, CallCtx, Message, PushCtx, Router, Session, Status},
    Event, Request,
};

/// Routes CALLs and PUSHes to `/heartbeat` in `router` (erpc's
/// `heartbeat.NewPong()` routes): a CALL is answered OK with json `null`.
/// The first heartbeat of a session sets the rate it is held to from its
/// `hb_` (an invalid one is answered 400 "Invalid Heartbeat Rate"); a later
/// one may change it. Add [`HeartbeatPong`] as a session layer too, or
/// silent sessions are never closed.
///
/// ```
/// use getty::rpc::{plugin::heartbeat, Router};
///
/// let router = heartbeat::pong(Router::new());
/// assert!(router.has_call("/heartbeat") && router.has_push("/heartbeat"));
/// ```
pub fn pong(router: Router) -> Router {
    router
        .call(SERVICE_METHOD, pong_call)
        .push(SERVICE_METHOD, pong_push)
}

async fn pong_call(ctx: CallCtx, _: Raw) -> Result<(), Status> {
    beat(ctx.session(), ctx.peek_meta(META_KEY))
}

async fn pong_push(ctx: PushCtx, _: Raw) -> Result<(), Status> {
    beat(ctx.session(), ctx.peek_meta(META_KEY))
}

/// What a session's heartbeats have told: the rate it keeps and when the
/// last one came.
#[derive(Debug, Clone, Copy)]
struct Beating {
    rate: Duration,
    last: Instant,
}

/// What an `hb_` value asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RateChange {
    /// None given (or 0): keep the rate.
    Keep,
    /// A rate in whole seconds.
    Set(Duration),
    /// Not a number of seconds.
    Invalid,
}

fn parse_rate(hb: Option<&str>) -> RateChange {
    match hb.filter(|v| !v.is_empty()).map(str::parse::<u64>) {
        None | Some(Ok(0)) => RateChange::Keep,
        Some(Ok(secs)) => RateChange::Set(Duration::from_secs(secs)),
        Some(Err(_)) => RateChange::Invalid,
    }
}

/// One heartbeat on `session` (erpc's `handelHeartbeat`).
fn beat(session: &Session, hb: Option<&str>) -> Result<(), Status> {
    let Some(core) = session.inner() else {
        return Ok(());
    };
    let change = parse_rate(hb);
    let now = Instant::now();
    let known = core.with_attribute(|beating: Option<&mut Beating>| match beating {
        Some(beating) => {
            if let RateChange::Set(rate) = change {
                beating.rate = rate;
            }
            beating.last = now;
            true
        }
        None => false,
    });
    match (known, change) {
        (true, RateChange::Set(rate)) => fit_cron_period(&core, rate),
        (true, _) | (false, RateChange::Keep) => {}
        (false, RateChange::Set(rate)) => {
            core.set_attribute(Beating { rate, last: now });
            fit_cron_period(&core, rate);
        }
        (false, RateChange::Invalid) => {
            return Err(
                Status::new(Status::CODE_BAD_MESSAGE, "Invalid Heartbeat Rate")
                    .with_cause(hb.unwrap_or_default().to_owned()),
            );
        }
    }
    Ok(())
}

/// Closes a session that sent a heartbeat, then nothing (no heartbeat, no
/// CALL or PUSH either way) for twice its rate. A session layer: add it
/// with [`PeerBuilder::session_layer`](crate::rpc::PeerBuilder::session_layer),
/// with [`pong`]'s routes in the router. Sessions that never sent a
/// heartbeat are left alone, as erpc does.
///
/// It works on the session's cron: the first heartbeat makes the period at
/// most the rate (it is unknown before), and each tick looks how long the
/// session has been silent, so a silent one closes between two and three
/// rates after its last heartbeat. CALLs and PUSHes are counted rather
/// than timed (a clock read per message cost more than the rest of noting
/// it), and seen at the next tick: up to one rate more after the last of
/// those.
///
/// ```
/// use getty::rpc::{plugin::heartbeat::{self, HeartbeatPong}, Peer, Router};
///
/// let server = Peer::builder()
///     .router(heartbeat::pong(Router::new()))
///     .session_layer(HeartbeatPong::new())
///     .build();
/// # let _ = server;
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct HeartbeatPong {
    _private: (),
}

impl HeartbeatPong {
    /// The layer.
    pub fn new() -> HeartbeatPong {
        HeartbeatPong::default()
    }
}

impl<S> Layer<S> for HeartbeatPong {
    type Service = HeartbeatPongService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        HeartbeatPongService {
            inner,
            traffic: (0, None),
        }
    }
}

/// The service [`HeartbeatPong`] wraps a session's stack in.
///
/// ```
/// use getty::rpc::{plugin::heartbeat::{HeartbeatPong, HeartbeatPongService}, SessionStack};
/// use tower::Layer;
///
/// fn wrap(stack: SessionStack) -> HeartbeatPongService<SessionStack> {
///     HeartbeatPong::new().layer(stack)
/// }
/// # let _ = wrap;
/// ```
#[derive(Debug)]
pub struct HeartbeatPongService<S> {
    inner: S,
    /// The connection's traffic count at the last tick, and the tick that
    /// first saw it (none while it is 0).
    traffic: (u64, Option<Instant>),
}

impl<S> HeartbeatPongService<S> {
    fn on_tick(&mut self, session: &crate::Session<Message>) {
        let (Some(beating), Some(conn)) = (session.attribute::<Beating>(), Conn::of(session))
        else {
            return;
        };
        let now = Instant::now();
        // Traffic is counted, not timed: a change of the count is taken
        // for traffic at this tick, the first that can see it.
        let count = conn.traffic_count();
        if count != self.traffic.0 {
            self.traffic = (count, Some(now));
        }
        let last = self.traffic.1.map_or(beating.last, |t| t.max(beating.last));
        let silent = now.saturating_duration_since(last);
        if silent > beating.rate * 2 && !session.is_closed() {
            session.close_with_error(format!(
                "no heartbeat nor traffic for {silent:.1?} (heartbeat rate {:?})",
                beating.rate
            ));
        }
    }
}

impl<S> Service<Request<Message, Message>> for HeartbeatPongService<S>
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
            Event::Tick => self.on_tick(&req.session),
            // Traffic is counted from here on (see `Conn::traffic_count`).
            Event::Open => {
                if let Some(conn) = Conn::of(&req.session) {
                    self.traffic.0 = conn.traffic_count();
                }
            }
            _ => {}
        }
        self.inner.call(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_as_erpc_does() {
        assert_eq!(parse_rate(None), RateChange::Keep);
        assert_eq!(parse_rate(Some("")), RateChange::Keep);
        assert_eq!(parse_rate(Some("0")), RateChange::Keep);
        assert_eq!(
            parse_rate(Some("3")),
            RateChange::Set(Duration::from_secs(3))
        );
        assert_eq!(parse_rate(Some("-1")), RateChange::Invalid);
        assert_eq!(parse_rate(Some("x")), RateChange::Invalid);
    }
}
