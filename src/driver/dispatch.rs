//! Dispatch: which event goes next, and the loop that collects finished
//! calls and starts new ones.

use std::{
    panic::{catch_unwind, AssertUnwindSafe},
    pin::Pin,
    task::{Context, Poll},
};

use tokio_util::codec::{Decoder, Encoder};
use tower::Service;

use super::{
    call::{self, Call, Kind},
    conn::{CallOf, Conn, Open, Phase, Stage},
    pipeline::Pipeline,
    write::Guard,
};
use crate::{transport::Transport, BoxError, Error, Event, Request};

/// Events started in one pass of dispatch.
const PUMP: usize = 64;

/// How choosing and starting the next event went.
enum Step {
    /// Nothing to start now (no input, the service not ready, `Open` in
    /// flight).
    Stop,
    /// The service can take no more events.
    ServiceDead,
    /// A call started and is in flight.
    Started,
    /// A call started and finished at once (its response is written), or
    /// the event failed at once (a panic in the codec or in `call`),
    /// already handled.
    Done,
}

impl<T, C, R, W> Conn<T, C, R, W>
where
    T: Transport,
    C: Decoder<Item = R> + Encoder<W, Error = <C as Decoder>::Error>,
    <C as Decoder>::Error: Into<BoxError>,
{
    /// Collects finished calls and starts new ones while there is room in
    /// flight and something to handle. Finishing and starting alternate
    /// without leaving this loop, so a batch of packets handled by a ready
    /// service costs one pass of the outer loop, not one per packet.
    pub(super) fn dispatch<S>(
        &mut self,
        cx: &mut Context<'_>,
        svc: &mut S,
        mut calls: Pin<&mut Pipeline<CallOf<S, R, W>>>,
    ) -> bool
    where
        S: Service<Request<R, W>>,
        S::Response: IntoIterator<Item = W>,
        S::Error: Into<BoxError>,
    {
        let mut progress = false;
        for _ in 0..PUMP {
            // Finished calls first, in start order: their responses go out.
            // (Looking first whether any is in flight saves a call per
            // packet when the service answers at once.)
            while !calls.is_empty() {
                let Poll::Ready(Some((kind, result))) = calls.as_mut().poll_next(cx) else {
                    break;
                };
                progress = true;
                self.finished(kind, result, Guard::Own);
            }
            // What the finished calls raised or closed takes effect before
            // the next packet is read.
            self.absorb_raised();
            self.drain_if_closed();
            if calls.len() >= self.max_in_flight {
                break;
            }
            // The next event's choice (reading and decoding a packet if
            // needed), `poll_ready`, `call`, and for a call that answers at
            // once its response's encoding, under one `catch_unwind`: the
            // user code in them is told apart by `stage`. One guard per
            // event rather than one per step: each is an indirect call and
            // a copy of the result, measurable per packet.
            self.stage = Stage::Ours;
            let step = catch_unwind(AssertUnwindSafe(|| self.next_call(cx, svc, calls.as_mut())))
                .unwrap_or_else(|payload| self.step_panicked(payload, calls.as_mut()));
            match step {
                Step::Stop => break,
                Step::ServiceDead => return true,
                Step::Started | Step::Done => {}
            }
            progress = true;
        }
        self.settle_budget();
        self.flush_counts();
        progress
    }

    /// Chooses the next event and starts its call: see `dispatch`. A call
    /// that goes into the pipeline's inline slot is polled there at once:
    /// most services answer on the first poll, and their response is then
    /// written without another pass through the pipeline.
    fn next_call<S>(
        &mut self,
        cx: &mut Context<'_>,
        svc: &mut S,
        mut calls: Pin<&mut Pipeline<CallOf<S, R, W>>>,
    ) -> Step
    where
        S: Service<Request<R, W>>,
        S::Response: IntoIterator<Item = W>,
        S::Error: Into<BoxError>,
    {
        let kind = match self.open {
            Open::Waiting => Kind::Open,
            // Nothing else starts before `Open` answers.
            Open::InFlight | Open::Refused => return Step::Stop,
            Open::Accepted => match self.next_kind(cx) {
                Some(kind) => kind,
                None => return Step::Stop,
            },
        };
        self.stage = Stage::Ready;
        match svc.poll_ready(cx) {
            Poll::Pending => return Step::Stop,
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(e)) => {
                return self.service_failed(Error::Handler { source: e.into() });
            }
        }
        self.stage = Stage::Ours;
        let Some(event) = self.take_event(kind) else {
            return Step::Stop;
        };
        self.stage = Stage::Call(kind);
        let fut = svc.call(Request::new(self.session.clone(), event));
        self.stage = Stage::Ours;
        if !calls
            .as_mut()
            .push(Call::new(fut, kind), self.session.ordered_responses())
        {
            return Step::Started;
        }
        self.stage = Stage::Poll(kind);
        let polled = calls.poll_one(cx);
        self.stage = Stage::Ours;
        match polled {
            Poll::Pending => Step::Started,
            Poll::Ready((kind, result)) => {
                self.finished(kind, result, Guard::Caller);
                Step::Done
            }
        }
    }

    /// A call finished: its response is written, or its failure handled.
    fn finished<P>(&mut self, kind: Kind, result: Result<P, Error>, guard: Guard)
    where
        P: IntoIterator<Item = W>,
    {
        match result {
            Ok(response) => {
                if kind == Kind::Open {
                    self.opened();
                }
                self.respond(response, guard);
            }
            Err(e) => self.handler_failed(kind, e),
        }
    }

    /// What a panic in `next_call` means, by where it happened.
    fn step_panicked<F>(
        &mut self,
        payload: Box<dyn std::any::Any + Send>,
        calls: Pin<&mut Pipeline<F>>,
    ) -> Step
    where
        F: std::future::Future,
    {
        match std::mem::replace(&mut self.stage, Stage::Ours) {
            Stage::Decode => {
                let message = crate::error::panic_message(&*payload);
                self.codec_failed(format!("codec panicked: {message}"));
                Step::Done
            }
            Stage::Ready => self.service_failed(call::panicked(payload)),
            Stage::Call(kind) => {
                self.handler_failed(kind, call::panicked(payload));
                Step::Done
            }
            Stage::Poll(kind) => {
                // The call panicked in its first poll: it is not polled again.
                calls.clear_one();
                self.handler_failed(kind, call::panicked(payload));
                Step::Done
            }
            Stage::Encode { before } => {
                // Whatever the encoder wrote before panicking must not go
                // out: on a message transport it would shift every later
                // message.
                self.wbuf.truncate(before);
                let message = crate::error::panic_message(&*payload);
                self.codec_failed(format!("codec panicked: {message}"));
                Step::Done
            }
            // Our own code: the driver's own guard (`run_contained`) takes it.
            Stage::Ours => std::panic::resume_unwind(payload),
        }
    }

    /// `poll_ready` failed or panicked: the service can take no more events.
    fn service_failed(&mut self, error: Error) -> Step {
        tracing::error!(%error, "service cannot take events; session abandoned");
        self.service_dead = true;
        Step::ServiceDead
    }

    /// `Open` answered: the session runs (unless it is already closing).
    fn opened(&mut self) {
        self.open = Open::Accepted;
        if self.phase == Phase::Opening {
            self.phase = Phase::Running;
        }
        tracing::debug!("session open");
    }

    /// Which event goes next, reading a packet if none is waiting: the
    /// failure first, then reported errors and packets taking turns, then
    /// a due tick.
    fn next_kind(&mut self, cx: &mut Context<'_>) -> Option<Kind> {
        if self.failure.is_some() {
            return Some(Kind::Error);
        }
        if !self.reported.is_empty() && !self.after_report {
            return Some(Kind::Error);
        }
        if self.pending_msg.is_none() && !self.pending_tick {
            self.pending_msg = self.next_message(cx);
        }
        if self.failure.is_some() {
            return Some(Kind::Error);
        }
        if self.pending_tick {
            Some(Kind::Tick)
        } else if self.pending_msg.is_some() {
            Some(Kind::Message)
        } else if !self.reported.is_empty() {
            Some(Kind::Error)
        } else {
            None
        }
    }

    fn take_event(&mut self, kind: Kind) -> Option<Event<R>> {
        self.after_report = false;
        match kind {
            Kind::Open => {
                self.open = Open::InFlight;
                Some(Event::Open)
            }
            Kind::Error => match self.failure.take() {
                Some(failure) => Some(Event::Error(failure)),
                None => {
                    self.after_report = true;
                    self.reported.pop_front().map(Event::Error)
                }
            },
            Kind::Tick => {
                self.pending_tick = false;
                if self.pending_msg.is_some() || !self.rbuf.is_empty() {
                    // Input is waiting because our own stack holds it
                    // back (a rate limit, a full pool): the peer is not
                    // idle, so a heartbeat must not take it for idle.
                    self.session.update_active();
                }
                Some(Event::Tick)
            }
            Kind::Message => self.pending_msg.take().map(Event::Message),
            Kind::Close => None,
        }
    }

    /// Takes the errors raised with `Session::report_error` and
    /// `close_with_error` into the event order.
    fn absorb_raised(&mut self) {
        // Looked at after every event: the common case, nothing raised, is
        // one inlined load (an empty `Vec`'s iterator is not free).
        if !self.session.has_raised() {
            return;
        }
        for (error, fatal) in self.session.take_raised() {
            if fatal {
                self.fail(error);
            } else {
                tracing::debug!(%error, "error reported");
                self.reported.push_back(error);
            }
        }
    }

    fn handler_failed(&mut self, kind: Kind, error: Error) {
        match kind {
            Kind::Open => {
                tracing::info!(%error, "session refused on open");
                self.open = Open::Refused;
                self.begin_drain();
            }
            Kind::Error | Kind::Close => {
                tracing::warn!(event = kind.name(), %error, "service failed handling the event")
            }
            Kind::Message | Kind::Tick => self.fail(error),
        }
    }
}
