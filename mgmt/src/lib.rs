//! Rustre management (design decision 10): one command language with Lustre's vocabulary
//! and parameter formats, served on the console (REPL), over HTTP (REST, Prometheus
//! metrics, a status page) and by a remote CLI.
//!
//! * [`lprocfs`]: Lustre's statistics files (counters, job stats, I/O histograms), kept per
//!   shard by the services and merged for display, printed exactly as Lustre 2.15 prints
//!   them.
//! * [`params`]: the parameter tree, lctl's patterns and output.
//! * [`console`]: the commands, over a [`console::Backend`] the appliance implements by
//!   gathering from its shards.
//! * [`http`], [`metrics`], [`page`]: the HTTP front end; [`repl`] and [`remote`]: the
//!   console and the remote CLI.
//!
//! The crate does not know the appliance: it is driven through `Backend`, so the same code
//! serves any node layout and is tested with a fake backend.

pub mod console;
pub mod http;
pub mod lprocfs;
pub mod metrics;
pub mod page;
pub mod params;
pub mod remote;
pub mod repl;

/// Counter sets of Lustre's statistics files, with Lustre's names.
pub mod names {
    use crate::lprocfs::CounterDef;

    /// `obdfilter.*.stats`, `obdfilter.*.exports.*.stats` and OST job_stats
    /// (`ofd_stats_counter_init`; the opcodes Rustre's OST serves).
    pub static OFD_STATS: [CounterDef; 11] = [
        CounterDef::bytes("read_bytes"),
        CounterDef::bytes("write_bytes"),
        CounterDef::latency("read"),
        CounterDef::latency("write"),
        CounterDef::latency("getattr"),
        CounterDef::latency("setattr"),
        CounterDef::latency("punch"),
        CounterDef::latency("sync"),
        CounterDef::latency("destroy"),
        CounterDef::latency("create"),
        CounterDef::latency("statfs"),
    ];

    /// `mdt.*.md_stats`, `mdt.*.exports.*.stats` and MDT job_stats (`mdt_stats`; the
    /// operations Rustre's MDT serves).
    pub static MDT_STATS: [CounterDef; 16] = [
        CounterDef::latency("open"),
        CounterDef::latency("close"),
        CounterDef::latency("mknod"),
        CounterDef::latency("link"),
        CounterDef::latency("unlink"),
        CounterDef::latency("mkdir"),
        CounterDef::latency("rmdir"),
        CounterDef::latency("rename"),
        CounterDef::latency("getattr"),
        CounterDef::latency("setattr"),
        CounterDef::latency("getxattr"),
        CounterDef::latency("setxattr"),
        CounterDef::latency("statfs"),
        CounterDef::latency("sync"),
        CounterDef::latency("samedir_rename"),
        CounterDef::latency("crossdir_rename"),
    ];

    /// The fixed counters of a ptlrpc service's stats (`ptlrpc_ldebugfs_register`); one
    /// counter per opcode seen follows them.
    pub static SVC_STATS: [CounterDef; 5] = [
        CounterDef::full("req_waittime", "usecs"),
        CounterDef::full("req_qdepth", "reqs"),
        CounterDef::full("req_active", "reqs"),
        CounterDef::full("req_timeout", "secs"),
        CounterDef::full("reqbuf_avail", "bufs"),
    ];
}
