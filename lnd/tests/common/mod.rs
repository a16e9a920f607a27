//! Helpers shared by the integration tests: free ports, two-node setups.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::panic)]

use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::time::Duration;

use lnd::{AcceptMode, Config, NiConfig, Placement};
use proto::Nid;

/// A TCP port free on both addresses right now (tests run in parallel: ask the kernel).
pub fn free_port(ips: &[Ipv4Addr]) -> u16 {
    for _ in 0..100 {
        let l = TcpListener::bind(SocketAddrV4::new(*ips.first().unwrap(), 0)).unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        if ips.iter().all(|ip| TcpListener::bind(SocketAddrV4::new(*ip, port)).is_ok()) {
            return port;
        }
    }
    panic!("no free port");
}

pub fn nid(s: &str) -> Nid {
    s.parse().unwrap()
}

/// A config for one NI on `ip`, listening on `port`, `shards` unbound executors.
pub fn config(nid_s: &str, port: u16, shards: usize) -> Config {
    let n = nid(nid_s);
    let mut c = Config::new(vec![NiConfig::new(n, port).unwrap()]);
    c.port = port;
    c.placement = Placement::Unbound(shards);
    c.accept = AcceptMode::Secure;
    c.timeout = Duration::from_secs(10);
    c.discovery_timeout = Duration::from_secs(10);
    c
}

/// Installs a logger once (RUST_LOG-like via LND_LOG=debug).
pub fn init_log() {
    struct L;
    impl log::Log for L {
        fn enabled(&self, m: &log::Metadata) -> bool {
            m.level() <= level()
        }
        fn log(&self, r: &log::Record) {
            if self.enabled(r.metadata()) {
                let t = START.get_or_init(std::time::Instant::now).elapsed();
                let th = std::thread::current();
                eprintln!("[{:>9.6} {:?} {}] {}", t.as_secs_f64(), th.id(), r.level(), r.args());
            }
        }
        fn flush(&self) {}
    }
    fn level() -> log::Level {
        match std::env::var("LND_LOG").as_deref() {
            Ok("debug") => log::Level::Debug,
            Ok("info") => log::Level::Info,
            _ => log::Level::Warn,
        }
    }
    static LOGGER: L = L;
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(log::LevelFilter::Debug);
}
