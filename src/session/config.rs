use std::time::Duration;

/// Per-session settings: getty's session setters (`SetMaxMsgLen`,
/// `SetReadTimeout`, `SetWriteTimeout`, `SetCronPeriod`, `SetWaitTime`) as one
/// value a server or client gives every new session.
///
/// Each setting can still be changed on a live [`Session`](crate::Session);
/// `max_in_flight` and `queue_capacity` are fixed once the session runs.
///
/// ```
/// use getty::SessionConfig;
/// use std::time::Duration;
///
/// let config = SessionConfig::default()
///     .max_packet_len(64 * 1024)
///     .read_timeout(Some(Duration::from_secs(30)))
///     .cron_period(Some(Duration::from_secs(5)));
/// assert_eq!(config.max_packet_len, 64 * 1024);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SessionConfig {
    /// The largest packet accepted, in bytes (getty's `MaxMsgLen`).
    /// Default 1 MiB.
    pub max_packet_len: usize,
    /// Close the session when nothing is received for this long.
    /// Default `None` (no limit).
    pub read_timeout: Option<Duration>,
    /// Close the session when queued bytes cannot be written for this long.
    /// Default 30 s.
    pub write_timeout: Option<Duration>,
    /// Fire [`Event::Tick`](crate::Event::Tick) this often (getty's cron
    /// period, `OnCron`). Default `None`.
    pub cron_period: Option<Duration>,
    /// How long a closing session may spend finishing in-flight requests and
    /// writing what is queued before the socket is closed. Default 3 s.
    pub wait_time: Duration,
    /// How many events may be in the service at once. `1` (the default)
    /// handles events one after another, as getty does; more pipelines them,
    /// with responses still written in request order.
    pub max_in_flight: usize,
    /// Room in the outbound queue, in packets. Default 1024; at least 1 and
    /// at most [`MAX_QUEUE_CAPACITY`](SessionConfig::MAX_QUEUE_CAPACITY) (a
    /// larger value, such as `usize::MAX` for "unbounded", is clamped to it).
    pub queue_capacity: usize,
    /// With more than one event in flight, whether responses leave in
    /// request order (`true`, the default: getty's behaviour) or each as
    /// soon as its call completes (`false`: one slow call does not hold
    /// back the others' replies; for protocols whose replies carry an id).
    pub ordered_responses: bool,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            max_packet_len: 1024 * 1024,
            read_timeout: None,
            write_timeout: Some(Duration::from_secs(30)),
            cron_period: None,
            wait_time: Duration::from_secs(3),
            max_in_flight: 1,
            queue_capacity: 1024,
            ordered_responses: true,
        }
    }
}

impl SessionConfig {
    /// The largest [`queue_capacity`](SessionConfig::queue_capacity):
    /// `usize::MAX >> 3`, what the queue's semaphore can count (tokio's
    /// `Semaphore::MAX_PERMITS`). Far more packets than memory can hold, so
    /// in effect unbounded.
    ///
    /// ```
    /// use getty::SessionConfig;
    ///
    /// let config = SessionConfig::default().queue_capacity(usize::MAX);
    /// assert_eq!(config.queue_capacity, SessionConfig::MAX_QUEUE_CAPACITY);
    /// assert_eq!(SessionConfig::default().queue_capacity(0).queue_capacity, 1);
    /// ```
    pub const MAX_QUEUE_CAPACITY: usize = tokio::sync::Semaphore::MAX_PERMITS;

    /// Sets [`queue_capacity`](SessionConfig::queue_capacity), clamped to
    /// `1..=`[`MAX_QUEUE_CAPACITY`](SessionConfig::MAX_QUEUE_CAPACITY).
    ///
    /// ```
    /// use getty::SessionConfig;
    ///
    /// assert_eq!(SessionConfig::default().queue_capacity(64).queue_capacity, 64);
    /// ```
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.queue_capacity = clamp_queue_capacity(capacity);
        self
    }
}

/// What the outbound queue can hold: at least one packet, at most what its
/// semaphore can count (more would panic in `Semaphore::new`).
pub(crate) fn clamp_queue_capacity(capacity: usize) -> usize {
    capacity.clamp(1, SessionConfig::MAX_QUEUE_CAPACITY)
}

macro_rules! setters {
    ($($(#[$doc:meta])* $name:ident: $ty:ty;)*) => {
        impl SessionConfig {
            $(
                $(#[$doc])*
                pub fn $name(mut self, value: $ty) -> Self {
                    self.$name = value;
                    self
                }
            )*
        }
    };
}

setters! {
    /// Sets [`max_packet_len`](SessionConfig::max_packet_len).
    max_packet_len: usize;
    /// Sets [`read_timeout`](SessionConfig::read_timeout).
    read_timeout: Option<Duration>;
    /// Sets [`write_timeout`](SessionConfig::write_timeout).
    write_timeout: Option<Duration>;
    /// Sets [`cron_period`](SessionConfig::cron_period).
    cron_period: Option<Duration>;
    /// Sets [`wait_time`](SessionConfig::wait_time).
    wait_time: Duration;
    /// Sets [`max_in_flight`](SessionConfig::max_in_flight) (at least 1).
    max_in_flight: usize;
    /// Sets [`ordered_responses`](SessionConfig::ordered_responses).
    ordered_responses: bool;
}
