//! A small stderr logger for Rustre's binaries: `RUSTRE_LOG=error|warn|info|debug|trace`
//! overrides the caller's default level; each line carries a UTC timestamp and the thread
//! (shard) name, so a console shows who said what and when.

use std::io::Write;

struct Logger {
    level: log::LevelFilter,
}

impl log::Log for Logger {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= self.level
            && (m.target().starts_with("appliance")
                || m.target().starts_with("lnd")
                || m.target().starts_with("ptlrpc")
                || m.target().starts_with("osd_nvme")
                || m.target().starts_with("rustre")
                || m.target().starts_with("client")
                || m.target().starts_with("rlfs")
                || m.level() <= log::Level::Warn)
    }
    fn log(&self, r: &log::Record<'_>) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let t =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let th = std::thread::current();
        let name = th.name().unwrap_or("main");
        let mut e = std::io::stderr().lock();
        let _ = writeln!(e, "{} {:5} [{name}] {}", utc(t), r.level(), r.args());
    }
    fn flush(&self) {}
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for a time since the epoch (civil-from-days, proleptic
/// Gregorian).
fn utc(t: std::time::Duration) -> String {
    let secs = t.as_secs();
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60,
        t.subsec_millis()
    )
}

/// Installs the logger (once) at `default` unless `RUSTRE_LOG` names another level.
pub fn init(default: log::LevelFilter) {
    let level = match std::env::var("RUSTRE_LOG").as_deref() {
        Ok("error") => log::LevelFilter::Error,
        Ok("warn") => log::LevelFilter::Warn,
        Ok("info") => log::LevelFilter::Info,
        Ok("debug") => log::LevelFilter::Debug,
        Ok("trace") => log::LevelFilter::Trace,
        Ok("off") => log::LevelFilter::Off,
        _ => default,
    };
    if log::set_boxed_logger(Box::new(Logger { level })).is_ok() {
        log::set_max_level(level);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_dates() {
        use std::time::Duration;
        assert_eq!(super::utc(Duration::from_millis(0)), "1970-01-01T00:00:00.000Z");
        assert_eq!(super::utc(Duration::from_millis(951_782_400_500)), "2000-02-29T00:00:00.500Z");
        assert_eq!(super::utc(Duration::from_secs(1_795_254_217)), "2026-11-21T09:43:37.000Z");
    }
}
