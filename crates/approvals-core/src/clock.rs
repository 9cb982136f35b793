//! Wall-clock time as the gate sees it, and a clock tests can move by hand.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::watch;

/// A point in time, in UTC, with microsecond precision.
///
/// Microseconds are what every store can hold exactly (Postgres `timestamptz` included), so a
/// timestamp read back from any backend compares equal to the one written. It serialises as
/// RFC 3339 with exactly six fraction digits (`2026-11-22T03:47:00.123456Z`), so
/// timestamps of one log all have the same width; any RFC 3339 text parses.
///
/// ```
/// use approvals_core::Timestamp;
/// let t = Timestamp::from_unix_micros(1_531_420_618_000_000);
/// assert_eq!(t.to_string(), "2018-07-12T18:36:58.000000Z");
/// assert_eq!("2018-07-12T18:36:58Z".parse::<Timestamp>().unwrap(), t);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(OffsetDateTime);

impl Timestamp {
    /// The current system time.
    pub fn now() -> Self {
        Self::from_datetime(OffsetDateTime::now_utc())
    }

    /// A timestamp `micros` microseconds after the Unix epoch.
    ///
    /// Values outside the range `time` can represent saturate at its bounds.
    pub fn from_unix_micros(micros: i64) -> Self {
        let nanos = i128::from(micros) * 1_000;
        let dt = OffsetDateTime::from_unix_timestamp_nanos(nanos).unwrap_or(if micros < 0 {
            OffsetDateTime::UNIX_EPOCH
        } else {
            // Year 9999: far beyond any expiry this library computes.
            OffsetDateTime::from_unix_timestamp(253_402_300_799)
                .unwrap_or(OffsetDateTime::UNIX_EPOCH)
        });
        Self(dt)
    }

    /// Microseconds since the Unix epoch.
    pub fn unix_micros(self) -> i64 {
        // In range by construction: `time` only represents years -9999..=9999.
        i64::try_from(self.0.unix_timestamp_nanos() / 1_000).unwrap_or(i64::MAX)
    }

    fn from_datetime(dt: OffsetDateTime) -> Self {
        let dt = dt.to_offset(time::UtcOffset::UTC);
        let micros = dt.microsecond();
        Self(dt.replace_nanosecond(micros * 1_000).unwrap_or(dt))
    }

    /// This time plus `d`, saturating at the far future.
    pub fn saturating_add(self, d: Duration) -> Self {
        let micros = i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
        Self::from_unix_micros(self.unix_micros().saturating_add(micros))
    }

    /// How long after `earlier` this is; zero when it is not later.
    pub fn duration_since(self, earlier: Timestamp) -> Duration {
        let micros = self.unix_micros().saturating_sub(earlier.unix_micros());
        Duration::from_micros(u64::try_from(micros).unwrap_or(0))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const FORMAT: &[time::format_description::BorrowedFormatItem<'_>] = time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
        );
        match self.0.format(FORMAT) {
            Ok(s) => f.write_str(&s),
            Err(_) => write!(f, "@{}us", self.unix_micros()),
        }
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The text was not an RFC 3339 timestamp.
#[derive(Debug, Clone, thiserror::Error)]
#[error("not an RFC 3339 timestamp: {0}")]
pub struct TimestampParseError(String);

impl std::str::FromStr for Timestamp {
    type Err = TimestampParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        OffsetDateTime::parse(s, &Rfc3339)
            .map(Self::from_datetime)
            .map_err(|e| TimestampParseError(e.to_string()))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A boxed future, as returned by [`Clock::sleep_until`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The gate's source of time: what "now" is, and how to wait for a moment.
///
/// Expiry, caller timeouts and every timestamp in the audit trail come from here, so a test
/// that swaps in a [`ManualClock`] controls them all without sleeping.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current time.
    fn now(&self) -> Timestamp;
    /// Resolves once [`Clock::now`] is at or after `deadline`.
    fn sleep_until(&self, deadline: Timestamp) -> BoxFuture<'_, ()>;
}

/// The system clock, waiting with tokio's timer.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }

    fn sleep_until(&self, deadline: Timestamp) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            loop {
                let left = deadline.duration_since(Timestamp::now());
                if left.is_zero() {
                    return;
                }
                tokio::time::sleep(left).await;
            }
        })
    }
}

/// A clock that moves only when told to; for tests of expiry and timeouts.
///
/// ```
/// use approvals_core::{Clock, ManualClock, Timestamp};
/// use std::time::Duration;
/// let clock = ManualClock::new(Timestamp::from_unix_micros(0));
/// clock.advance(Duration::from_secs(10));
/// assert_eq!(clock.now(), Timestamp::from_unix_micros(10_000_000));
/// ```
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<Timestamp>,
    tick: watch::Sender<Timestamp>,
}

impl ManualClock {
    /// A clock standing at `start`.
    pub fn new(start: Timestamp) -> Self {
        Self {
            now: Mutex::new(start),
            tick: watch::Sender::new(start),
        }
    }

    /// Moves the clock forward by `d` and wakes every sleeper whose deadline has come.
    pub fn advance(&self, d: Duration) {
        let mut now = self.now.lock().unwrap_or_else(|e| e.into_inner());
        *now = now.saturating_add(d);
        self.tick.send_replace(*now);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.now.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn sleep_until(&self, deadline: Timestamp) -> BoxFuture<'_, ()> {
        let mut rx = self.tick.subscribe();
        Box::pin(async move {
            // `wait_for` checks the current value first, so an advance that happened before
            // this future was polled is not missed.
            let _ = rx.wait_for(|now| *now >= deadline).await;
        })
    }
}

impl<C: Clock + ?Sized> Clock for std::sync::Arc<C> {
    fn now(&self) -> Timestamp {
        (**self).now()
    }
    fn sleep_until(&self, deadline: Timestamp) -> BoxFuture<'_, ()> {
        (**self).sleep_until(deadline)
    }
}

/// A duration in the units people write: `45s`, `10m`, `1h30m`, `2d`, `250ms`.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(approvals_core::clock::human(Duration::from_secs(5400)), "1h30m");
/// assert_eq!(approvals_core::clock::human(Duration::from_millis(250)), "250ms");
/// ```
pub fn human(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    if ms % 1000 != 0 {
        return format!("{ms}ms");
    }
    let mut secs = ms / 1000;
    let mut out = String::new();
    for (unit, size) in [("d", 86_400u128), ("h", 3600), ("m", 60), ("s", 1)] {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    out
}
