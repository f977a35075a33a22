//! Authentication, wire compatible with erpc's `plugin/auth` (SPEC §1.9):
//! [`AuthBearer`] on the dialing side sends an `AUTH_CALL` as each
//! connection opens, [`AuthChecker`] on the accepting side answers it with
//! an `AUTH_REPLY` and lets nothing else through before.
//!
//! ```no_run
//! use getty::rpc::{plugin::auth::{AuthBearer, AuthChecker}, Message, Peer, Router, Status};
//!
//! # async fn demo() -> Result<(), getty::BoxError> {
//! let checker = AuthChecker::new(|_: &getty::Session<Message>, token: String| {
//!     if token == "secret" { Ok("server-ok") } else { Err(Status::framework(Status::CODE_UNAUTHORIZED)) }
//! });
//! let server = Peer::builder().router(Router::new()).session_layer(checker).build();
//! let addr = server.listen("127.0.0.1:0").await?.local_addr();
//!
//! let client = Peer::builder().session_layer(AuthBearer::new("secret")).build();
//! let session = client.dial(addr.to_string()).await?;
//! # let _ = session;
//! # Ok(()) }
//! ```

mod bearer;
mod checker;
mod future;

use std::fmt;

pub use self::bearer::{AuthBearer, AuthBearerService};
pub use self::checker::{AuthChecker, AuthCheckerService};
pub use self::future::AuthFuture;
use crate::rpc::{MessageType, Status};

/// Why a dialed connection was closed by [`AuthBearer`]: the server
/// refused it, or answered with something other than an `AUTH_REPLY`. The
/// session's [`Event::Error`](crate::Event::Error) carries it.
///
/// ```
/// use getty::rpc::{plugin::auth::AuthRefused, Status};
///
/// let refused = AuthRefused::new(Status::framework_with(401, "bad token"));
/// assert_eq!(refused.status().code(), 401);
/// assert_eq!(refused.to_string(), "authentication refused: status 401: Unauthorized (bad token)");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthRefused {
    status: Status,
}

impl AuthRefused {
    /// A refusal with the status it came with.
    pub fn new(status: Status) -> AuthRefused {
        AuthRefused { status }
    }

    /// The status the server answered with (401 when it sent something
    /// other than an `AUTH_REPLY` first).
    pub fn status(&self) -> &Status {
        &self.status
    }
}

impl fmt::Display for AuthRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "authentication refused: {}", self.status)
    }
}

impl std::error::Error for AuthRefused {}

/// erpc's 401 for a first message of the wrong type.
fn unexpected(expected: &str, received: MessageType) -> Status {
    Status::framework_with(
        Status::CODE_UNAUTHORIZED,
        format!("auth message(1st) expect: {expected}, but received: {received}"),
    )
}
