//! One retry loop for every outbound call of the `http` feature: webhooks, requesters'
//! callbacks, the remote gate, `approvals exec`.

use std::future::Future;
use std::time::{Duration, Instant};

/// How outbound calls are retried: exponential backoff from `initial`, doubling up to
/// `max_delay`, for at most `max_attempts` attempts and `max_total` in all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
pub(crate) enum Attempt<T> {
    /// It worked.
    Done(T),
    /// It failed in a way another attempt may not (unreachable, 5xx, 429): why.
    Again(String),
    /// It failed for good: why.
    Fail(String),
}

impl Retry {
    /// Retries for as long as `total` allows, attempts unbounded: for a caller who would
    /// rather wait for a service than give up early (`approvals exec --retry-for`).
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
    pub(crate) fn worth_retrying(status: reqwest::StatusCode) -> bool {
        status.is_server_error()
            || status == reqwest::StatusCode::TOO_MANY_REQUESTS
            || status == reqwest::StatusCode::REQUEST_TIMEOUT
    }

    /// Runs `attempt` (given its number, from 1) until it is done or fails for good, or the
    /// bounds are spent. Returns its value and the attempts made, or why it gave up.
    pub(crate) async fn run<T, F, Fut>(
        &self,
        what: &str,
        mut attempt: F,
    ) -> Result<(T, u32), String>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Attempt<T>>,
    {
        let started = Instant::now();
        let mut delay = self.initial;
        let mut n = 0;
        loop {
            n += 1;
            let why = match attempt(n).await {
                Attempt::Done(v) => return Ok((v, n)),
                Attempt::Fail(why) => return Err(why),
                Attempt::Again(why) => why,
            };
            let out_of_time = started.elapsed() + delay > self.max_total;
            if n >= self.max_attempts || out_of_time {
                return Err(format!("{why} (gave up after {n} attempts)"));
            }
            tracing::warn!(target = %what, attempt = n, error = %why, "an outbound call failed; retrying");
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(self.max_delay);
        }
    }
}
