//! [`Balanced`]: calls spread over several servers by `tower::balance::p2c`.

use std::{
    fmt,
    task::{Context, Poll},
};

use tower::{
    balance::p2c::Balance,
    discover::ServiceList,
    load::{CompleteOnResponse, PendingRequests},
    Service,
};

use super::{Call, Channel};
use crate::{
    rpc::{Message, Peer, Status},
    BoxError,
};

type Inner = Balance<ServiceList<Vec<PendingRequests<Channel>>>, Call>;

/// A client over a static list of servers: each address is dialed and
/// redials on its own, and every call goes to the less loaded of two
/// servers picked at random (tower's power-of-two-choices balancer over
/// each channel's calls in flight). A server whose session is down is
/// not ready, so calls go to the others.
///
/// ```no_run
/// use getty::rpc::{codec::CodecId, Balanced, Call, Peer};
/// use tower::{Service, ServiceExt};
///
/// # async fn demo() -> Result<(), getty::BoxError> {
/// let peer = Peer::builder().build();
/// let mut client = Balanced::dial(&peer, ["127.0.0.1:9001", "127.0.0.1:9002"]).await?;
/// let reply = client.ready().await?.call(Call::new("/home/echo", CodecId::PLAIN, "hi")).await?;
/// # Ok(()) }
/// ```
pub struct Balanced {
    inner: Inner,
}

impl fmt::Debug for Balanced {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Balanced").finish_non_exhaustive()
    }
}

impl Balanced {
    /// Balances over channels you made.
    pub fn new(channels: impl IntoIterator<Item = Channel>) -> Balanced {
        let services: Vec<_> = channels
            .into_iter()
            .map(|c| PendingRequests::new(c, CompleteOnResponse::default()))
            .collect();
        Balanced {
            inner: Balance::new(ServiceList::new(services)),
        }
    }

    /// Dials every address with `peer` and balances over them.
    ///
    /// # Errors
    /// Status 105 when an address cannot be dialed at first.
    pub async fn dial<I, A>(peer: &Peer, addrs: I) -> Result<Balanced, Status>
    where
        I: IntoIterator<Item = A>,
        A: Into<String>,
    {
        let mut channels = Vec::new();
        for addr in addrs {
            channels.push(Channel::new(peer.dial(addr).await?));
        }
        Ok(Balanced::new(channels))
    }
}

impl Service<Call> for Balanced {
    type Response = Message;
    type Error = BoxError;
    type Future = <Inner as Service<Call>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, call: Call) -> Self::Future {
        self.inner.call(call)
    }
}
