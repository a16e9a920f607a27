//! Rate-limited logging for events a bad peer can trigger at will (decision 11): the first
//! few per second per kind are logged, the rest counted and summarised.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Instant;

thread_local! {
    static STATE: RefCell<HashMap<&'static str, (Instant, u32, u64)>> = RefCell::new(HashMap::new());
}

/// Lines of one kind logged per second before suppression.
const BURST: u32 = 5;

/// Logs `msg` at warn level unless `kind` has been logged too often this second.
pub fn warn(kind: &'static str, msg: &str) {
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        let e = s.entry(kind).or_insert((Instant::now(), 0, 0));
        if e.0.elapsed().as_secs() >= 1 {
            if e.2 > 0 {
                log::warn!("{kind}: {} more suppressed", e.2);
            }
            *e = (Instant::now(), 0, 0);
        }
        if e.1 < BURST {
            e.1 += 1;
            log::warn!("{msg}");
        } else {
            e.2 += 1;
        }
    });
}
