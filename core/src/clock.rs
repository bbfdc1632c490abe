//! Time for snapshot timestamps and expiry: the system clock, or the fixed
//! instant in `STRATA_TEST_NOW` (Unix seconds), which only tests set, so
//! that expiry and schedules can be checked without waiting.

use crate::err;
use crate::error::Result;

/// The variable tests set to fix "now".
pub const TEST_NOW_ENV: &str = "STRATA_TEST_NOW";

/// Unix seconds now (or `STRATA_TEST_NOW`'s).
pub fn now() -> i64 {
    if let Some(t) = std::env::var(TEST_NOW_ENV).ok().and_then(|v| v.trim().parse().ok()) {
        return t;
    }
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// A duration as `--expire` and schedules take it: a number and a unit,
/// `s`, `m`, `h`, `d` or `w` (`7d`, `12h`), or `hourly`, `daily`, `weekly`.
pub fn parse_duration(s: &str) -> Result<u64> {
    let t = s.trim();
    let bad = || {
        err!(
            InvalidArgument,
            "parse duration",
            "invalid duration {s:?}: expected a number and a unit s, m, h, d or w (e.g. 7d), or hourly, daily, weekly"
        )
    };
    match t {
        "hourly" => return Ok(3600),
        "daily" => return Ok(86400),
        "weekly" => return Ok(7 * 86400),
        _ => {}
    }
    let split = t.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| bad())?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        "w" => 7 * 86400,
        _ => return Err(bad()),
    };
    match n.checked_mul(mult) {
        Some(0) | None => Err(bad()),
        // Beyond any date a timestamp can hold.
        Some(v) if v > (1u64 << 40) => Err(bad()),
        Some(v) => Ok(v),
    }
}

/// `t` as LXC's `ts`: local time `%Y:%m:%d %H:%M:%S`.
pub fn format_ts(t: i64) -> String {
    // SAFETY: tm is a C struct of integers and a pointer that localtime_r fills (all-zero is a valid start);
    // strftime writes at most `buf.len()` bytes into the live local `buf` and gets a NUL-terminated format and the
    // filled `tm`.
    unsafe {
        let t = t as libc::time_t;
        let mut tm: libc::tm = std::mem::zeroed();
        libc::localtime_r(&t, &mut tm);
        let mut buf = [0u8; 64];
        let n = libc::strftime(
            buf.as_mut_ptr() as *mut libc::c_char,
            buf.len(),
            c"%Y:%m:%d %H:%M:%S".as_ptr(),
            &tm,
        );
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }
}

/// A `ts` (local time `%Y:%m:%d %H:%M:%S`) as Unix seconds.
pub fn parse_ts(ts: &str) -> Option<i64> {
    let f: Vec<i32> = ts
        .trim()
        .split([':', ' '])
        .map(|x| x.parse().ok())
        .collect::<Option<Vec<_>>>()?;
    let [y, mo, d, h, mi, s] = f[..] else { return None };
    // SAFETY: tm is a C struct of integers and a pointer (all-zero is a valid value); mktime reads and normalises
    // the live local `tm` and keeps no pointer to it.
    let t = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        tm.tm_year = y - 1900;
        tm.tm_mon = mo - 1;
        tm.tm_mday = d;
        tm.tm_hour = h;
        tm.tm_min = mi;
        tm.tm_sec = s;
        tm.tm_isdst = -1;
        libc::mktime(&mut tm)
    };
    (t != -1).then_some(t as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_timestamps() {
        assert_eq!(parse_duration("7d").unwrap(), 7 * 86400);
        assert_eq!(parse_duration("90m").unwrap(), 5400);
        assert_eq!(parse_duration("daily").unwrap(), 86400);
        for bad in ["", "7", "d", "0d", "7x", "-1d", "1.5d", "99999999999999w"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        let t = 1_700_000_000;
        assert_eq!(parse_ts(&format_ts(t)), Some(t));
        assert_eq!(parse_ts("garbage"), None);
    }
}
