//! Lustre's statistics files, kept per shard and merged for display: counter sets
//! (`lprocfs_stats`), per-job counters (`job_stats`) and I/O histograms (`brw_stats`).
//!
//! The live types ([`Stats`], [`JobStats`], [`BrwStats`]) belong to one shard (plain cells, no
//! atomics, not `Send`); their snapshots ([`StatsSnap`], [`JobsSnap`], [`BrwSnap`]) are plain
//! data that cross the shard mesh and merge. Rendering follows Lustre 2.15 byte for byte:
//! `lprocfs_stats_seq_show` and `lprocfs_stats_header` (`obdclass/lprocfs_status.c`),
//! `lprocfs_jobstats_seq_show` (`obdclass/lprocfs_jobstats.c`) and `brw_stats_seq_show`
//! (`obdclass/lprocfs_status_server.c`).

use serde::Serialize;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt::Write as _;

/// Nanoseconds since the Unix epoch (Lustre's `ktime_get_real`).
#[must_use]
pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// What a counter holds, with Lustre's unit name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CounterDef {
    /// Counter name (`write_bytes`, `open`).
    pub name: &'static str,
    /// Unit (`bytes`, `usecs`, `reqs`).
    pub units: &'static str,
    /// Whether min, max, sum and sum of squares are kept (`LPROCFS_CNTR_AVGMINMAX |
    /// LPROCFS_CNTR_STDDEV`); otherwise only the sample count.
    pub full: bool,
}

impl CounterDef {
    /// `LPROCFS_TYPE_LATENCY`: microseconds with min/max/sum/sumsq.
    #[must_use]
    pub const fn latency(name: &'static str) -> CounterDef {
        CounterDef { name, units: "usecs", full: true }
    }
    /// `LPROCFS_TYPE_BYTES_FULL`: bytes with min/max/sum/sumsq.
    #[must_use]
    pub const fn bytes(name: &'static str) -> CounterDef {
        CounterDef { name, units: "bytes", full: true }
    }
    /// Any unit, with min/max/sum/sumsq.
    #[must_use]
    pub const fn full(name: &'static str, units: &'static str) -> CounterDef {
        CounterDef { name, units, full: true }
    }
}

/// One counter's values (`struct lprocfs_counter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Counter {
    /// Samples.
    pub count: u64,
    /// Smallest sample (meaningful when `count > 0`).
    pub min: u64,
    /// Largest sample.
    pub max: u64,
    /// Sum of samples.
    pub sum: u64,
    /// Sum of squared samples (saturating).
    pub sumsq: u64,
}

impl Counter {
    /// Adds one sample.
    pub fn add(&mut self, v: u64) {
        self.min = if self.count == 0 { v } else { self.min.min(v) };
        self.max = self.max.max(v);
        self.count += 1;
        self.sum = self.sum.saturating_add(v);
        self.sumsq = self.sumsq.saturating_add(v.saturating_mul(v));
    }
    /// Adds another shard's counter to this one.
    pub fn merge(&mut self, o: &Counter) {
        if o.count == 0 {
            return;
        }
        self.min = if self.count == 0 { o.min } else { self.min.min(o.min) };
        self.max = self.max.max(o.max);
        self.count += o.count;
        self.sum = self.sum.saturating_add(o.sum);
        self.sumsq = self.sumsq.saturating_add(o.sumsq);
    }
}

/// One row of a stats snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatRow {
    /// Counter name.
    pub name: String,
    /// Unit.
    pub units: String,
    /// min/max/sum/sumsq shown.
    pub full: bool,
    /// Values.
    pub c: Counter,
}

/// A stats file's content at one moment, mergeable across shards.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct StatsSnap {
    /// When counting started (`ls_init`), ns since the epoch.
    pub init: u64,
    /// Counters in display order.
    pub rows: Vec<StatRow>,
}

fn header(out: &mut String, now: u64, init: u64, width: usize, colon: bool, prefix: &str) {
    let c = if colon { ":" } else { "" };
    let el = now.saturating_sub(init);
    for (f, t) in [("snapshot_time", now), ("start_time", init), ("elapsed_time", el)] {
        let field = format!("{f}{c}");
        let _ = writeln!(
            out,
            "{prefix}{field:<width$} {}.{:09} secs.nsecs",
            t / 1_000_000_000,
            t % 1_000_000_000
        );
    }
}

impl StatsSnap {
    /// Adds another shard's snapshot (rows by name; the earliest start wins).
    pub fn merge(&mut self, o: &StatsSnap) {
        self.init = if self.init == 0 { o.init } else { self.init.min(o.init.max(1)) };
        for r in &o.rows {
            match self.rows.iter_mut().find(|x| x.name == r.name) {
                Some(x) => x.c.merge(&r.c),
                None => self.rows.push(r.clone()),
            }
        }
    }
    /// A counter by name.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&Counter> {
        self.rows.iter().find(|r| r.name == name).map(|r| &r.c)
    }
    /// The file as `lprocfs_stats_seq_show` prints it at `now` (2.15: width 25; counters
    /// with no samples are not shown).
    #[must_use]
    pub fn render(&self, now: u64) -> String {
        let mut s = String::new();
        header(&mut s, now, self.init, 25, false, "");
        for r in self.rows.iter().filter(|r| r.c.count > 0) {
            let _ = write!(s, "{:<25} {} samples [{}]", r.name, r.c.count, r.units);
            if r.full {
                let _ = write!(s, " {} {} {} {}", r.c.min, r.c.max, r.c.sum, r.c.sumsq);
            }
            s.push('\n');
        }
        s
    }
}

/// A live counter set of one shard (one stats file's share).
#[derive(Debug)]
pub struct Stats {
    rows: RefCell<Vec<(CounterDef, Counter)>>,
    init: Cell<u64>,
}

impl Stats {
    /// Counters `defs`, all zero, counting from now.
    #[must_use]
    pub fn new(defs: &[CounterDef]) -> Stats {
        Stats {
            rows: RefCell::new(defs.iter().map(|d| (*d, Counter::default())).collect()),
            init: Cell::new(now_ns()),
        }
    }
    /// Adds a sample to counter `name`; a name not yet known is appended with `def`'s unit
    /// (service stats grow a row per opcode seen).
    pub fn add_or_insert(&self, def: CounterDef, v: u64) {
        let mut rows = self.rows.borrow_mut();
        if let Some(r) = rows.iter_mut().find(|r| r.0.name == def.name) {
            r.1.add(v);
        } else if rows.len() < MAX_ROWS {
            let mut c = Counter::default();
            c.add(v);
            rows.push((def, c));
        }
    }
    /// Adds a sample to counter `name` (ignored when the set has no such counter).
    pub fn add(&self, name: &str, v: u64) {
        if let Some(r) = self.rows.borrow_mut().iter_mut().find(|r| r.0.name == name) {
            r.1.add(v);
        }
    }
    /// Zeroes every counter and restarts the clock (`set_param ...stats=clear`).
    pub fn clear(&self) {
        for r in self.rows.borrow_mut().iter_mut() {
            r.1 = Counter::default();
        }
        self.init.set(now_ns());
    }
    /// A snapshot to merge and render.
    #[must_use]
    pub fn snapshot(&self) -> StatsSnap {
        StatsSnap {
            init: self.init.get(),
            rows: self
                .rows
                .borrow()
                .iter()
                .map(|(d, c)| StatRow {
                    name: d.name.to_string(),
                    units: d.units.to_string(),
                    full: d.full,
                    c: *c,
                })
                .collect(),
        }
    }
}

/// Most rows one stats set grows to (one per opcode; Lustre has ~100 opcodes).
const MAX_ROWS: usize = 160;

/// Most jobs a job_stats set tracks per shard; the least recently active goes first.
pub const MAX_JOBS: usize = 4096;

/// Lustre's default job_cleanup_interval: 600 s.
pub const DEFAULT_JOB_CLEANUP: u64 = 600;

#[derive(Debug, Clone)]
struct Job {
    init: u64,
    latest: u64,
    c: Vec<Counter>,
}

/// Per-job counters of one target on one shard (`obd_job_stats`), keyed by the job id
/// clients send in `pb_jobid`.
#[derive(Debug)]
pub struct JobStats {
    defs: &'static [CounterDef],
    jobs: RefCell<HashMap<String, Job>>,
    interval: Cell<u64>,
    last_cleanup: Cell<u64>,
}

impl JobStats {
    /// An empty set with counters `defs` and Lustre's default cleanup interval.
    #[must_use]
    pub fn new(defs: &'static [CounterDef]) -> JobStats {
        JobStats {
            defs,
            jobs: RefCell::new(HashMap::new()),
            interval: Cell::new(DEFAULT_JOB_CLEANUP),
            last_cleanup: Cell::new(now_ns()),
        }
    }
    /// Adds `v` to counter `name` of job `jobid` (empty ids are not counted, as Lustre).
    pub fn log(&self, jobid: &[u8], name: &str, v: u64) {
        let Some(idx) = self.defs.iter().position(|d| d.name == name) else { return };
        if jobid.is_empty() || jobid.len() >= 32 {
            return;
        }
        let now = now_ns();
        let id = String::from_utf8_lossy(jobid).into_owned();
        let known = self.jobs.borrow().contains_key(&id);
        if !known {
            self.cleanup(now, false);
            let mut jobs = self.jobs.borrow_mut();
            if jobs.len() >= MAX_JOBS
                && let Some(old) = jobs.iter().min_by_key(|j| j.1.latest).map(|j| j.0.clone())
            {
                jobs.remove(&old);
            }
            jobs.insert(
                id.clone(),
                Job { init: now, latest: now, c: vec![Counter::default(); self.defs.len()] },
            );
        }
        if let Some(j) = self.jobs.borrow_mut().get_mut(&id) {
            j.latest = now;
            if let Some(c) = j.c.get_mut(idx) {
                c.add(v);
            }
        }
    }
    /// `job_cleanup_interval` in seconds (0: never).
    #[must_use]
    pub fn interval(&self) -> u64 {
        self.interval.get()
    }
    /// Sets `job_cleanup_interval` and runs a cleanup pass, as Lustre's store does.
    pub fn set_interval(&self, secs: u64) {
        self.interval.set(secs);
        self.cleanup(now_ns(), false);
    }
    /// Drops every job (`set_param ...job_stats=clear`).
    pub fn clear(&self) {
        self.jobs.borrow_mut().clear();
        self.last_cleanup.set(now_ns());
    }
    /// Drops one job (`set_param ...job_stats=JOBID`); false when unknown.
    pub fn remove(&self, jobid: &str) -> bool {
        self.jobs.borrow_mut().remove(jobid).is_some()
    }
    /// Lustre's `lprocfs_job_cleanup`: at most twice per interval, jobs idle longer than
    /// the interval go. `force` runs it now regardless of when it last ran.
    pub fn cleanup(&self, now: u64, force: bool) {
        let iv = self.interval.get().saturating_mul(1_000_000_000);
        if iv == 0 {
            return;
        }
        if !force && now < self.last_cleanup.get().saturating_add(iv / 2) {
            return;
        }
        let oldest = now.saturating_sub(iv);
        self.jobs.borrow_mut().retain(|_, j| j.latest >= oldest);
        self.last_cleanup.set(now);
    }
    /// Jobs tracked now.
    #[must_use]
    pub fn len(&self) -> usize {
        self.jobs.borrow().len()
    }
    /// Whether no job is tracked.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.jobs.borrow().is_empty()
    }
    /// A snapshot (cleans up first, as reading the file does in Lustre).
    #[must_use]
    pub fn snapshot(&self) -> JobsSnap {
        self.cleanup(now_ns(), false);
        let mut jobs: Vec<JobSnap> = self
            .jobs
            .borrow()
            .iter()
            .map(|(id, j)| JobSnap {
                job_id: id.clone(),
                init: j.init,
                latest: j.latest,
                counters: j.c.clone(),
            })
            .collect();
        jobs.sort_by_key(|j| (j.init, j.job_id.clone()));
        JobsSnap {
            defs: self
                .defs
                .iter()
                .map(|d| StatRow {
                    name: d.name.into(),
                    units: d.units.into(),
                    full: d.full,
                    c: Counter::default(),
                })
                .collect(),
            jobs,
        }
    }
}

/// One job's counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobSnap {
    /// The job id.
    pub job_id: String,
    /// First seen.
    pub init: u64,
    /// Last seen.
    pub latest: u64,
    /// Counters, in the order of [`JobsSnap::defs`].
    pub counters: Vec<Counter>,
}

/// A job_stats file's content, mergeable across shards.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct JobsSnap {
    /// Counter names and units (values unused).
    pub defs: Vec<StatRow>,
    /// Jobs.
    pub jobs: Vec<JobSnap>,
}

fn escape_jobid(id: &str) -> String {
    let mut quoted = false;
    let mut s = String::new();
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || b"._@-".contains(&b) {
            s.push(char::from(b));
        } else {
            quoted = true;
            let _ = write!(s, "\\x{b:02X}");
        }
    }
    if quoted { format!("\"{s}\"") } else { s }
}

impl JobsSnap {
    /// Adds another shard's jobs (the same job on several shards is one job).
    pub fn merge(&mut self, o: &JobsSnap) {
        if self.defs.is_empty() {
            self.defs.clone_from(&o.defs);
        }
        for j in &o.jobs {
            match self.jobs.iter_mut().find(|x| x.job_id == j.job_id) {
                Some(x) => {
                    x.init = x.init.min(j.init);
                    x.latest = x.latest.max(j.latest);
                    for (a, b) in x.counters.iter_mut().zip(&j.counters) {
                        a.merge(b);
                    }
                }
                None => self.jobs.push(j.clone()),
            }
        }
        self.jobs.sort_by_key(|j| (j.init, j.job_id.clone()));
    }
    /// The YAML `lprocfs_jobstats_seq_show` prints.
    #[must_use]
    pub fn render(&self) -> String {
        let mut s = String::from("job_stats:\n");
        for j in &self.jobs {
            let _ = writeln!(s, "- {:<16} {}", "job_id:", escape_jobid(&j.job_id));
            header(&mut s, j.latest, j.init, 16, true, "  ");
            for (d, c) in self.defs.iter().zip(&j.counters) {
                let pad = 15 - d.name.len().min(15);
                let _ = write!(s, "  {}:{:pad$} {{ samples: {:>11}", d.name, "", c.count);
                if !d.units.is_empty() {
                    let _ = write!(s, ", unit: {:>5}", d.units);
                }
                if d.full {
                    let z = |v: u64| if c.count > 0 { v } else { 0 };
                    let _ = write!(
                        s,
                        ", min: {:>8}, max: {:>8}, sum: {:>16}, sumsq: {:>18}",
                        z(c.min),
                        z(c.max),
                        z(c.sum),
                        z(c.sumsq)
                    );
                }
                s.push_str(" }\n");
            }
        }
        s
    }
}

/// Buckets of an I/O histogram (`OBD_HIST_MAX`).
pub const HIST_MAX: usize = 32;

/// The histograms of `brw_stats` (Lustre's `brw_props`, less the ldiskfs block-map timing).
pub const BRW_HISTS: [(&str, &str, bool); 7] = [
    ("pages per bulk r/w", "rpcs", true),
    ("discontiguous pages", "rpcs", false),
    ("discontiguous blocks", "rpcs", false),
    ("disk fragmented I/Os", "ios", false),
    ("disk I/Os in flight", "ios", false),
    ("I/O time (1/1000s)", "ios", true),
    ("disk I/O size", "ios", true),
];

/// Which histogram of [`BRW_HISTS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Brw {
    /// Pages per bulk RPC (log2 buckets).
    PagesPerBulk = 0,
    /// Breaks in the page list of an RPC.
    DiscontigPages = 1,
    /// Breaks in the block list on disk.
    DiscontigBlocks = 2,
    /// Disk I/Os an RPC became.
    Fragmented = 3,
    /// Disk I/Os in flight when one starts.
    InFlight = 4,
    /// Milliseconds an RPC's I/O took (log2 buckets).
    IoTime = 5,
    /// Bytes of one disk I/O (log2 buckets).
    IoSize = 6,
}

/// `lprocfs_oh_tally_log2`: the bucket of `v` is ceil(log2(v)).
#[must_use]
pub fn log2_bucket(v: u64) -> usize {
    if v <= 1 { 0 } else { (64 - (v - 1).leading_zeros() as usize).min(HIST_MAX - 1) }
}

type Hists = [[[u64; HIST_MAX]; 2]; 7];

/// One shard's I/O histograms of an OSD (`osd-*.*.brw_stats`).
#[derive(Debug)]
pub struct BrwStats {
    h: RefCell<Hists>,
    init: Cell<u64>,
}

impl Default for BrwStats {
    fn default() -> Self {
        BrwStats { h: RefCell::new([[[0; HIST_MAX]; 2]; 7]), init: Cell::new(now_ns()) }
    }
}

impl BrwStats {
    /// Counts `v` in histogram `which` (log2-bucketed for the scaled ones).
    pub fn tally(&self, which: Brw, write: bool, v: u64) {
        let i = which as usize;
        let b = if BRW_HISTS[i].2 {
            log2_bucket(v)
        } else {
            usize::try_from(v).unwrap_or(HIST_MAX - 1).min(HIST_MAX - 1)
        };
        self.h.borrow_mut()[i][usize::from(write)][b] += 1;
    }
    /// Zeroes (`set_param ...brw_stats=clear`).
    pub fn clear(&self) {
        *self.h.borrow_mut() = [[[0; HIST_MAX]; 2]; 7];
        self.init.set(now_ns());
    }
    /// A snapshot.
    #[must_use]
    pub fn snapshot(&self) -> BrwSnap {
        BrwSnap { init: self.init.get(), h: self.h.borrow().iter().map(|x| x.to_vec()).collect() }
    }
}

/// brw_stats content, mergeable: per histogram, [read, write] buckets.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct BrwSnap {
    /// Start of counting.
    pub init: u64,
    /// Histograms in [`BRW_HISTS`] order: `[read, write]`, each [`HIST_MAX`] buckets.
    pub h: Vec<Vec<[u64; HIST_MAX]>>,
}

fn pct(a: u64, b: u64) -> u64 {
    (a * 100).checked_div(b).unwrap_or(0)
}

impl BrwSnap {
    /// Adds another shard's histograms.
    pub fn merge(&mut self, o: &BrwSnap) {
        self.init = if self.init == 0 { o.init } else { self.init.min(o.init.max(1)) };
        if self.h.is_empty() {
            self.h.clone_from(&o.h);
            return;
        }
        for (a, b) in self.h.iter_mut().zip(&o.h) {
            for (x, y) in a.iter_mut().zip(b) {
                for (p, q) in x.iter_mut().zip(y) {
                    *p += q;
                }
            }
        }
    }
    /// Samples in histogram `which`, (reads, writes).
    #[must_use]
    pub fn totals(&self, which: Brw) -> (u64, u64) {
        self.h.get(which as usize).map_or((0, 0), |x| {
            (x.first().map_or(0, |r| r.iter().sum()), x.get(1).map_or(0, |w| w.iter().sum()))
        })
    }
    /// The file as `brw_stats_seq_show` prints it.
    #[must_use]
    pub fn render(&self, now: u64) -> String {
        let mut s = String::new();
        header(&mut s, now, self.init, 25, true, "");
        for (i, (name, units, scale)) in BRW_HISTS.iter().enumerate() {
            let _ = write!(s, "\n{:26} read      |     write\n", " ");
            let _ = writeln!(s, "{name:<22} {units:<5} % cum % |  {units:<11} % cum %");
            let empty = [0u64; HIST_MAX];
            let (r, w) = self.h.get(i).map_or((&empty, &empty), |x| {
                (x.first().unwrap_or(&empty), x.get(1).unwrap_or(&empty))
            });
            let (rt, wt): (u64, u64) = (r.iter().sum(), w.iter().sum());
            if rt == 0 && wt == 0 {
                continue;
            }
            let (mut rc, mut wc) = (0, 0);
            for b in 0..HIST_MAX {
                rc += r[b];
                wc += w[b];
                if rc == 0 && wc == 0 {
                    continue;
                }
                if !scale {
                    let _ = write!(s, "{b}");
                } else if b < 10 {
                    let _ = write!(s, "{}", 1u64 << b);
                } else if b < 20 {
                    let _ = write!(s, "{}K", 1u64 << (b - 10));
                } else {
                    let _ = write!(s, "{}M", 1u64 << (b - 20));
                }
                let _ = writeln!(
                    s,
                    ":\t\t{:>10} {:>3} {:>3}   | {:>4} {:>3} {:>3}",
                    r[b],
                    pct(r[b], rt),
                    pct(rc, rt),
                    w[b],
                    pct(w[b], wt),
                    pct(wc, wt)
                );
                if rc == rt && wc == wt {
                    break;
                }
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFS: [CounterDef; 2] = [CounterDef::bytes("write_bytes"), CounterDef::latency("write")];

    #[test]
    fn stats_render_like_lustre() {
        let s = Stats::new(&DEFS);
        s.add("write_bytes", 4096);
        s.add("write_bytes", 8192);
        let mut snap = s.snapshot();
        snap.init = 1_700_000_000_000_000_000;
        let text = snap.render(1_700_000_010_500_000_000);
        assert_eq!(
            text,
            "snapshot_time             1700000010.500000000 secs.nsecs\n\
             start_time                1700000000.000000000 secs.nsecs\n\
             elapsed_time              10.500000000 secs.nsecs\n\
             write_bytes               2 samples [bytes] 4096 8192 12288 83886080\n"
        );
    }

    #[test]
    fn merge_sums_and_keeps_extremes() {
        let (a, b) = (Stats::new(&DEFS), Stats::new(&DEFS));
        a.add("write", 5);
        b.add("write", 1);
        b.add("write", 9);
        let mut m = a.snapshot();
        m.merge(&b.snapshot());
        assert_eq!(
            m.get("write"),
            Some(&Counter { count: 3, min: 1, max: 9, sum: 15, sumsq: 107 })
        );
    }

    static JDEFS: [CounterDef; 2] =
        [CounterDef::bytes("write_bytes"), CounterDef::latency("punch")];

    #[test]
    fn job_stats_yaml() {
        let j = JobStats::new(&JDEFS);
        j.log(b"dd.4854", "write_bytes", 4096);
        j.log(b"bad id", "punch", 3);
        j.log(b"", "punch", 3);
        let snap = j.snapshot();
        assert_eq!(snap.jobs.len(), 2);
        let y = snap.render();
        assert!(
            y.starts_with("job_stats:\n- job_id:          dd.4854\n  snapshot_time:   "),
            "{y}"
        );
        assert!(y.contains(
            "  write_bytes:     { samples:           1, unit: bytes, min:     4096, max:     4096, sum:             4096, sumsq:           16777216 }\n"
        ), "{y}");
        assert!(y.contains("- job_id:          \"bad\\x20id\"\n"), "{y}");
        let v: serde_yaml::Value = serde_yaml::from_str(&y).unwrap();
        assert_eq!(v["job_stats"][0]["write_bytes"]["sum"].as_u64(), Some(4096));
        assert_eq!(v["job_stats"][1]["job_id"].as_str(), Some("bad id"), "YAML decodes the escape");
    }

    #[test]
    fn job_cleanup_interval_expires_idle_jobs() {
        let j = JobStats::new(&JDEFS);
        j.log(b"a", "punch", 1);
        let t = now_ns();
        j.cleanup(t + 599 * 1_000_000_000, true);
        assert_eq!(j.len(), 1);
        j.cleanup(t + 601 * 1_000_000_000, true);
        assert_eq!(j.len(), 0);
        j.set_interval(0);
        j.log(b"b", "punch", 1);
        j.cleanup(t + 100_000 * 1_000_000_000, true);
        assert_eq!(j.len(), 1, "0 means never");
    }

    #[test]
    fn brw_histograms() {
        assert_eq!(
            (log2_bucket(1), log2_bucket(2), log2_bucket(3), log2_bucket(256)),
            (0, 1, 2, 8)
        );
        let b = BrwStats::default();
        b.tally(Brw::PagesPerBulk, true, 256);
        b.tally(Brw::PagesPerBulk, true, 1);
        b.tally(Brw::DiscontigPages, false, 0);
        let r = b.snapshot().render(now_ns());
        assert!(r.contains("pages per bulk r/w     rpcs  % cum % |  rpcs        % cum %\n"), "{r}");
        assert!(r.contains("1:\t\t         0   0   0   |    1  50  50\n"), "{r}");
        assert!(r.contains("256:\t\t         0   0   0   |    1  50 100\n"), "{r}");
        assert!(r.contains("0:\t\t         1 100 100   |    0   0   0\n"), "{r}");
    }
}
