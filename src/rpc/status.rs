//! [`Status`]: how a call went, erpc's `*Status`.

use std::{borrow::Cow, fmt, fmt::Write as _};

use bytes::BytesMut;

use super::escape;

/// How a call went: a code (0 is OK), a message and an optional cause,
/// teleport's `*Status`. A handler returns one as its error; a caller gets
/// one when a call fails, whether the peer answered with it or it was made
/// locally (the session closed, the call timed out).
///
/// On the wire it is `code=<n>&msg=<escaped>&cause=<escaped>`, `msg` left
/// out when empty and `cause` when absent. erpc's own codes are constants
/// here; custom codes should be above 1000.
///
/// ```
/// use getty::rpc::Status;
///
/// let st = Status::new(1234, "home fail").with_cause("requested failure: ü");
/// assert_eq!(st.code(), 1234);
/// assert!(!st.is_ok());
/// assert_eq!(st.to_string(), "status 1234: home fail (requested failure: ü)");
/// assert_eq!(Status::parse(st.to_query().as_bytes()), st);
/// assert_eq!(Status::OK.to_query(), "code=0");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Status {
    code: i32,
    /// The message and cause; `None` when the message is empty and there
    /// is no cause (every OK status). Boxed: a [`Message`](super::Message)
    /// carries a status, and a message is moved several times on its way
    /// through a call; inline, the two texts made each move 40 bytes longer.
    text: Option<Box<Text>>,
}

#[derive(Clone, PartialEq, Eq)]
struct Text {
    msg: Cow<'static, str>,
    cause: Option<Cow<'static, str>>,
}

impl Status {
    /// OK: code 0, no message.
    pub const OK: Status = Status {
        code: 0,
        text: None,
    };
    /// -1: an unknown error.
    pub const CODE_UNKNOWN_ERROR: i32 = -1;
    /// 1: an operation not allowed here (a local error).
    pub const CODE_INVALID_OPERATION: i32 = 1;
    /// 100: the connection cannot serve this (a local error).
    pub const CODE_WRONG_CONN: i32 = 100;
    /// 102: the session closed before the call completed (a local error).
    pub const CODE_CONN_CLOSED: i32 = 102;
    /// 104: the message could not be written (a local error).
    pub const CODE_WRITE_FAILED: i32 = 104;
    /// 105: dialing the peer failed (a local error).
    pub const CODE_DIAL_FAILED: i32 = 105;
    /// 400: the message could not be decoded, or it named no service method.
    pub const CODE_BAD_MESSAGE: i32 = 400;
    /// 401: the peer refused the session's authentication.
    pub const CODE_UNAUTHORIZED: i32 = 401;
    /// 404: no route for the service method.
    pub const CODE_NOT_FOUND: i32 = 404;
    /// 405: a message type the receiver does not take.
    pub const CODE_MTYPE_NOT_ALLOWED: i32 = 405;
    /// 408: the call did not complete in time (the caller's timeout here;
    /// erpc v6 defines it without using it).
    pub const CODE_HANDLE_TIMEOUT: i32 = 408;
    /// 500: the handler failed (panicked) or its reply could not be made.
    pub const CODE_INTERNAL_SERVER_ERROR: i32 = 500;
    /// 502: a proxy could not reach its upstream.
    pub const CODE_BAD_GATEWAY: i32 = 502;

    /// A status with a code and a message, without a cause.
    ///
    /// ```
    /// let st = getty::rpc::Status::new(1234, "home fail");
    /// assert_eq!((st.code(), st.msg(), st.cause()), (1234, "home fail", None));
    /// ```
    pub fn new(code: i32, msg: impl Into<Cow<'static, str>>) -> Status {
        Status::with_text(code, msg.into(), None)
    }

    /// Keeps `text` `None` exactly when there is no text, so equal
    /// statuses compare equal however they were made.
    fn with_text(code: i32, msg: Cow<'static, str>, cause: Option<Cow<'static, str>>) -> Status {
        let text = (!msg.is_empty() || cause.is_some()).then(|| Box::new(Text { msg, cause }));
        Status { code, text }
    }

    /// One of erpc's own codes with erpc's text for it and an empty cause,
    /// as erpc writes its own statuses (`code=404&msg=Not%20Found&cause=`).
    ///
    /// ```
    /// use getty::rpc::Status;
    /// let st = Status::framework(Status::CODE_NOT_FOUND);
    /// assert_eq!(st.to_query(), "code=404&msg=Not%20Found&cause=");
    /// ```
    pub fn framework(code: i32) -> Status {
        Status::new(code, code_text(code)).with_cause("")
    }

    /// erpc's own status for `code` with `cause` (for example 400 and the
    /// decoder's error).
    ///
    /// ```
    /// use getty::rpc::Status;
    /// let st = Status::framework_with(Status::CODE_BAD_MESSAGE, "unsupported codec id: 122");
    /// assert_eq!(st.to_query(), "code=400&msg=Bad%20Message&cause=unsupported%20codec%20id%3A%20122");
    /// ```
    pub fn framework_with(code: i32, cause: impl Into<Cow<'static, str>>) -> Status {
        Status::new(code, code_text(code)).with_cause(cause)
    }

    /// The same status with a cause.
    pub fn with_cause(mut self, cause: impl Into<Cow<'static, str>>) -> Status {
        let cause = Some(cause.into());
        match &mut self.text {
            Some(text) => text.cause = cause,
            None => {
                self.text = Some(Box::new(Text {
                    msg: Cow::Borrowed(""),
                    cause,
                }))
            }
        }
        self
    }

    /// The code: 0 is OK.
    pub fn code(&self) -> i32 {
        self.code
    }

    /// The message as sent (may be empty).
    pub fn msg(&self) -> &str {
        self.text.as_deref().map_or("", |t| &t.msg)
    }

    /// The cause, when one was given.
    pub fn cause(&self) -> Option<&str> {
        self.text.as_deref().and_then(|t| t.cause.as_deref())
    }

    /// Whether the code is 0.
    pub fn is_ok(&self) -> bool {
        self.code == 0
    }

    /// The status as erpc's query text.
    pub fn to_query(&self) -> String {
        let mut dst = BytesMut::new();
        self.encode(&mut dst);
        String::from_utf8_lossy(&dst).into_owned()
    }

    /// Appends the status's query text to `dst`.
    pub(crate) fn encode(&self, dst: &mut BytesMut) {
        dst.extend_from_slice(b"code=");
        if self.code == 0 {
            dst.extend_from_slice(b"0");
        } else {
            // Writing to a BytesMut cannot fail.
            let _ = write!(dst, "{}", self.code);
        }
        if !self.msg().is_empty() {
            dst.extend_from_slice(b"&msg=");
            escape::put_escaped(dst, self.msg());
        }
        if let Some(cause) = self.cause() {
            dst.extend_from_slice(b"&cause=");
            escape::put_escaped(dst, cause);
        }
    }

    /// Parses erpc's query text. It never fails, as erpc's parser does not:
    /// an empty text is OK, a code that is not a number is 0, unknown keys
    /// are ignored and only the first of each key counts.
    ///
    /// ```
    /// use getty::rpc::Status;
    /// let st = Status::parse(b"code=404&msg=Not%20Found&cause=&msg=ignored");
    /// assert_eq!((st.code(), st.msg(), st.cause()), (404, "Not Found", Some("")));
    /// assert!(Status::parse(b"").is_ok());
    /// ```
    pub fn parse(src: &[u8]) -> Status {
        if src == b"code=0" || src.is_empty() {
            return Status::OK;
        }
        let (mut code, mut msg, mut cause) = (None, None, None);
        for (k, v) in escape::pairs(src) {
            match &*k {
                "code" if code.is_none() => code = Some(v.trim().parse::<i32>().unwrap_or(0)),
                "msg" if msg.is_none() => msg = Some(v.into_owned()),
                "cause" if cause.is_none() => cause = Some(v.into_owned()),
                _ => {}
            }
        }
        Status::with_text(
            code.unwrap_or(0),
            msg.map(Cow::Owned).unwrap_or(Cow::Borrowed("")),
            cause.map(Cow::Owned),
        )
    }
}

/// erpc's text for its own codes.
fn code_text(code: i32) -> &'static str {
    match code {
        0 => "",
        Status::CODE_INVALID_OPERATION => "Invalid Operation",
        Status::CODE_WRONG_CONN => "Wrong Connection",
        Status::CODE_CONN_CLOSED => "Connection Closed",
        Status::CODE_WRITE_FAILED => "Write Failed",
        Status::CODE_DIAL_FAILED => "Dial Failed",
        Status::CODE_BAD_MESSAGE => "Bad Message",
        Status::CODE_UNAUTHORIZED => "Unauthorized",
        Status::CODE_NOT_FOUND => "Not Found",
        Status::CODE_MTYPE_NOT_ALLOWED => "Message Type Not Allowed",
        Status::CODE_HANDLE_TIMEOUT => "Handle Timeout",
        Status::CODE_INTERNAL_SERVER_ERROR => "Internal Server Error",
        Status::CODE_BAD_GATEWAY => "Bad Gateway",
        _ => "Unknown Error",
    }
}

impl Default for Status {
    fn default() -> Status {
        Status::OK
    }
}

impl fmt::Debug for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Status");
        d.field("code", &self.code).field("msg", &self.msg());
        if let Some(cause) = self.cause() {
            d.field("cause", &cause);
        }
        d.finish()
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "status {}", self.code)?;
        let msg = self.msg();
        if !msg.is_empty() {
            write!(f, ": {msg}")?;
        }
        match self.cause() {
            Some(cause) if !cause.is_empty() && cause != msg => write!(f, " ({cause})"),
            _ => Ok(()),
        }
    }
}

impl std::error::Error for Status {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_the_golden_error_status_byte_for_byte() {
        let st = Status::new(1234, "home fail").with_cause("requested failure: ü");
        assert_eq!(
            st.to_query(),
            "code=1234&msg=home%20fail&cause=requested%20failure%3A%20%C3%BC"
        );
    }

    #[test]
    fn statuses_with_the_same_fields_are_equal_however_made() {
        assert_eq!(Status::new(0, ""), Status::OK);
        assert_eq!(Status::parse(b"code=0&msg="), Status::OK);
        assert_eq!(
            Status::new(7, "").with_cause("c"),
            Status::parse(b"code=7&cause=c")
        );
        assert_ne!(Status::new(7, ""), Status::new(7, "").with_cause(""));
        assert_eq!(Status::new(7, "m").with_cause("c").msg(), "m");
    }

    #[test]
    fn a_code_that_is_not_a_number_parses_as_zero() {
        assert_eq!(Status::parse(b"code=abc&msg=x").code(), 0);
        assert_eq!(Status::parse(b"code=-7").code(), -7);
    }
}
