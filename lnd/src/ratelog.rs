//! Rate-limited logging: bad input must not flood the log (design decision 11).

use std::cell::Cell;
use std::time::{Duration, Instant};

/// At most `burst` messages per `window`, then a count of what was suppressed.
#[derive(Debug)]
pub(crate) struct RateLimit {
    window: Duration,
    burst: u32,
    start: Cell<Option<Instant>>,
    used: Cell<u32>,
    suppressed: Cell<u64>,
}

impl RateLimit {
    pub(crate) const fn new(window: Duration, burst: u32) -> RateLimit {
        RateLimit {
            window,
            burst,
            start: Cell::new(None),
            used: Cell::new(0),
            suppressed: Cell::new(0),
        }
    }

    /// Whether to log now; returns the number suppressed since the last logged message.
    pub(crate) fn allow(&self) -> Option<u64> {
        let now = Instant::now();
        match self.start.get() {
            Some(s) if now.duration_since(s) < self.window => {}
            _ => {
                self.start.set(Some(now));
                self.used.set(0);
            }
        }
        if self.used.get() < self.burst {
            self.used.set(self.used.get() + 1);
            Some(self.suppressed.replace(0))
        } else {
            self.suppressed.set(self.suppressed.get() + 1);
            None
        }
    }
}

/// `rlog!(limiter, Level, "fmt", args..)`: logs through `log` when the limiter allows.
macro_rules! rlog {
    ($rl:expr, $lvl:ident, $($arg:tt)+) => {
        if log::log_enabled!(log::Level::$lvl) {
            if let Some(sup) = $rl.allow() {
                if sup > 0 {
                    log::log!(log::Level::$lvl, "({} similar messages suppressed)", sup);
                }
                log::log!(log::Level::$lvl, $($arg)+);
            }
        }
    };
}
pub(crate) use rlog;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_suppress() {
        let rl = RateLimit::new(Duration::from_secs(3600), 3);
        assert_eq!(rl.allow(), Some(0));
        assert_eq!(rl.allow(), Some(0));
        assert_eq!(rl.allow(), Some(0));
        assert_eq!(rl.allow(), None);
        assert_eq!(rl.allow(), None);
    }
}
