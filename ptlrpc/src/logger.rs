//! A small stderr logger for Rustre's binaries. `RUSTRE_LOG` overrides the caller's default
//! level: a level (`error|warn|info|debug|trace|off`), optionally followed by
//! `module=level` pairs, e.g. `RUSTRE_LOG=info,appliance::mdt=debug`. Each line carries a UTC
//! timestamp and the thread (shard) name, so a console shows who said what and when.

use std::io::Write;

struct Logger {
    level: log::LevelFilter,
    /// Per-module levels: the longest matching prefix wins.
    modules: Vec<(String, log::LevelFilter)>,
}

impl Logger {
    fn level_for(&self, target: &str) -> log::LevelFilter {
        self.modules
            .iter()
            .filter(|(p, _)| target.starts_with(p.as_str()))
            .max_by_key(|(p, _)| p.len())
            .map_or(self.level, |(_, l)| *l)
    }
}

fn parse_level(s: &str) -> Option<log::LevelFilter> {
    Some(match s {
        "error" => log::LevelFilter::Error,
        "warn" => log::LevelFilter::Warn,
        "info" => log::LevelFilter::Info,
        "debug" => log::LevelFilter::Debug,
        "trace" => log::LevelFilter::Trace,
        "off" => log::LevelFilter::Off,
        _ => return None,
    })
}

impl log::Log for Logger {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= self.level_for(m.target())
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

/// Installs the logger (once) at `default` unless `RUSTRE_LOG` says otherwise.
pub fn init(default: log::LevelFilter) {
    let spec = std::env::var("RUSTRE_LOG").unwrap_or_default();
    let mut level = default;
    let mut modules = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('=') {
            Some((m, l)) => match parse_level(l) {
                Some(l) => modules.push((m.to_string(), l)),
                None => eprintln!("RUSTRE_LOG: bad level {l:?} for {m}"),
            },
            None => match parse_level(part) {
                Some(l) => level = l,
                None => eprintln!("RUSTRE_LOG: bad level {part:?}"),
            },
        }
    }
    let max = modules.iter().map(|m| m.1).fold(level, std::cmp::max);
    if log::set_boxed_logger(Box::new(Logger { level, modules })).is_ok() {
        log::set_max_level(max);
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
