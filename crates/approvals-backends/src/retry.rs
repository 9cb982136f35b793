//! One retry loop for every outbound call: webhooks, requesters' callbacks, the remote gate,
//! `approvals exec`, and Slack's Web API.
//!
//! Written here rather than taken from a crate (`backoff` is unmaintained, `backon` would
//! not know `Retry-After`): a loop of twenty lines that honours a server's `Retry-After`
//! and the caller's bounds on attempts and total time, and says why it gave up.

use std::fmt;
use std::future::Future;
use std::time::{Duration, Instant};

/// How outbound calls are retried: exponential backoff from `initial`, doubling up to
/// `max_delay`, for at most `max_attempts` attempts and `max_total` in all.
///
/// Public through `http` (its clients take one); with only `slack`, the Slack client's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(feature = "http"), allow(unreachable_pub))]
pub struct Retry {
    /// The first wait.
    pub initial: Duration,
    /// The longest single wait.
    pub max_delay: Duration,
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// Time in all, from the first attempt, after which no new attempt starts.
    pub max_total: Duration,
}

impl Default for Retry {
    /// 1 s, 2 s, 4 s, 8 s: five attempts within 30 s.
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            max_delay: Duration::from_secs(8),
            max_attempts: 5,
            max_total: Duration::from_secs(30),
        }
    }
}

/// What one attempt came to.
#[derive(Debug)]
pub(crate) enum Attempt<T, E = String> {
    /// It worked.
    Done(T),
    /// It failed in a way another attempt may not (unreachable, 5xx, 429): why.
    Again(E),
    /// As `Again`, and the server said how long to wait first (`Retry-After`), which is
    /// waited rather than the backoff's delay, up to `max_delay`.
    After(E, Duration),
    /// It failed for good: why.
    Fail(E),
}

/// Why [`Retry::run`] stopped without a value: the last attempt's error, and whether the
/// bounds were spent (rather than the error being final).
#[derive(Debug)]
pub(crate) struct Stopped<E> {
    /// The last attempt's error.
    pub(crate) error: E,
    /// Attempts made, the first included.
    pub(crate) attempts: u32,
    /// The error was worth another attempt, but the bounds were spent.
    pub(crate) exhausted: bool,
}

impl<E: fmt::Display> fmt::Display for Stopped<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.exhausted {
            write!(
                f,
                "{} (gave up after {} attempts)",
                self.error, self.attempts
            )
        } else {
            self.error.fmt(f)
        }
    }
}

/// What a `Retry-After` header asks for, in seconds (the HTTP-date form is not honoured:
/// the backoff's own delay is used then).
pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

impl Retry {
    /// Retries for as long as `total` allows, attempts unbounded: for a caller who would
    /// rather wait for a service than give up early (`approvals exec --retry-for`).
    #[cfg(feature = "http")]
    pub fn for_up_to(total: Duration) -> Self {
        Self {
            initial: Duration::from_millis(250),
            max_delay: Duration::from_secs(5),
            max_attempts: u32::MAX,
            max_total: total,
        }
    }

    /// Whether an HTTP answer with this status is worth asking again: a server error, 408
    /// or 429. Anything else is the answer.
    #[cfg(feature = "http")]
    pub(crate) fn worth_retrying(status: reqwest::StatusCode) -> bool {
        status.is_server_error()
            || status == reqwest::StatusCode::TOO_MANY_REQUESTS
            || status == reqwest::StatusCode::REQUEST_TIMEOUT
    }

    /// Runs `attempt` (given its number, from 1) until it is done or fails for good, or the
    /// bounds are spent. Returns its value and the attempts made, or why it stopped.
    pub(crate) async fn run<T, E, F, Fut>(
        &self,
        what: &str,
        mut attempt: F,
    ) -> Result<(T, u32), Stopped<E>>
    where
        E: fmt::Display,
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Attempt<T, E>>,
    {
        let started = Instant::now();
        let mut backoff = self.initial;
        let mut n = 0;
        loop {
            n += 1;
            let stop = |error, exhausted| Stopped {
                error,
                attempts: n,
                exhausted,
            };
            let (error, delay) = match attempt(n).await {
                Attempt::Done(v) => return Ok((v, n)),
                Attempt::Fail(error) => return Err(stop(error, false)),
                Attempt::Again(error) => (error, backoff),
                Attempt::After(error, wait) => (error, wait.min(self.max_delay)),
            };
            let out_of_time = started.elapsed() + delay > self.max_total;
            if n >= self.max_attempts || out_of_time {
                return Err(stop(error, true));
            }
            tracing::warn!(target = %what, attempt = n, error = %error, wait_ms = delay.as_millis(), "an outbound call failed; retrying");
            tokio::time::sleep(delay).await;
            backoff = (backoff * 2).min(self.max_delay);
        }
    }
}
