//! Prometheus text exposition (`GET /metrics`) from the parameter tree, with the metric and
//! label names of whamcloud's lustrefs-exporter (`lustre_write_bytes_total{component="ost",
//! operation="write",target="fs-OST0000"}`), so existing dashboards work.

use crate::console::Status;
use crate::lprocfs::{BRW_HISTS, HIST_MAX};
use crate::params::{Tree, Value};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Metric families being built: name -> (type, help, samples).
#[derive(Default)]
struct Out {
    fams: BTreeMap<String, (&'static str, &'static str, Vec<String>)>,
}

fn esc(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

impl Out {
    fn add(
        &mut self,
        name: &str,
        ty: &'static str,
        help: &'static str,
        labels: &[(&str, &str)],
        v: u64,
    ) {
        let l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", esc(v))).collect();
        let line = if l.is_empty() {
            format!("{name} {v}")
        } else {
            format!("{name}{{{}}} {v}", l.join(","))
        };
        self.fams.entry(name.to_string()).or_insert((ty, help, Vec::new())).2.push(line);
    }
    fn render(self) -> String {
        let mut s = String::new();
        for (name, (ty, help, lines)) in self.fams {
            let _ = writeln!(s, "# HELP {name} {help}");
            let _ = writeln!(s, "# TYPE {name} {ty}");
            for l in lines {
                s.push_str(&l);
                s.push('\n');
            }
        }
        s
    }
}

fn component(kind: &str) -> &'static str {
    match kind {
        "obdfilter" | "OST" => "ost",
        "mdt" | "MDT" => "mdt",
        _ => "mgt",
    }
}

/// Renders every metric.
#[must_use]
pub fn render(tree: &Tree, st: &Status) -> String {
    let mut o = Out::default();
    for t in &st.targets {
        let c = component(&t.kind);
        let l = [("component", c), ("target", t.name.as_str())];
        o.add(
            "lustre_capacity_kilobytes",
            "gauge",
            "Capacity of the pool in kilobytes",
            &l,
            t.kb_total,
        );
        o.add(
            "lustre_free_kilobytes",
            "gauge",
            "Number of kilobytes allocated to the pool",
            &l,
            t.kb_free,
        );
        o.add(
            "lustre_available_kilobytes",
            "gauge",
            "Number of kilobytes readily available in the pool",
            &l,
            t.kb_avail,
        );
        o.add(
            "lustre_inodes_maximum",
            "gauge",
            "The maximum number of inodes (objects) the filesystem can hold",
            &l,
            t.files_total,
        );
        o.add(
            "lustre_inodes_free",
            "gauge",
            "The number of inodes (objects) available",
            &l,
            t.files_free,
        );
        o.add(
            "lustre_exports_total",
            "gauge",
            "Total number of times the pool has been exported",
            &l,
            t.exports,
        );
        if t.kind == "MDT" {
            o.add(
                "lustre_connected_clients",
                "gauge",
                "Number of connected clients",
                &l,
                t.exports,
            );
        }
        let kind = match t.kind.as_str() {
            "OST" => "OST",
            "MDT" => "MDT",
            _ => continue,
        };
        // recovery_status: Rustre has no recovery window, like a target with nothing to recover.
        o.add(
            "recovery_status",
            "gauge",
            "Gives the recovery status off a target. 0=Complete 1=Inactive 2=Waiting 3=WaitingForClients 4=Recovering 5=Unknown",
            &[("target", t.name.as_str()), ("kind", kind)],
            1,
        );
    }
    o.add(
        "lustre_health_healthy",
        "gauge",
        "Indicates whether the Lustre target is healthy or not. 1 is healthy, 0 is unhealthy.",
        &[],
        u64::from(st.health == "healthy"),
    );
    o.add(
        "lustre_mem_used",
        "gauge",
        "Gives information about Lustre memory usage.",
        &[],
        st.memused,
    );
    o.add(
        "lustre_mem_used_max",
        "gauge",
        "Gives information about Lustre maximum memory usage.",
        &[],
        st.memused_max,
    );
    let lnet = |n: &str| st.lnet.iter().find(|x| x.0 == n).map_or(0, |x| x.1);
    for nid in &st.nids {
        let l = [("nid", nid.as_str())];
        o.add(
            "lustre_send_count_total",
            "counter",
            "Total number of messages that have been sent",
            &l,
            lnet("msgs_tx"),
        );
        o.add(
            "lustre_receive_count_total",
            "counter",
            "Total number of messages that have been received",
            &l,
            lnet("msgs_rx"),
        );
        o.add(
            "lustre_send_bytes_total",
            "counter",
            "Total number of bytes that have been sent",
            &l,
            lnet("bytes_tx"),
        );
        o.add(
            "lustre_receive_bytes_total",
            "counter",
            "Total number of bytes that have been received",
            &l,
            lnet("bytes_rx"),
        );
        o.add(
            "lustre_drop_count_total",
            "counter",
            "Total number of messages that have been dropped",
            &l,
            lnet("drop_nomatch") + lnet("drop_not_for_me"),
        );
        o.add(
            "lustre_drop_bytes_total",
            "counter",
            "Total number of bytes that have been dropped",
            &l,
            lnet("drop_bytes"),
        );
    }
    for sh in &st.shards {
        let id = sh.id.to_string();
        let l = [("shard", id.as_str())];
        o.add(
            "rustre_shard_requests_total",
            "counter",
            "Requests a shard received",
            &l,
            sh.requests,
        );
        o.add(
            "rustre_shard_busy_microseconds_total",
            "counter",
            "Microseconds a shard spent handling requests",
            &l,
            sh.busy_us,
        );
        o.add(
            "rustre_shard_active_requests",
            "gauge",
            "Requests being handled on a shard",
            &l,
            sh.active,
        );
        o.add("rustre_shard_errors_total", "counter", "Error replies a shard sent", &l, sh.errors);
    }
    for p in tree.params.values() {
        let path: Vec<&str> = p.path.iter().map(String::as_str).collect();
        match (path.as_slice(), &p.value) {
            ([kind @ ("obdfilter" | "mdt"), target, "stats" | "md_stats"], Value::Stats(s)) => {
                let c = component(kind);
                for r in s.rows.iter().filter(|r| r.c.count > 0) {
                    let l = [("component", c), ("operation", r.name.as_str()), ("target", target)];
                    match r.name.as_str() {
                        n @ ("read_bytes" | "write_bytes") => {
                            let op = if n == "read_bytes" { "read" } else { "write" };
                            let l = [("component", c), ("operation", op), ("target", target)];
                            if op == "read" {
                                o.add(
                                    "lustre_read_samples_total",
                                    "counter",
                                    "Total number of reads that have been recorded.",
                                    &l,
                                    r.c.count,
                                );
                                o.add(
                                    "lustre_read_minimum_size_bytes",
                                    "gauge",
                                    "The minimum read size in bytes.",
                                    &l,
                                    r.c.min,
                                );
                                o.add(
                                    "lustre_read_maximum_size_bytes",
                                    "counter",
                                    "The maximum read size in bytes.",
                                    &l,
                                    r.c.max,
                                );
                                o.add(
                                    "lustre_read_bytes_total",
                                    "counter",
                                    "The total number of bytes that have been read.",
                                    &l,
                                    r.c.sum,
                                );
                            } else {
                                o.add(
                                    "lustre_write_samples_total",
                                    "counter",
                                    "Total number of writes that have been recorded.",
                                    &l,
                                    r.c.count,
                                );
                                o.add(
                                    "lustre_write_minimum_size_bytes",
                                    "gauge",
                                    "The minimum write size in bytes.",
                                    &l,
                                    r.c.min,
                                );
                                o.add(
                                    "lustre_write_maximum_size_bytes",
                                    "counter",
                                    "The maximum write size in bytes.",
                                    &l,
                                    r.c.max,
                                );
                                o.add(
                                    "lustre_write_bytes_total",
                                    "counter",
                                    "The total number of bytes that have been written.",
                                    &l,
                                    r.c.sum,
                                );
                            }
                        }
                        _ => {
                            o.add(
                                "lustre_stats_total",
                                "counter",
                                "Number of operations the filesystem has performed.",
                                &l,
                                r.c.count,
                            );
                            o.add(
                                "lustre_stats_time_min",
                                "gauge",
                                "Minimum time taken for an operation in microseconds.",
                                &l,
                                r.c.min,
                            );
                            o.add(
                                "lustre_stats_time_max",
                                "gauge",
                                "Maximum time taken for an operation in microseconds.",
                                &l,
                                r.c.max,
                            );
                            o.add(
                                "lustre_stats_time_total",
                                "gauge",
                                "Total time taken for an operation in microseconds.",
                                &l,
                                r.c.sum,
                            );
                        }
                    }
                }
            }
            ([kind @ ("obdfilter" | "mdt"), target, "exports", nid, "stats"], Value::Stats(s)) => {
                let c = component(kind);
                for r in s.rows.iter().filter(|r| r.c.count > 0) {
                    let l = [
                        ("component", c),
                        ("target", target),
                        ("nid", nid),
                        ("name", r.name.as_str()),
                    ];
                    o.add(
                        "lustre_client_export_stats",
                        "counter",
                        "Number of operations the target has performed per export.",
                        &l,
                        r.c.count,
                    );
                    if r.units == "bytes" {
                        o.add(
                            "lustre_client_export_bytes",
                            "counter",
                            "Number of bytes the target has moved per export.",
                            &l,
                            r.c.sum,
                        );
                    }
                }
            }
            ([kind @ ("obdfilter" | "mdt"), target, "job_stats"], Value::Jobs(j)) => {
                let c = component(kind);
                for job in &j.jobs {
                    for (d, v) in j.defs.iter().zip(&job.counters) {
                        let l = [
                            ("operation", d.name.as_str()),
                            ("component", c),
                            ("target", target),
                            ("jobid", job.job_id.as_str()),
                        ];
                        match d.name.as_str() {
                            "read_bytes" => {
                                o.add("lustre_job_read_samples_total", "counter", "Total number of reads that have been recorded.", &l, v.count);
                                o.add("lustre_job_read_bytes_total", "counter", "The total number of bytes that have been read.", &l, v.sum);
                            }
                            "write_bytes" => {
                                o.add("lustre_job_write_samples_total", "counter", "Total number of writes that have been recorded.", &l, v.count);
                                o.add("lustre_job_write_bytes_total", "counter", "The total number of bytes that have been written.", &l, v.sum);
                            }
                            _ => o.add("lustre_job_stats_total", "counter", "Number of operations the filesystem has performed, recorded by jobstats.", &l, v.count),
                        }
                    }
                }
            }
            (["ldlm", "namespaces", ns, what], v) => {
                let (c, target) = if let Some(t) = ns.strip_prefix("filter-") {
                    ("ost", t.trim_end_matches("_UUID"))
                } else if let Some(t) = ns.strip_prefix("mdt-") {
                    ("mdt", t.trim_end_matches("_UUID"))
                } else {
                    ("mgt", *ns)
                };
                let l = [("component", c), ("target", target)];
                let n = v.as_u64().unwrap_or(0);
                match *what {
                    "lock_count" => {
                        o.add("lustre_lock_count_total", "gauge", "Number of locks", &l, n)
                    }
                    "lock_unused_count" => o.add(
                        "lustre_lock_unused_count",
                        "gauge",
                        "Number of granted locks no one waits for",
                        &l,
                        n,
                    ),
                    "resource_count" => {
                        o.add("lustre_resource_count", "gauge", "Number of lock resources", &l, n)
                    }
                    "lru_size" => o.add(
                        "lustre_lock_lru_size",
                        "gauge",
                        "Locks the namespace keeps before asking the least recently used back",
                        &l,
                        n,
                    ),
                    _ => {}
                }
            }
            ([svc @ ("ost" | "mds" | "ldlm"), _, service, "stats"], Value::Stats(s)) => {
                let name = match (*svc, *service) {
                    ("ldlm", "ldlm_canceld") => "lustre_ldlm_canceld_stats".to_string(),
                    ("ldlm", _) => "lustre_ldlm_cbd_stats".to_string(),
                    ("ost", x) => format!("lustre_oss_{x}_stats"),
                    (_, x) => format!("lustre_mds_{x}_stats"),
                };
                for r in s.rows.iter().filter(|r| r.c.count > 0) {
                    let units = if r.units == "usecs" { "usec" } else { r.units.as_str() };
                    o.add(
                        &name,
                        "gauge",
                        "Service statistics: samples per counter",
                        &[("operation", r.name.as_str()), ("units", units)],
                        r.c.count,
                    );
                }
            }
            ([osd, target, "brw_stats"], Value::Brw(b)) if osd.starts_with("osd-") => {
                let names = [
                    (
                        "lustre_pages_per_bulk_rw_total",
                        "counter",
                        "Total number of pages per block RPC.",
                    ),
                    (
                        "lustre_discontiguous_pages_total",
                        "counter",
                        "Total number of logical discontinuities per RPC.",
                    ),
                    (
                        "lustre_discontiguous_blocks_total",
                        "counter",
                        "Total number of physical discontinuities per RPC.",
                    ),
                    (
                        "lustre_dio_frags",
                        "gauge",
                        "Current disk IO fragmentation for the given size.",
                    ),
                    (
                        "lustre_disk_io",
                        "gauge",
                        "Current number of I/O operations that are processing during the snapshot.",
                    ),
                    (
                        "lustre_io_time_milliseconds_total",
                        "counter",
                        "Total time in milliseconds the filesystem has spent processing various object sizes.",
                    ),
                    (
                        "lustre_disk_io_total",
                        "counter",
                        "Total number of operations the filesystem has performed for the given size.",
                    ),
                ];
                for (i, (name, ty, help)) in names.iter().enumerate() {
                    let scale = BRW_HISTS[i].2;
                    let Some(h) = b.h.get(i) else { continue };
                    for (rw, op) in [(0, "read"), (1, "write")] {
                        let Some(buckets) = h.get(rw) else { continue };
                        for (k, n) in buckets.iter().enumerate().take(HIST_MAX).filter(|x| *x.1 > 0)
                        {
                            let size = if scale { (1u64 << k).to_string() } else { k.to_string() };
                            o.add(
                                name,
                                ty,
                                help,
                                &[
                                    ("component", "ost"),
                                    ("operation", op),
                                    ("target", target),
                                    ("size", &size),
                                ],
                                *n,
                            );
                        }
                    }
                }
            }
            _ => {}
        }
    }
    o.render()
}
