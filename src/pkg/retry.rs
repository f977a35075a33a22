//! The retry loop shared by every call that takes a [`Retry`](super::Retry).

/// Runs `$attempt` (an expression making a fresh future each time) under
/// the optional per-attempt timeout, and again after `retry.interval` while
/// it fails with a retryable error and attempts remain. Bounded: at most
/// `retry.count + 1` attempts, each within the timeout when there is one.
macro_rules! retrying {
    ($op:expr, $retry:expr, $timeout:expr, $attempt:expr) => {{
        let retry: $crate::pkg::Retry = $retry;
        let timeout: ::std::option::Option<::std::time::Duration> = $timeout;
        let mut tries: u32 = 0;
        loop {
            tries += 1;
            let result = match timeout {
                Some(after) => match ::tokio::time::timeout(after, $attempt).await {
                    Ok(result) => result,
                    Err(_) => Err($crate::pkg::PkgError::Timeout {
                        op: $op,
                        after,
                        attempts: tries,
                    }),
                },
                None => $attempt.await,
            };
            match result {
                Err(e) if e.is_retryable() && tries <= retry.count => {
                    ::tracing::debug!(op = $op, attempt = tries, error = %e, "retrying");
                    ::tokio::time::sleep(retry.interval).await;
                }
                other => break other,
            }
        }
    }};
}

pub(crate) use retrying;
