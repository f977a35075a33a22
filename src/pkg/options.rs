//! Per-call package options: gtcp's `PkgOption` and `Retry`.

use std::time::Duration;

use super::{PkgCodec, PkgError};

/// The header size used when none is set: 2 bytes, as in gtcp.
///
/// ```
/// use getty::pkg::{PkgOption, DEFAULT_HEADER_SIZE};
/// assert_eq!(PkgOption::new().get_header_size(), DEFAULT_HEADER_SIZE);
/// ```
pub const DEFAULT_HEADER_SIZE: u8 = 2;

/// The largest `max_data_size` for each header size, as in gtcp: what the
/// header can express, except that a 4-byte header stops at `i32::MAX`
/// (2,147,483,647) rather than `u32::MAX`.
///
/// ```
/// use getty::pkg::default_max_data_size;
///
/// assert_eq!(default_max_data_size(1), Some(255));
/// assert_eq!(default_max_data_size(2), Some(65_535));
/// assert_eq!(default_max_data_size(3), Some(16_777_215));
/// assert_eq!(default_max_data_size(4), Some(2_147_483_647));
/// assert_eq!(default_max_data_size(5), None);
/// ```
pub const fn default_max_data_size(header_size: u8) -> Option<usize> {
    match header_size {
        1 => Some(0xFF),
        2 => Some(0xFFFF),
        3 => Some(0xFF_FFFF),
        4 => Some(0x7FFF_FFFF),
        _ => None,
    }
}

/// How often to try again after a failure that another attempt could fix
/// (gtcp's `Retry`): a timed-out attempt of a `_timeout` call, or a
/// transient socket error (interrupted, would block, timed out).
///
/// A closed connection, a malformed package or a send cut off in the middle
/// of a package is never retried: no later attempt could fix it. Received
/// bytes of a package that timed out stay buffered, so the next attempt
/// goes on where the last one stopped; nothing is read twice or lost.
///
/// ```
/// use getty::pkg::Retry;
/// use std::time::Duration;
///
/// let retry = Retry::new(3, Duration::from_millis(50));
/// assert_eq!(retry.count, 3);
/// assert_eq!(Retry::default().count, 0);
/// assert_eq!(Retry::default().interval, Duration::from_millis(100));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// Attempts after the first (gtcp's `Count`). 0: no retry.
    pub count: u32,
    /// The pause before each further attempt (gtcp's `Interval`; 100 ms by
    /// default, as gtcp's).
    pub interval: Duration,
}

impl Retry {
    /// `count` further attempts, `interval` apart.
    ///
    /// ```
    /// use getty::pkg::Retry;
    /// use std::time::Duration;
    /// let _ = Retry::new(2, Duration::from_millis(10));
    /// ```
    pub const fn new(count: u32, interval: Duration) -> Self {
        Retry { count, interval }
    }
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            count: 0,
            interval: Duration::from_millis(100),
        }
    }
}

/// Options of one package call, or the defaults of a connection (gtcp's
/// `PkgOption`): the header size, the largest data size, and a [`Retry`].
///
/// The defaults are gtcp's: a 2-byte header and the largest data size the
/// header allows ([`default_max_data_size`]).
///
/// ```
/// use getty::pkg::{PkgOption, Retry};
/// use std::time::Duration;
///
/// // gtcp: gtcp.PkgOption{HeaderSize: 4, MaxDataSize: 1 << 20, Retry: gtcp.Retry{Count: 3}}
/// let opt = PkgOption::new()
///     .header_size(4)
///     .max_data_size(1 << 20)
///     .retry(Retry::new(3, Duration::from_millis(100)));
/// assert_eq!(opt.get_header_size(), 4);
/// assert_eq!(opt.get_max_data_size(), 1 << 20);
///
/// assert_eq!(PkgOption::new().get_max_data_size(), 65_535);
/// assert!(PkgOption::new().header_size(5).validate().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PkgOption {
    header_size: u8,
    max_data_size: Option<usize>,
    retry: Retry,
}

impl Default for PkgOption {
    fn default() -> Self {
        PkgOption {
            header_size: DEFAULT_HEADER_SIZE,
            max_data_size: None,
            retry: Retry::default(),
        }
    }
}

impl PkgOption {
    /// gtcp's defaults: a 2-byte header, max data size 65,535, no retry.
    ///
    /// ```
    /// use getty::pkg::PkgOption;
    /// assert_eq!(PkgOption::new(), PkgOption::default());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// The header's width in bytes, 1 to 4 (gtcp's `HeaderSize`). Checked
    /// when the option is used: another value makes every call fail with
    /// [`PkgError::InvalidOption`].
    ///
    /// ```
    /// use getty::pkg::PkgOption;
    /// assert_eq!(PkgOption::new().header_size(1).get_max_data_size(), 255);
    /// ```
    pub fn header_size(mut self, bytes: u8) -> Self {
        self.header_size = bytes;
        self
    }

    /// The largest data size accepted and sent (gtcp's `MaxDataSize`); by
    /// default the largest the header allows. It can only be lowered: a
    /// value the header cannot express fails the call with
    /// [`PkgError::InvalidOption`].
    ///
    /// ```
    /// use getty::pkg::PkgOption;
    /// assert_eq!(PkgOption::new().max_data_size(100).get_max_data_size(), 100);
    /// assert!(PkgOption::new().max_data_size(70_000).validate().is_err());
    /// ```
    pub fn max_data_size(mut self, bytes: usize) -> Self {
        self.max_data_size = Some(bytes);
        self
    }

    /// The retry policy (gtcp's `Retry`).
    ///
    /// ```
    /// use getty::pkg::{PkgOption, Retry};
    /// use std::time::Duration;
    /// let opt = PkgOption::new().retry(Retry::new(1, Duration::from_millis(5)));
    /// assert_eq!(opt.get_retry().count, 1);
    /// ```
    pub fn retry(mut self, retry: Retry) -> Self {
        self.retry = retry;
        self
    }

    /// The header size set.
    ///
    /// ```
    /// use getty::pkg::PkgOption;
    /// assert_eq!(PkgOption::new().get_header_size(), 2);
    /// ```
    pub fn get_header_size(&self) -> u8 {
        self.header_size
    }

    /// The max data size in force: the one set, or the header size's
    /// default (0 when the header size is invalid).
    ///
    /// ```
    /// use getty::pkg::PkgOption;
    /// assert_eq!(PkgOption::new().header_size(3).get_max_data_size(), 16_777_215);
    /// ```
    pub fn get_max_data_size(&self) -> usize {
        self.max_data_size
            .or(default_max_data_size(self.header_size))
            .unwrap_or(0)
    }

    /// The retry policy.
    ///
    /// ```
    /// use getty::pkg::PkgOption;
    /// assert_eq!(PkgOption::new().get_retry().count, 0);
    /// ```
    pub fn get_retry(&self) -> Retry {
        self.retry
    }

    /// Checks the option and makes the codec it describes.
    ///
    /// # Errors
    /// [`PkgError::InvalidOption`] for a header size other than 1 to 4, or
    /// a max data size above what the header allows.
    ///
    /// ```
    /// use getty::pkg::PkgOption;
    ///
    /// let err = PkgOption::new().header_size(2).max_data_size(70_000).validate().unwrap_err();
    /// assert_eq!(
    ///     err.to_string(),
    ///     "invalid package option: max_data_size 70000 does not fit a 2-byte header (at most 65535)"
    /// );
    /// ```
    pub fn validate(&self) -> Result<PkgCodec, PkgError> {
        let Some(limit) = default_max_data_size(self.header_size) else {
            return Err(PkgError::InvalidOption(format!(
                "header_size {} is not 1, 2, 3 or 4",
                self.header_size
            )));
        };
        let max = self.max_data_size.unwrap_or(limit);
        if max > limit {
            return Err(PkgError::InvalidOption(format!(
                "max_data_size {max} does not fit a {}-byte header (at most {limit})",
                self.header_size
            )));
        }
        Ok(PkgCodec::from_parts(self.header_size, max))
    }
}
