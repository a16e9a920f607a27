//! The command language: one interpreter behind the serial REPL, `POST /api/command` and the
//! remote CLI. Vocabulary from `lctl` (`dl`, `get_param`, `set_param`, `list_param`), `lfs`
//! (`df`) and `lnetctl` (`net show`, `peer show`, `ping`, `stats show`), plus `status`,
//! `shards`, `version`, `shutdown` and `reboot`.

use crate::params::{Pattern, Tree, show};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt::Write as _;

/// What a caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    /// Read parameters and status.
    ReadOnly,
    /// Also change parameters, shut down, reboot.
    Admin,
}

/// A target as the console shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetStatus {
    /// `rustre-OST0000`, `MGS`.
    pub name: String,
    /// `rustre-OST0000_UUID`.
    pub uuid: String,
    /// `MGS`, `MDT` or `OST`.
    pub kind: String,
    /// Index.
    pub index: u32,
    /// OSD device type (`osd-nvme`, `osd-mem`).
    pub osd: String,
    /// 1 KiB blocks in all.
    pub kb_total: u64,
    /// Free 1 KiB blocks.
    pub kb_free: u64,
    /// 1 KiB blocks available to clients.
    pub kb_avail: u64,
    /// Objects in all.
    pub files_total: u64,
    /// Objects free.
    pub files_free: u64,
    /// Connected clients (exports).
    pub exports: u64,
    /// Refuses changes.
    pub readonly: bool,
    /// Bytes read by clients.
    pub read_bytes: u64,
    /// Bytes written by clients.
    pub write_bytes: u64,
}

/// One shard.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardStatus {
    /// Index.
    pub id: usize,
    /// Requests received.
    pub requests: u64,
    /// Error replies.
    pub errors: u64,
    /// Undecodable requests dropped.
    pub dropped: u64,
    /// Requests in progress now (the shard's queue depth).
    pub active: u64,
    /// Microseconds spent handling requests.
    pub busy_us: u64,
    /// Client exports homed here.
    pub exports: u64,
    /// Locks held in this shard's namespaces.
    pub locks: u64,
    /// LNet messages received.
    pub lnet_rx: u64,
    /// LNet messages sent.
    pub lnet_tx: u64,
    /// LNet memory descriptors alive (buffers posted or in flight).
    pub mds: u64,
    /// Bytes of OSD metadata cached.
    pub cache_bytes: u64,
}

/// An LNet peer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerStatus {
    /// NID.
    pub nid: String,
    /// LNet pid.
    pub pid: u32,
    /// Home shard.
    pub shard: usize,
    /// Open connections.
    pub conns: u64,
    /// Credits available.
    pub credits: u64,
    /// Messages queued.
    pub queued: u64,
    /// Discovery finished.
    pub up: bool,
}

/// Everything `status`, `dl`, `df`, `net`, `peer`, `shards` and the web page show.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// File system name.
    pub fsname: String,
    /// Lustre version we speak (`2.15.8`).
    pub version: String,
    /// Rustre's own version.
    pub rustre_version: String,
    /// `healthy` or why not.
    pub health: String,
    /// Seconds since start.
    pub uptime_s: u64,
    /// Our NIDs.
    pub nids: Vec<String>,
    /// Acceptor port.
    pub port: u16,
    /// `secure` or `all`.
    pub accept: String,
    /// Targets.
    pub targets: Vec<TargetStatus>,
    /// Shards.
    pub shards: Vec<ShardStatus>,
    /// Peers.
    pub peers: Vec<PeerStatus>,
    /// LNet counters summed over shards (name, value).
    pub lnet: Vec<(String, u64)>,
    /// Resident memory, bytes.
    pub memused: u64,
    /// Peak resident memory, bytes.
    pub memused_max: u64,
}

/// One sample of the counters the page graphs (taken every second).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    /// Milliseconds since the epoch.
    pub t_ms: u64,
    /// Requests per shard (cumulative).
    pub requests: Vec<u64>,
    /// Busy microseconds per shard (cumulative).
    pub busy_us: Vec<u64>,
    /// Bytes read from OSTs (cumulative).
    pub read_bytes: u64,
    /// Bytes written to OSTs (cumulative).
    pub write_bytes: u64,
}

/// What the appliance provides to the console. Every call runs on the shard that serves the
/// console and gathers from the others over the mesh.
#[allow(async_fn_in_trait, reason = "single-threaded executor: futures need not be Send")]
pub trait Backend {
    /// The parameters matching any of `pats` (all when empty).
    async fn params(&self, pats: &[Pattern]) -> Tree;
    /// Sets one writable parameter on every shard that holds part of it.
    async fn set_param(&self, path: &[String], value: &str) -> Result<(), String>;
    /// Status of the node.
    async fn status(&self) -> Status;
    /// Cumulative counters for rates.
    async fn sample(&self) -> Sample;
    /// LNet ping of a NID; the text `lnetctl ping` prints.
    async fn ping(&self, nid: &str) -> Result<String, String>;
    /// Flushes and stops the node (reboots when `reboot` and PID 1).
    fn shutdown(&self, reboot: bool);
}

/// A command's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    /// Success.
    pub ok: bool,
    /// What the command prints.
    pub output: String,
}

impl Reply {
    fn ok(output: String) -> Reply {
        Reply { ok: true, output }
    }
    fn err(output: impl Into<String>) -> Reply {
        Reply { ok: false, output: output.into() }
    }
}

/// Samples kept for rates and the page's graph (5 minutes at one per second).
pub const HISTORY: usize = 300;

/// Commands, their synopsis and help.
pub const COMMANDS: &[(&str, &str, &str)] = &[
    ("help", "help [COMMAND]", "List commands, or show one command's help."),
    ("status", "status", "Targets, capacity, clients, shards and health at a glance."),
    ("dl", "dl", "Device list in lctl's format: index, state, type, name, UUID, refcount."),
    (
        "get_param",
        "get_param [-n] [-N] PATTERN...",
        "Show parameters. -n: values only; -N: names only. PATTERN is lctl's \
         (obdfilter.*.stats, ldlm.namespaces.{mdt-,filter-}*.lru_size).",
    ),
    (
        "set_param",
        "set_param [-n] NAME=VALUE...",
        "Change writable parameters on every shard (admin): mdt.*.readonly, \
         ldlm.namespaces.*.lru_size, lru_max_age, *.job_cleanup_interval, \
         *.stats=clear, *.job_stats=clear.",
    ),
    (
        "list_param",
        "list_param [-R] [-F] PATTERN...",
        "List parameter names. -R: everything below matching directories; -F: mark \
         directories with / and writable parameters with =.",
    ),
    ("df", "df [-i] [-h]", "Space (or -i inodes) per target, in lfs df's format."),
    ("net", "net show", "Local NIs (lnetctl net show)."),
    ("peer", "peer show", "LNet peers and their connections (lnetctl peer show)."),
    ("ping", "ping NID", "LNet ping of a NID; shows its NIDs (lnetctl ping)."),
    ("stats", "stats show", "LNet counters (lnetctl stats show)."),
    (
        "shards",
        "shards",
        "Per shard: request rate, queue depth, busy time, exports, locks, memory.",
    ),
    ("version", "version", "Lustre version spoken and Rustre's own."),
    ("shutdown", "shutdown", "Flush every target and stop (power off when PID 1) (admin)."),
    ("reboot", "reboot", "Flush every target and reboot (exit when not PID 1) (admin)."),
];

/// The interpreter, with the history of samples for rates.
#[derive(Debug)]
pub struct Console<B> {
    /// The appliance.
    pub backend: B,
    history: RefCell<VecDeque<Sample>>,
}

/// Splits a command line into words; single and double quotes group.
#[must_use]
pub fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut any = false;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                any = true;
            }
            (None, c) if c.is_whitespace() => {
                if any || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            (None, c) => cur.push(c),
        }
    }
    if any || !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Whether a command line needs admin rights.
#[must_use]
pub fn needs_admin(line: &str) -> bool {
    let w = words(line);
    let w: Vec<&str> = w.iter().map(String::as_str).collect();
    let w = if w.first() == Some(&"lctl") || w.first() == Some(&"lnetctl") { &w[1..] } else { &w };
    matches!(w.first(), Some(&("set_param" | "shutdown" | "reboot" | "conf_param")))
}

fn human(v: u64) -> String {
    let mut f = v as f64;
    let mut i = 0;
    while f >= 1024.0 && i < 8 {
        f /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{v}")
    } else {
        format!("{f:.1}{}", ['K', 'M', 'G', 'T', 'P', 'E', 'Z', 'Y'][i - 1])
    }
}

fn pct_used(used: u64, avail: u64) -> u64 {
    let t = used + avail;
    if t == 0 { 0 } else { (used * 100).div_ceil(t) }
}

impl<B: Backend> Console<B> {
    /// A console over `backend`.
    pub fn new(backend: B) -> Console<B> {
        Console { backend, history: RefCell::new(VecDeque::with_capacity(HISTORY)) }
    }

    /// Takes one sample for rates and the page (called every second).
    pub async fn tick(&self) {
        let s = self.backend.sample().await;
        let mut h = self.history.borrow_mut();
        if h.len() >= HISTORY {
            h.pop_front();
        }
        h.push_back(s);
    }

    /// The samples kept.
    #[must_use]
    pub fn history(&self) -> Vec<Sample> {
        self.history.borrow().iter().cloned().collect()
    }

    /// Runs one command line with `access` rights.
    pub async fn execute(&self, line: &str, access: Access) -> Reply {
        let w = words(line);
        let mut w: Vec<&str> = w.iter().map(String::as_str).collect();
        if matches!(w.first(), Some(&("lctl" | "lnetctl" | "lfs"))) {
            w.remove(0);
        }
        let Some((&cmd, args)) = w.split_first() else { return Reply::ok(String::new()) };
        if needs_admin(line) && access < Access::Admin {
            return Reply::err(format!("{cmd}: permission denied: needs the admin token\n"));
        }
        match cmd {
            "help" | "?" => help(args.first().copied()),
            "status" => self.status().await,
            "dl" | "device_list" => self.dl().await,
            "get_param" => self.get_param(args).await,
            "set_param" => self.set_param(args).await,
            "list_param" => self.list_param(args).await,
            "df" => self.df(args).await,
            "net" if args.first().is_some_and(|a| *a == "show") => self.net_show().await,
            "peer" if args.first().is_some_and(|a| *a == "show") => self.peer_show().await,
            "stats" if args.first().is_some_and(|a| *a == "show") => self.stats_show().await,
            "ping" => match args.first() {
                Some(nid) => match self.backend.ping(nid).await {
                    Ok(t) => Reply::ok(t),
                    Err(e) => Reply::err(format!("ping {nid}: {e}\n")),
                },
                None => Reply::err("usage: ping NID\n"),
            },
            "shards" => self.shards().await,
            "version" => {
                let s = self.backend.status().await;
                Reply::ok(format!("lustre: {}\nrustre: {}\n", s.version, s.rustre_version))
            }
            "shutdown" | "reboot" => {
                self.backend.shutdown(cmd == "reboot");
                Reply::ok(format!("{cmd}: flushing targets and stopping\n"))
            }
            _ => Reply::err(format!("{cmd}: unknown command; try help\n")),
        }
    }

    async fn status(&self) -> Reply {
        let s = self.backend.status().await;
        let mut o = String::new();
        let _ = writeln!(
            o,
            "{} on {} (port {}, {} shards), up {}s, health: {}",
            s.fsname,
            s.nids.join(","),
            s.port,
            s.shards.len(),
            s.uptime_s,
            s.health
        );
        let _ = writeln!(
            o,
            "{:<20} {:>10} {:>10} {:>5} {:>8} {:>12} {:>12}",
            "target", "size", "avail", "use%", "clients", "read", "written"
        );
        for t in &s.targets {
            let used = t.kb_total.saturating_sub(t.kb_free);
            let _ = writeln!(
                o,
                "{:<20} {:>10} {:>10} {:>4}% {:>8} {:>12} {:>12}{}",
                t.name,
                human(t.kb_total << 10),
                human(t.kb_avail << 10),
                pct_used(used, t.kb_avail),
                t.exports,
                human(t.read_bytes),
                human(t.write_bytes),
                if t.readonly { "  (read-only)" } else { "" }
            );
        }
        let _ = writeln!(o, "memory: {} (peak {})", human(s.memused), human(s.memused_max));
        Reply::ok(o)
    }

    async fn dl(&self) -> Reply {
        let s = self.backend.status().await;
        let mut o = String::new();
        let mut i = 0;
        let mut dev = |o: &mut String, ty: &str, name: &str, uuid: &str, refs: u64| {
            let _ = writeln!(o, "{i:>3} UP {ty} {name} {uuid} {refs}");
            i += 1;
        };
        let has = |k: &str| s.targets.iter().any(|t| t.kind == k);
        if has("MDT") {
            dev(&mut o, "mds", "MDS", "MDS_uuid", 2);
        }
        if has("OST") {
            dev(&mut o, "ost", "OSS", "OSS_uuid", 2);
        }
        for t in &s.targets {
            let osd_name = format!("{}-osd", t.name);
            dev(&mut o, &t.osd, &osd_name, &format!("{osd_name}_UUID"), 4);
            let ty = match t.kind.as_str() {
                "MGS" => "mgs",
                "MDT" => "mdt",
                _ => "obdfilter",
            };
            dev(&mut o, ty, &t.name, &t.uuid, t.exports + 2);
        }
        Reply::ok(o)
    }

    async fn get_param(&self, args: &[&str]) -> Reply {
        let (mut values_only, mut names_only) = (false, false);
        let mut pats = Vec::new();
        for a in args {
            match *a {
                "-n" => values_only = true,
                "-N" => names_only = true,
                "-F" | "-R" => {}
                p => pats.push(Pattern::parse(p)),
            }
        }
        if pats.is_empty() {
            return Reply::err("usage: get_param [-n] [-N] PATTERN...\n");
        }
        let tree = self.backend.params(&pats).await;
        let now = crate::lprocfs::now_ns();
        let mut o = String::new();
        let mut missing = Vec::new();
        for (pat, raw) in pats.iter().zip(args.iter().filter(|a| !a.starts_with('-'))) {
            let mut any = false;
            for p in tree.matching(pat) {
                any = true;
                if names_only {
                    let _ = writeln!(o, "{}", p.name());
                } else {
                    o.push_str(&show(&p.name(), &p.value.render(now), !values_only));
                }
            }
            if !any {
                missing.push(*raw);
            }
        }
        for m in &missing {
            let _ = writeln!(o, "error: get_param: param_path '{m}': No such file or directory");
        }
        Reply { ok: missing.is_empty(), output: o }
    }

    async fn set_param(&self, args: &[&str]) -> Reply {
        let quiet = args.contains(&"-n");
        let sets: Vec<&str> = args.iter().copied().filter(|a| !a.starts_with('-')).collect();
        if sets.is_empty() {
            return Reply::err("usage: set_param [-n] NAME=VALUE...\n");
        }
        let mut o = String::new();
        let mut ok = true;
        for s in sets {
            let Some((name, value)) = s.split_once('=') else {
                let _ = writeln!(o, "error: set_param: {s}: expected NAME=VALUE");
                ok = false;
                continue;
            };
            let pat = Pattern::parse(name);
            let tree = self.backend.params(std::slice::from_ref(&pat)).await;
            let targets: Vec<_> = tree.matching(&pat).collect();
            if targets.is_empty() {
                let _ =
                    writeln!(o, "error: set_param: param_path '{name}': No such file or directory");
                ok = false;
            }
            for p in targets {
                if !p.writable {
                    let _ = writeln!(o, "error: set_param: {}: read-only parameter", p.name());
                    ok = false;
                    continue;
                }
                match self.backend.set_param(&p.path, value).await {
                    Ok(()) if !quiet => {
                        let _ = writeln!(o, "{}={value}", p.name());
                    }
                    Ok(()) => {}
                    Err(e) => {
                        let _ = writeln!(o, "error: set_param: setting {}={value}: {e}", p.name());
                        ok = false;
                    }
                }
            }
        }
        Reply { ok, output: o }
    }

    async fn list_param(&self, args: &[&str]) -> Reply {
        let recursive = args.contains(&"-R");
        let marks = args.contains(&"-F");
        let pats: Vec<Pattern> =
            args.iter().filter(|a| !a.starts_with('-')).map(|a| Pattern::parse(a)).collect();
        if pats.is_empty() {
            return Reply::err("usage: list_param [-R] [-F] PATTERN...\n");
        }
        let tree = self.backend.params(&[]).await;
        let mut names: Vec<String> = Vec::new();
        for pat in &pats {
            for p in tree.params.values() {
                let Some(n) = pat.prefix_len(&p.path) else { continue };
                if n == p.path.len() || recursive {
                    let mark = if marks && p.writable { "=" } else { "" };
                    names.push(format!("{}{mark}", p.name()));
                } else {
                    let dir = p.path[..n].join(".");
                    names.push(if marks { format!("{dir}/") } else { dir });
                }
            }
        }
        names.dedup();
        if names.is_empty() {
            return Reply::err("error: list_param: no parameters match\n");
        }
        let mut seen = std::collections::HashSet::new();
        let o: String =
            names.into_iter().filter(|n| seen.insert(n.clone())).map(|n| n + "\n").collect();
        Reply::ok(o)
    }

    async fn df(&self, args: &[&str]) -> Reply {
        let inodes = args.contains(&"-i");
        let h = args.contains(&"-h");
        let s = self.backend.status().await;
        let mut o = String::new();
        let num = |v: u64, bytes: bool| {
            if h && bytes { format!("{:>11}", human(v << 10)) } else { format!("{v:>11}") }
        };
        if inodes {
            let _ = writeln!(
                o,
                "{:<20} {:>11} {:>11} {:>11} {:>4}  Mounted on",
                "UUID", "Inodes", "IUsed", "IFree", "IUse%"
            );
        } else {
            let unit = if h { "bytes" } else { "1K-blocks" };
            let _ = writeln!(
                o,
                "{:<20} {unit:>11} {:>11} {:>11} {:>4}  Mounted on",
                "UUID", "Used", "Available", "Use%"
            );
        }
        let mnt = format!("{}:/{}", s.nids.first().map_or("", String::as_str), s.fsname);
        let (mut tot, mut used_sum, mut avail_sum) = (0, 0, 0);
        for t in s.targets.iter().filter(|t| t.kind != "MGS") {
            let (a, u, f) = if inodes {
                (t.files_total, t.files_total.saturating_sub(t.files_free), t.files_free)
            } else {
                (t.kb_total, t.kb_total.saturating_sub(t.kb_free), t.kb_avail)
            };
            if inodes == (t.kind == "MDT") || !inodes && t.kind == "OST" {
                tot += a;
                used_sum += u;
                avail_sum += f;
            }
            let _ = writeln!(
                o,
                "{:<20} {} {} {} {:>3}%  {mnt}[{}:{}]",
                t.uuid,
                num(a, !inodes),
                num(u, !inodes),
                num(f, !inodes),
                pct_used(u, f),
                t.kind,
                t.index
            );
        }
        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "{:<20} {} {} {} {:>3}%  {mnt}",
            "filesystem_summary:",
            num(tot, !inodes),
            num(used_sum, !inodes),
            num(avail_sum, !inodes),
            pct_used(used_sum, avail_sum)
        );
        Reply::ok(o)
    }

    async fn net_show(&self) -> Reply {
        let s = self.backend.status().await;
        let mut o = String::from(
            "net:\n    - net type: lo\n      local NI(s):\n        - nid: 0@lo\n          status: up\n",
        );
        let mut nets: Vec<String> =
            s.nids.iter().map(|n| n.rsplit_once('@').map_or("tcp", |x| x.1).to_string()).collect();
        nets.dedup();
        for net in nets {
            let _ = write!(o, "    - net type: {net}\n      local NI(s):\n");
            for nid in s.nids.iter().filter(|n| n.ends_with(&format!("@{net}"))) {
                let _ = write!(
                    o,
                    "        - nid: {nid}\n          status: up\n          tunables:\n              \
                     accept: {}\n              port: {}\n",
                    s.accept, s.port
                );
            }
        }
        Reply::ok(o)
    }

    async fn peer_show(&self) -> Reply {
        let s = self.backend.status().await;
        let mut o = String::from("peer:\n");
        for p in &s.peers {
            let _ = write!(
                o,
                "    - primary nid: {}\n      Multi-Rail: False\n      peer ni:\n        - nid: {}\n          \
                 state: {}\n          pid: {}\n          shard: {}\n          connections: {}\n          \
                 tx_credits: {}\n          queued: {}\n",
                p.nid,
                p.nid,
                if p.up { "up" } else { "discovering" },
                p.pid,
                p.shard,
                p.conns,
                p.credits,
                p.queued
            );
        }
        Reply::ok(o)
    }

    async fn stats_show(&self) -> Reply {
        let s = self.backend.status().await;
        let get = |n: &str| s.lnet.iter().find(|x| x.0 == n).map_or(0, |x| x.1);
        let mut o = String::from("statistics:\n");
        let lustre = [
            ("msgs_alloc", 0),
            ("msgs_max", 0),
            ("rst_alloc", 0),
            ("errors", get("send_failed") + get("drop_proto")),
            ("send_count", get("msgs_tx")),
            ("resend_count", 0),
            ("response_timeout_count", 0),
            ("local_interrupt_count", 0),
            ("local_dropped_count", 0),
            ("local_aborted_count", 0),
            ("local_no_route_count", 0),
            ("local_timeout_count", 0),
            ("local_error_count", get("send_failed")),
            ("remote_dropped_count", 0),
            ("remote_error_count", 0),
            ("remote_timeout_count", 0),
            ("network_timeout_count", 0),
            ("recv_count", get("msgs_rx")),
            ("route_count", 0),
            ("drop_count", get("drop_nomatch") + get("drop_not_for_me")),
            ("send_length", get("bytes_tx")),
            ("recv_length", get("bytes_rx")),
            ("route_length", 0),
            ("drop_length", get("drop_bytes")),
        ];
        for (k, v) in lustre {
            let _ = writeln!(o, "    {k}: {v}");
        }
        o.push_str("rustre:\n");
        for (k, v) in &s.lnet {
            let _ = writeln!(o, "    {k}: {v}");
        }
        Reply::ok(o)
    }

    async fn shards(&self) -> Reply {
        let s = self.backend.status().await;
        let h = self.history.borrow();
        let rate = |i: usize| -> (f64, f64) {
            let (Some(a), Some(b)) = (h.len().checked_sub(2).and_then(|x| h.get(x)), h.back())
            else {
                return (0.0, 0.0);
            };
            let dt = b.t_ms.saturating_sub(a.t_ms).max(1) as f64;
            let d = |v: &Vec<u64>, w: &Vec<u64>| {
                w.get(i).copied().unwrap_or(0).saturating_sub(v.get(i).copied().unwrap_or(0)) as f64
            };
            (d(&a.requests, &b.requests) * 1000.0 / dt, d(&a.busy_us, &b.busy_us) / dt / 10.0)
        };
        let mut o = format!(
            "{:<5} {:>8} {:>10} {:>6} {:>6} {:>8} {:>7} {:>7} {:>7} {:>10} {:>10} {:>10}\n",
            "shard",
            "req/s",
            "requests",
            "queue",
            "busy%",
            "busy_s",
            "errors",
            "exports",
            "locks",
            "lnet_rx",
            "lnet_tx",
            "cache"
        );
        for sh in &s.shards {
            let (r, b) = rate(sh.id);
            let _ = writeln!(
                o,
                "{:<5} {:>8.1} {:>10} {:>6} {:>6.1} {:>8.1} {:>7} {:>7} {:>7} {:>10} {:>10} {:>10}",
                sh.id,
                r,
                sh.requests,
                sh.active,
                b,
                sh.busy_us as f64 / 1e6,
                sh.errors,
                sh.exports,
                sh.locks,
                sh.lnet_rx,
                sh.lnet_tx,
                human(sh.cache_bytes)
            );
        }
        let _ = writeln!(o, "process memory: {} (peak {})", human(s.memused), human(s.memused_max));
        Reply::ok(o)
    }
}

fn help(cmd: Option<&str>) -> Reply {
    match cmd {
        Some(c) => match COMMANDS.iter().find(|x| x.0 == c) {
            Some((_, syn, text)) => Reply::ok(format!("usage: {syn}\n{text}\n")),
            None => Reply::err(format!("{c}: unknown command\n")),
        },
        None => {
            let mut o = String::from("commands (help COMMAND for more):\n");
            for (_, syn, _) in COMMANDS {
                let _ = writeln!(o, "  {syn}");
            }
            Reply::ok(o)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_and_admin() {
        assert_eq!(words("set_param 'a b=c'  x"), vec!["set_param", "a b=c", "x"]);
        assert_eq!(words("  "), Vec::<String>::new());
        assert!(needs_admin("set_param x=1"));
        assert!(needs_admin("lctl shutdown"));
        assert!(!needs_admin("get_param version"));
    }

    #[test]
    fn help_covers_every_command() {
        for (c, _, _) in COMMANDS {
            assert!(help(Some(c)).ok);
        }
        assert!(!help(Some("nope")).ok);
    }
}
