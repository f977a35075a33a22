//! [`Handshake`]: whether a connection is ready for calls, for plugins that
//! talk first (erpc's auth) and for [`Peer::dial`](crate::rpc::Peer::dial),
//! which waits for them.

use std::time::Duration;

use tokio::sync::watch;

use crate::rpc::Status;

/// Where a connection's opening exchange stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HandshakeState {
    /// Nothing to wait for: no plugin talks first, or it finished well.
    Ready,
    /// A plugin has spoken first and waits for the peer's answer.
    InProgress,
    /// The exchange failed; the connection is closing.
    Failed(Status),
}

/// A connection's handshake: plugins move it, the dialer waits on it.
#[derive(Debug)]
pub(crate) struct Handshake(watch::Sender<HandshakeState>);

impl Default for Handshake {
    fn default() -> Handshake {
        Handshake(watch::Sender::new(HandshakeState::Ready))
    }
}

impl Handshake {
    /// A plugin started talking first: calls should wait until it is done.
    pub(crate) fn begin(&self) {
        self.0.send_replace(HandshakeState::InProgress);
    }

    /// The plugin's exchange ended, well or not.
    pub(crate) fn finish(&self, outcome: Result<(), Status>) {
        self.0.send_replace(match outcome {
            Ok(()) => HandshakeState::Ready,
            Err(status) => HandshakeState::Failed(status),
        });
    }

    /// The connection ended: an exchange still in progress failed with `why`.
    pub(crate) fn abandon(&self, why: &Status) {
        self.0.send_if_modified(|state| {
            if *state == HandshakeState::InProgress {
                *state = HandshakeState::Failed(why.clone());
                true
            } else {
                false
            }
        });
    }

    /// Whether the exchange failed (an auth refusal, say).
    pub(crate) fn failed(&self) -> bool {
        matches!(*self.0.borrow(), HandshakeState::Failed(_))
    }

    /// A handle to wait on from elsewhere (the handshake itself lives as
    /// long as its connection).
    pub(crate) fn watch(&self) -> watch::Receiver<HandshakeState> {
        self.0.subscribe()
    }
}

/// Waits until the handshake `rx` watches is over, at most `limit`.
///
/// # Errors
/// The status it failed with; 105 (Dial Failed) when it took too long.
pub(crate) async fn handshaken(
    mut rx: watch::Receiver<HandshakeState>,
    limit: Duration,
) -> Result<(), Status> {
    let over = tokio::time::timeout(
        limit,
        rx.wait_for(|state| *state != HandshakeState::InProgress),
    )
    .await;
    match over {
        Err(_) => Err(Status::framework_with(
            Status::CODE_DIAL_FAILED,
            format!("the session's handshake took longer than {limit:?}"),
        )),
        // The sender lives in the connection: gone means the connection is.
        Ok(Err(_)) => Err(Status::framework_with(
            Status::CODE_CONN_CLOSED,
            "the session closed during its handshake",
        )),
        Ok(Ok(state)) => match &*state {
            HandshakeState::Failed(status) => Err(status.clone()),
            _ => Ok(()),
        },
    }
}
