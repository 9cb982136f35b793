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
///
/// Kept as microseconds since the Unix epoch: reading the clock is one system call and no
/// calendar arithmetic (the gate stamps every call's record), and stores write the number
/// as it is; the calendar is worked out only when the timestamp is written as text.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

/// The earliest and latest microseconds a [`Timestamp`] holds: `time`'s range, years
/// -9999 to 9999, so that every timestamp has a calendar date to be written as.
const MIN_MICROS: i64 = -377_705_116_800_000_000;
const MAX_MICROS: i64 = 253_402_300_799_999_999;

impl Timestamp {
    /// The current system time.
    pub fn now() -> Self {
        let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        let micros = |d: Duration| i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
        Self::from_unix_micros(match since {
            Ok(d) => micros(d),
            // A clock set before 1970.
            Err(e) => -micros(e.duration()),
        })
    }

    /// A timestamp `micros` microseconds after the Unix epoch.
    ///
    /// Values outside the range `time` can represent (years -9999 to 9999) are taken as
    /// the epoch if before it and as the last second of year 9999 if after it.
    pub fn from_unix_micros(micros: i64) -> Self {
        Self(match micros {
            ..MIN_MICROS => 0,
            MIN_MICROS..=MAX_MICROS => micros,
            // Year 9999: far beyond any expiry this library computes.
            _ => 253_402_300_799_000_000,
        })
    }

    /// Microseconds since the Unix epoch.
    pub fn unix_micros(self) -> i64 {
        self.0
    }

    /// A date and time in UTC, truncated to the microsecond.
    fn from_datetime(dt: OffsetDateTime) -> Self {
        let micros = dt.unix_timestamp_nanos().div_euclid(1_000);
        Self::from_unix_micros(i64::try_from(micros).unwrap_or(i64::MAX))
    }

    /// The calendar date and time, in UTC.
    fn datetime(self) -> OffsetDateTime {
        // In range by construction.
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0) * 1_000)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
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

/// The length of a timestamp in its one written form, `2026-11-22T03:47:00.123456Z`.
const WRITTEN_LEN: usize = 27;

impl Timestamp {
    /// This timestamp in its written form, for years 0 to 9999 (all but the far past).
    ///
    /// Written by hand rather than through `time`'s formatter: every audit record, stored
    /// request and decision carries timestamps, and the general formatter (a format
    /// description walked item by item into a fresh `String`) cost about 1,500 instructions
    /// each, a tenth of an allowed gated call; this costs a few dozen and allocates nothing.
    fn written(self) -> Option<[u8; WRITTEN_LEN]> {
        let dt = self.datetime();
        let (date, time) = (dt.date(), dt.time());
        let year = u32::try_from(date.year()).ok().filter(|y| *y <= 9999)?;
        let mut out = *b"0000-00-00T00:00:00.000000Z";
        let mut put = |at: usize, width: usize, mut value: u32| {
            for i in (at..at + width).rev() {
                out[i] = b'0' + (value % 10) as u8;
                value /= 10;
            }
        };
        put(0, 4, year);
        put(5, 2, u32::from(u8::from(date.month())));
        put(8, 2, u32::from(date.day()));
        put(11, 2, u32::from(time.hour()));
        put(14, 2, u32::from(time.minute()));
        put(17, 2, u32::from(time.second()));
        put(20, 6, time.microsecond());
        Some(out)
    }

    /// Reads the written form (exactly [`Timestamp::written`]'s layout) without the general
    /// RFC 3339 parser; `None` for any other text, which the general parser then reads.
    /// The calendar's rules (month lengths, leap years) are still `time`'s.
    fn read_written(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        if b.len() != WRITTEN_LEN
            || [
                (4, b'-'),
                (7, b'-'),
                (10, b'T'),
                (13, b':'),
                (16, b':'),
                (19, b'.'),
                (26, b'Z'),
            ]
            .iter()
            .any(|&(i, c)| b[i] != c)
        {
            return None;
        }
        let num = |at: usize, width: usize| {
            b[at..at + width].iter().try_fold(0u32, |n, &d| {
                d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0'))
            })
        };
        let month = time::Month::try_from(u8::try_from(num(5, 2)?).ok()?).ok()?;
        let date = time::Date::from_calendar_date(
            i32::try_from(num(0, 4)?).ok()?,
            month,
            u8::try_from(num(8, 2)?).ok()?,
        )
        .ok()?;
        let time = time::Time::from_hms_micro(
            u8::try_from(num(11, 2)?).ok()?,
            u8::try_from(num(14, 2)?).ok()?,
            u8::try_from(num(17, 2)?).ok()?,
            num(20, 6)?,
        )
        .ok()?;
        Some(Self::from_datetime(date.with_time(time).assume_utc()))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.written() {
            // ASCII digits and separators only.
            Some(out) => f.write_str(std::str::from_utf8(&out).map_err(|_| fmt::Error)?),
            None => {
                const FORMAT: &[time::format_description::BorrowedFormatItem<'_>] = time::macros::format_description!(
                    "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
                );
                match self.datetime().format(FORMAT) {
                    Ok(s) => f.write_str(&s),
                    Err(_) => write!(f, "@{}us", self.unix_micros()),
                }
            }
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
        if let Some(t) = Self::read_written(s) {
            return Ok(t);
        }
        OffsetDateTime::parse(s, &Rfc3339)
            .map(Self::from_datetime)
            .map_err(|e| TimestampParseError(e.to_string()))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.written() {
            Some(out) => {
                s.serialize_str(std::str::from_utf8(&out).map_err(serde::ser::Error::custom)?)
            }
            None => s.collect_str(self),
        }
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Timestamp;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 timestamp")
            }
            // Borrowed where the input allows: no String for each timestamp read.
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Timestamp, E> {
                s.parse().map_err(E::custom)
            }
        }
        d.deserialize_str(Visitor)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `time`'s own formatter, the independent answer the hand-written form must match.
    fn by_time(t: Timestamp) -> String {
        let format = time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
        );
        t.datetime().format(format).unwrap()
    }

    /// Microsecond instants spread over years 0..=9999, with the edges of days, months,
    /// leap days and years among them.
    fn instants() -> impl Iterator<Item = i64> {
        const DAY: i64 = 86_400_000_000;
        let year_0 = -62_167_219_200_000_000;
        let year_10000 = 253_402_300_800_000_000;
        let edges = [
            year_0,
            year_10000 - 1,
            0,
            -1,
            951_782_400_000_000 - 1, // 2000-02-28T23:59:59.999999
            951_868_800_000_000,     // 2000-03-01
            1_709_164_800_000_000,   // 2024-02-29
            4_107_542_399_999_999,   // 2100-02-28T23:59:59.999999 (2100 is not leap)
        ];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let spread = std::iter::repeat_with(move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            year_0 + (x % u64::try_from(year_10000 - year_0).unwrap()) as i64
        });
        edges
            .into_iter()
            .flat_map(|e| [e, e + 1, e - 1, e + DAY - 1])
            .filter(move |&t| (year_0..year_10000).contains(&t))
            .chain(spread.take(20_000))
    }

    #[test]
    fn the_written_form_is_times_own() {
        for micros in instants() {
            let t = Timestamp::from_unix_micros(micros);
            let written = t.to_string();
            assert_eq!(written, by_time(t), "{micros}");
            assert_eq!(serde_json::to_string(&t).unwrap(), format!("\"{written}\""));
        }
    }

    #[test]
    fn the_written_form_reads_back_as_rfc_3339_does() {
        for micros in instants() {
            let written = by_time(Timestamp::from_unix_micros(micros));
            let general = Timestamp::from_datetime(
                OffsetDateTime::parse(&written, &Rfc3339)
                    .unwrap_or_else(|e| panic!("{written}: {e}")),
            );
            assert_eq!(
                Timestamp::read_written(&written),
                Some(general),
                "{written}"
            );
            assert_eq!(written.parse::<Timestamp>().unwrap().unix_micros(), micros);
            let json = format!("\"{written}\"");
            assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), general);
        }
    }

    #[test]
    fn other_rfc_3339_forms_still_read() {
        let t = Timestamp::from_unix_micros(1_531_420_618_500_000);
        for s in [
            "2018-07-12T18:36:58.5Z",
            "2018-07-12T18:36:58.500000000Z",
            "2018-07-12T20:36:58.500000+02:00",
            "2018-07-12t18:36:58.500000z",
        ] {
            assert_eq!(s.parse::<Timestamp>().unwrap(), t, "{s}");
        }
    }

    #[test]
    fn impossible_dates_in_the_written_layout_are_refused() {
        for s in [
            "2023-02-29T00:00:00.000000Z",
            "2100-02-29T00:00:00.000000Z",
            "2024-13-01T00:00:00.000000Z",
            "2024-00-01T00:00:00.000000Z",
            "2024-04-31T00:00:00.000000Z",
            "2024-01-01T24:00:00.000000Z",
            "2024-01-01T00:60:00.000000Z",
            "2024-01-01T00:00:61.000000Z",
            "2024-01-01T00:00:00.00000aZ",
            "2024-01-01T00:00:00.+00000Z",
            "+024-01-01T00:00:00.000000Z",
        ] {
            assert!(Timestamp::read_written(s).is_none(), "{s}");
            assert!(s.parse::<Timestamp>().is_err(), "{s}");
            assert!(
                serde_json::from_str::<Timestamp>(&format!("\"{s}\"")).is_err(),
                "{s}"
            );
        }
    }

    #[test]
    fn the_range_is_times_and_beyond_it_saturates_as_documented() {
        let first = OffsetDateTime::new_utc(time::Date::MIN, time::Time::MIDNIGHT);
        let last = OffsetDateTime::new_utc(
            time::Date::MAX,
            time::Time::from_hms_micro(23, 59, 59, 999_999).unwrap(),
        );
        assert_eq!(Timestamp::from_unix_micros(MIN_MICROS).datetime(), first);
        assert_eq!(Timestamp::from_unix_micros(MAX_MICROS).datetime(), last);
        assert_eq!(Timestamp::from_datetime(first).unix_micros(), MIN_MICROS);
        assert_eq!(Timestamp::from_datetime(last).unix_micros(), MAX_MICROS);
        assert_eq!(Timestamp::from_unix_micros(MIN_MICROS - 1).unix_micros(), 0);
        assert_eq!(Timestamp::from_unix_micros(i64::MIN).unix_micros(), 0);
        for beyond in [MAX_MICROS + 1, i64::MAX] {
            let t = Timestamp::from_unix_micros(beyond);
            assert_eq!(t.to_string(), "9999-12-31T23:59:59.000000Z");
        }
        // Before the epoch, a fraction rounds down to the earlier microsecond, as the
        // written form counts it.
        let t =
            Timestamp::from_datetime(OffsetDateTime::UNIX_EPOCH - time::Duration::nanoseconds(1));
        assert_eq!(t.unix_micros(), -1);
        assert_eq!(t.to_string(), "1969-12-31T23:59:59.999999Z");
        let now = Timestamp::now().unix_micros();
        let by_time = OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000;
        assert!(
            (i128::from(now) - by_time).abs() < 60_000_000,
            "{now} {by_time}"
        );
    }

    #[test]
    fn before_year_zero_the_general_form_is_used() {
        let t = Timestamp::from_datetime(OffsetDateTime::UNIX_EPOCH.replace_year(-1).unwrap());
        assert_eq!(t.written(), None);
        assert_eq!(t.to_string(), by_time(t));
    }
}
