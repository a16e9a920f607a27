//! A small stderr logger: `RUSTRE_LOG=error|warn|info|debug|trace` (default info), with a
//! timestamp and the thread (shard) name, so a console shows who said what.

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
        let _ = writeln!(
            e,
            "{}.{:03} {:5} [{name}] {}",
            t.as_secs(),
            t.subsec_millis(),
            r.level(),
            r.args()
        );
    }
    fn flush(&self) {}
}

/// Installs the logger (once).
pub fn init() {
    let level = match std::env::var("RUSTRE_LOG").as_deref() {
        Ok("error") => log::LevelFilter::Error,
        Ok("warn") => log::LevelFilter::Warn,
        Ok("debug") => log::LevelFilter::Debug,
        Ok("trace") => log::LevelFilter::Trace,
        Ok("off") => log::LevelFilter::Off,
        _ => log::LevelFilter::Info,
    };
    if log::set_boxed_logger(Box::new(Logger { level })).is_ok() {
        log::set_max_level(level);
    }
}
