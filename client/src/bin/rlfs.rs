//! `rlfs`: the `lfs` vocabulary over Rustre's userspace client, with paths absolute inside the
//! file system named by `--mgs` and `--fsname`.
//!
//! ```text
//! rlfs --mgs 127.0.0.1@tcp --fsname rustre mkdir /a
//! rlfs --mgs 127.0.0.1@tcp --fsname rustre setstripe -c 2 -S 1M /a/f
//! rlfs --mgs 127.0.0.1@tcp --fsname rustre ls -l /a
//! ```

use clap::{Parser, Subcommand};
use client::ns::{S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, user_layout};
use client::{Client, ClientConfig, Cred, Error};
use proto::fid::LuFid;
use proto::lov::{LOV_ALL_STRIPES, LOV_OFFSET_DEFAULT, LovMd};
use proto::mdt::MdtBody;
use proto::nid::Nid;
use proto::ost::ObdStatfs;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "rlfs",
    version,
    about = "lfs commands against a Rustre (Lustre) file system, without a mount"
)]
struct Cli {
    /// NID of the MGS, e.g. 127.0.0.1@tcp.
    #[arg(long, env = "RLFS_MGS", default_value = "127.0.0.1@tcp")]
    mgs: String,
    /// File system name.
    #[arg(long, env = "RLFS_FSNAME", default_value = "rustre")]
    fsname: String,
    /// LNet acceptor port of the servers.
    #[arg(long, default_value_t = proto::lnet::ACCEPTOR_PORT)]
    port: u16,
    /// Our own NID (default: chosen to reach the MGS).
    #[arg(long)]
    nid: Option<String>,
    /// Logs protocol progress to stderr (-v info, -vv debug, -vvv trace; RUSTRE_LOG overrides).
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Seconds before an RPC is resent.
    #[arg(long, default_value_t = 20)]
    timeout: u64,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Mounts the file system on a directory through FUSE (as root): `mount MGSNID:/FSNAME DIR`.
    /// Returns once the mount is up; a background process serves it until `rlfs umount`.
    Mount {
        /// `MGSNID:/FSNAME`, e.g. 127.0.0.1@tcp:/rustre.
        source: String,
        /// The mount point.
        dir: std::path::PathBuf,
        /// Options: allow_other, default_permissions, ro, timeout=SECS (RPC resend),
        /// op_timeout=SECS (an operation fails with ETIMEDOUT after it), noatime, ...
        #[arg(short, default_value = "")]
        o: String,
        /// Serves in the foreground instead of returning once mounted.
        #[arg(short, long)]
        foreground: bool,
        /// Where the background process logs (default: /tmp/rlfs-mount-PID.log).
        #[arg(long)]
        log: Option<std::path::PathBuf>,
    },
    /// Unmounts a FUSE mount (lazily when it is busy).
    Umount {
        /// The mount point.
        dir: std::path::PathBuf,
    },
    /// Space (or inode) usage of every MDT and OST, and the file system summary.
    #[command(disable_help_flag = true)]
    Df {
        /// Sizes in human-readable units (powers of 1024).
        #[arg(short = 'h', long = "human-readable")]
        human: bool,
        /// Prints help.
        #[arg(long, action = clap::ArgAction::Help)]
        help: Option<bool>,
        /// Inodes instead of blocks.
        #[arg(short, long)]
        inodes: bool,
        /// A path in a FUSE mount: reports that mount's file system.
        path: Option<String>,
    },
    /// Creates directories.
    Mkdir {
        /// Permission bits (octal).
        #[arg(short, long, default_value = "755")]
        mode: String,
        /// Creates missing parents, and accepts existing directories.
        #[arg(short, long)]
        parents: bool,
        #[arg(required = true)]
        paths: Vec<String>,
    },
    /// Lists directories (or names files).
    Ls {
        /// Long listing: mode, links, owner, group, size, mtime, name.
        #[arg(short)]
        l: bool,
        /// Includes `.` and `..`.
        #[arg(short)]
        a: bool,
        /// Lists a directory itself, not its contents.
        #[arg(short)]
        d: bool,
        #[arg(default_value = "/")]
        paths: Vec<String>,
    },
    /// File status, as stat(1) prints it, with the FID.
    Stat {
        /// Does not follow a final symlink.
        #[arg(short = 'L', long)]
        no_follow: bool,
        #[arg(required = true)]
        paths: Vec<String>,
    },
    /// Removes files (and, with -r, directory trees).
    Rm {
        /// Recursive.
        #[arg(short, long)]
        recursive: bool,
        /// Ignores missing paths.
        #[arg(short, long)]
        force: bool,
        #[arg(required = true)]
        paths: Vec<String>,
    },
    /// Removes empty directories.
    Rmdir {
        #[arg(required = true)]
        paths: Vec<String>,
    },
    /// Renames (a file or directory; an existing target is replaced).
    Mv { src: String, dst: String },
    /// Makes a hard link, or with -s a symbolic link holding TARGET.
    Ln {
        /// Symbolic.
        #[arg(short)]
        s: bool,
        target: String,
        link: String,
    },
    /// Creates a file with the given striping, or sets a directory's default striping.
    Setstripe {
        /// Stripe count (0 = default, -1 = all OSTs).
        #[arg(short = 'c', long = "stripe-count", allow_hyphen_values = true)]
        count: Option<i32>,
        /// Stripe size in bytes, with K/M/G suffixes (0 = default).
        #[arg(short = 'S', long = "stripe-size")]
        size: Option<String>,
        /// Index of the first OST (-1 = any).
        #[arg(short = 'i', long = "stripe-index", allow_hyphen_values = true)]
        index: Option<i32>,
        /// Removes a directory's default striping.
        #[arg(short = 'd', long)]
        delete: bool,
        path: String,
    },
    /// Prints striping.
    Getstripe {
        /// Only the stripe count.
        #[arg(short = 'c', long = "stripe-count")]
        count: bool,
        /// Only the stripe size.
        #[arg(short = 'S', long = "stripe-size")]
        size: bool,
        /// Only the first OST index.
        #[arg(short = 'i', long = "stripe-index")]
        index: bool,
        /// A directory's own default, not its entries.
        #[arg(short = 'd', long)]
        directory: bool,
        #[arg(required = true)]
        paths: Vec<String>,
    },
    /// Copies a file in, out of, or within the file system. Paths inside the file system
    /// start with ':' (`rlfs cp data.bin :/a/data.bin`, `rlfs cp :/a/data.bin -`); '-' is
    /// standard input or output.
    Cp {
        /// Stripe count of a new file in the file system (0 = default, -1 = all OSTs).
        #[arg(short = 'c', long = "stripe-count", allow_hyphen_values = true)]
        count: Option<i32>,
        /// Stripe size of a new file (K/M/G suffixes).
        #[arg(short = 'S', long = "stripe-size")]
        size: Option<String>,
        src: String,
        dst: String,
    },
    /// Writes files of the file system to standard output.
    Cat {
        #[arg(required = true)]
        paths: Vec<String>,
    },
    /// Prints the FID of each path.
    Path2fid {
        #[arg(required = true)]
        paths: Vec<String>,
    },
}

/// `MGSNID:/FSNAME` split into the MGS NID and the file system name.
fn parse_source(s: &str) -> Option<(Nid, String)> {
    let (nid, fsname) = s.split_once(":/")?;
    let nid = nid.parse().ok()?;
    (!fsname.is_empty() && !fsname.contains('/')).then(|| (nid, fsname.to_string()))
}

/// The Rustre FUSE mount (MGS, file system name, mount point) holding a host path, and the
/// path inside that file system; None for paths outside every mount (paths inside the file
/// system, as rlfs takes them).
fn in_mount(p: &str) -> Option<(Nid, String, String)> {
    use std::path::{Path, PathBuf};
    let path = Path::new(p);
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().ok()?.join(path)
    };
    // A new name (setstripe creates the file) resolves through its parent.
    let real = std::fs::canonicalize(&abs).ok().or_else(|| {
        let parent = std::fs::canonicalize(abs.parent()?).ok()?;
        Some(parent.join(abs.file_name()?))
    })?;
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mut best: Option<(PathBuf, Nid, String)> = None;
    for l in info.lines() {
        let Some(mp) = l.split(' ').nth(4) else { continue };
        let Some(tail) = l.split(" - ").nth(1) else { continue };
        let mut t = tail.split(' ');
        let (Some(ty), Some(src)) = (t.next(), t.next()) else { continue };
        if !ty.starts_with("fuse") {
            continue;
        }
        let Some((nid, fsname)) = parse_source(src) else { continue };
        let mp = PathBuf::from(mp);
        if real.starts_with(&mp)
            && best.as_ref().is_none_or(|b| mp.as_os_str().len() > b.0.as_os_str().len())
        {
            best = Some((mp, nid, fsname));
        }
    }
    let (mp, nid, fsname) = best?;
    let inner = real.strip_prefix(&mp).ok()?;
    Some((nid, fsname, format!("/{}", inner.display())))
}

/// Paths of `lfs`-style commands that lie in a FUSE mount become paths inside its file
/// system, and the mount names the file system (`rlfs getstripe /mnt/rustre/f`).
fn paths_in_mount(cmd: &mut Cmd) -> Option<(Nid, String)> {
    let mut fs: Option<(Nid, String)> = None;
    let mut fix = |p: &mut String| {
        if let Some((n, f, inner)) = in_mount(p)
            && fs.as_ref().is_none_or(|x| x.1 == f)
        {
            fs = Some((n, f));
            *p = inner;
        }
    };
    match cmd {
        Cmd::Setstripe { path, .. } => fix(path),
        Cmd::Getstripe { paths, .. } | Cmd::Path2fid { paths } => paths.iter_mut().for_each(fix),
        Cmd::Df { path: Some(p), .. } => fix(p),
        _ => {}
    }
    fs
}

/// Whether `dir` is a mount point of this namespace (a line of /proc/self/mountinfo).
fn is_mounted(dir: &std::path::Path) -> bool {
    let Ok(m) = std::fs::read_to_string("/proc/self/mountinfo") else { return false };
    let d = dir.display().to_string();
    // Mount points are the fifth field; a FUSE mount's type follows the " - " separator.
    m.lines().any(|l| {
        l.split(' ').nth(4) == Some(d.as_str())
            && l.split(" - ").nth(1).is_some_and(|t| t.starts_with("fuse"))
    })
}

/// `rlfs mount` without `-f`: runs itself with `-f` in its own process group, logging to a
/// file, and returns when the mount is up (or the server fails).
fn mount_background(
    source: &str,
    dir: &std::path::Path,
    log: Option<&std::path::Path>,
) -> ExitCode {
    use std::os::unix::process::CommandExt;
    if parse_source(source).is_none() {
        eprintln!("rlfs: mount source must be MGSNID:/FSNAME, not '{source}'");
        return ExitCode::from(2);
    }
    let dir = match std::fs::canonicalize(dir) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("rlfs: {}: {e}", dir.display());
            return ExitCode::from(1);
        }
    };
    let log = log.map_or_else(
        || std::path::PathBuf::from(format!("/tmp/rlfs-mount-{}.log", std::process::id())),
        std::path::Path::to_path_buf,
    );
    let logf = match std::fs::OpenOptions::new().create(true).append(true).open(&log) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("rlfs: log {}: {e}", log.display());
            return ExitCode::from(1);
        }
    };
    let Ok(me) = std::env::current_exe() else {
        eprintln!("rlfs: cannot find my own executable");
        return ExitCode::from(1);
    };
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    args.push("--foreground".into());
    let child = std::process::Command::new(me)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(logf)
        .process_group(0)
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            eprintln!("rlfs: starting the mount process: {e}");
            return ExitCode::from(1);
        }
    };
    let t = std::time::Instant::now();
    loop {
        if is_mounted(&dir) {
            return ExitCode::SUCCESS;
        }
        if let Ok(Some(st)) = child.try_wait() {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            eprintln!("rlfs: mount failed ({st}):\n{}", text.trim_end());
            return ExitCode::from(1);
        }
        if t.elapsed() > Duration::from_secs(300) {
            eprintln!("rlfs: mount did not come up in 300 s; see {}", log.display());
            return ExitCode::from(1);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn main() -> ExitCode {
    client::tune_allocator();
    let cli = Cli::parse();
    ptlrpc::logger::init(match cli.verbose {
        0 => log::LevelFilter::Warn,
        1 => log::LevelFilter::Info,
        2 => log::LevelFilter::Debug,
        _ => log::LevelFilter::Trace,
    });
    let mgs: Nid = match cli.mgs.parse() {
        Ok(n) => n,
        Err(e) => {
            eprintln!("rlfs: bad MGS NID '{}': {e}", cli.mgs);
            return ExitCode::from(2);
        }
    };
    let mut mgs = mgs;
    let mut fsname = cli.fsname.clone();
    if let Cmd::Umount { dir } = &cli.cmd {
        return match client::fuse::unmount(dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("rlfs: {e}");
                ExitCode::from(1)
            }
        };
    }
    if let Cmd::Mount { source, foreground: false, dir, log, .. } = &cli.cmd {
        return mount_background(source, dir, log.as_deref());
    }
    if let Cmd::Mount { source, .. } = &cli.cmd {
        match parse_source(source) {
            Some((m, f)) => (mgs, fsname) = (m, f),
            None => {
                eprintln!("rlfs: mount source must be MGSNID:/FSNAME, not '{source}'");
                return ExitCode::from(2);
            }
        }
    }
    let mut cli = cli;
    let mut mnt = format!("{}:/{}", cli.mgs, cli.fsname);
    if let Some((m, f)) = paths_in_mount(&mut cli.cmd) {
        mnt = format!("{m}:/{f}");
        (mgs, fsname) = (m, f);
    }
    let mut cfg = ClientConfig::new(mgs, &fsname);
    cfg.port = cli.port;
    cfg.timeout = Duration::from_secs(cli.timeout.max(1));
    cfg.jobid = "rlfs".into();
    if let Some(n) = &cli.nid {
        match n.parse() {
            Ok(n) => cfg.nid = Some(n),
            Err(e) => {
                eprintln!("rlfs: bad NID '{n}': {e}");
                return ExitCode::from(2);
            }
        }
    }
    let mut mount_opts = None;
    if let Cmd::Mount { o, .. } = &cli.cmd {
        match client::fuse::MountOptions::parse(o, &mut cfg) {
            Ok(m) => mount_opts = Some(m),
            Err(e) => {
                eprintln!("rlfs: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let c = match Client::mount(cfg) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("rlfs: cannot mount {}:/{}: {e}", cli.mgs, cli.fsname);
            return ExitCode::from(1);
        }
    };
    if let (Cmd::Mount { source, dir, .. }, Some(opts)) = (&cli.cmd, &mount_opts) {
        return match client::fuse::serve(c, dir, source, opts) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("rlfs: mount {source} on {}: {e}", dir.display());
                ExitCode::from(1)
            }
        };
    }
    let rc = run(&c, &mnt, cli.cmd);
    let _ = c.umount();
    rc
}

/// Prints `rlfs CMD: error` for each failure and returns whether any happened.
fn report(cmd: &str, r: Result<(), Error>, failed: &mut bool) {
    if let Err(e) = r {
        eprintln!("rlfs {cmd}: {e}");
        *failed = true;
    }
}

fn run(c: &Client, mnt: &str, cmd: Cmd) -> ExitCode {
    let cr = Cred::current();
    let mut failed = false;
    match cmd {
        Cmd::Df { human, inodes, .. } => report("df", df(c, mnt, human, inodes), &mut failed),
        Cmd::Mkdir { mode, parents, paths } => match u32::from_str_radix(&mode, 8) {
            Ok(m) if m <= 0o7777 => {
                for p in paths {
                    report("mkdir", mkdir(c, &p, m, parents, cr), &mut failed);
                }
            }
            _ => {
                eprintln!("rlfs mkdir: bad mode '{mode}'");
                failed = true;
            }
        },
        Cmd::Ls { l, a, d, paths } => {
            let many = paths.len() > 1;
            for (i, p) in paths.iter().enumerate() {
                let o = LsOpts { long: l, all: a, dir_itself: d };
                report("ls", ls(c, p, o, (many && i > 0, many), cr), &mut failed);
            }
        }
        Cmd::Stat { no_follow, paths } => {
            for p in paths {
                report("stat", stat(c, &p, !no_follow, cr), &mut failed);
            }
        }
        Cmd::Rm { recursive, force, paths } => {
            for p in paths {
                let r = rm(c, &p, recursive, cr);
                if !(force && matches!(&r, Err(e) if e.errno == libc::ENOENT)) {
                    report("rm", r, &mut failed);
                }
            }
        }
        Cmd::Rmdir { paths } => {
            for p in paths {
                report("rmdir", c.remove(&p, true, cr), &mut failed);
            }
        }
        Cmd::Mv { src, dst } => report("mv", mv(c, &src, &dst, cr), &mut failed),
        Cmd::Ln { s, target, link } => {
            let r = if s { c.symlink(&target, &link, cr) } else { c.link(&target, &link, cr) };
            report("ln", r, &mut failed);
        }
        Cmd::Setstripe { count, size, index, delete, path } => {
            report(
                "setstripe",
                setstripe(c, &path, count, size.as_deref(), index, delete, cr),
                &mut failed,
            );
        }
        Cmd::Getstripe { count, size, index, directory, paths } => {
            let only = Only { count, size, index };
            for p in paths {
                report("getstripe", getstripe(c, &p, only, directory, cr), &mut failed);
            }
        }
        Cmd::Cp { count, size, src, dst } => {
            report("cp", cp(c, &src, &dst, count, size.as_deref(), cr), &mut failed);
        }
        Cmd::Cat { paths } => {
            for p in paths {
                report("cat", cat(c, &p, &mut std::io::stdout().lock(), cr), &mut failed);
            }
        }
        Cmd::Path2fid { paths } => {
            let many = paths.len() > 1;
            for p in paths {
                let r = c.stat(&p, false, cr).map(|(f, _)| {
                    if many {
                        println!("{p}: {}", fid_str(f));
                    } else {
                        println!("{}", fid_str(f));
                    }
                });
                report("path2fid", r, &mut failed);
            }
        }
        // Handled before the client mounts.
        Cmd::Mount { .. } | Cmd::Umount { .. } => {}
    }
    if failed { ExitCode::from(1) } else { ExitCode::SUCCESS }
}

fn fid_str(f: LuFid) -> String {
    format!("[{:#x}:{:#x}:{:#x}]", f.seq(), f.oid(), f.ver())
}

/// `lfs df`'s rounding: used / (used + available), rounded up as df(1) does.
fn ratio(used: u64, avail: u64) -> u64 {
    let t = used + avail;
    if t == 0 { 0 } else { (used * 100).div_ceil(t) }
}

/// `lfs df -h`: divides by 1024 while the value is larger, then `%8.1f` and the unit letter.
fn cooked(v: u64) -> String {
    let mut f = v as f64;
    let mut i = 0;
    while f > 1024.0 && i < 8 {
        f /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{v:>11}")
    } else {
        format!("{f:>8.1}{}", "KMGTPEZY".as_bytes()[i - 1] as char)
    }
}

fn df_line(uuid: &str, s: &ObdStatfs, human: bool, inodes: bool, mnt: &str) -> String {
    let num = |v: u64| if human { cooked(v) } else { format!("{v:>11}") };
    let (a, b, c, pct) = if inodes {
        let (files, ffree) = (s.os_files.get(), s.os_ffree.get());
        let used = files.saturating_sub(ffree);
        (files, used, ffree, ratio(used, ffree))
    } else {
        let bs = u64::from(s.os_bsize.get());
        let shift = if human { 0 } else { 10 };
        let used = s.os_blocks.get().saturating_sub(s.os_bfree.get());
        (
            (s.os_blocks.get() * bs) >> shift,
            (used * bs) >> shift,
            (s.os_bavail.get() * bs) >> shift,
            ratio(used, s.os_bavail.get()),
        )
    };
    format!("{uuid:<20} {} {} {} {pct:>3}%  {mnt}", num(a), num(b), num(c))
}

fn df(c: &Client, mnt: &str, human: bool, inodes: bool) -> Result<(), Error> {
    let all = c.run(|fs| async move { fs.statfs_all().await })?;
    if inodes {
        println!(
            "{:<20} {:>11} {:>11} {:>11} {:>4}  Mounted on",
            "UUID", "Inodes", "IUsed", "IFree", "IUse%"
        );
    } else {
        let unit = if human { "bytes" } else { "1K-blocks" };
        println!(
            "{:<20} {unit:>11} {:>11} {:>11} {:>4}  Mounted on",
            "UUID", "Used", "Available", "Use%"
        );
    }
    // The summary: blocks from the OSTs only (when there are any), inodes from the MDTs,
    // limited by the objects the OSTs can still create.
    let mut sum = <ObdStatfs as zerocopy::FromZeros>::new_zeroed();
    sum.os_bsize = 1.into();
    let (mut ost_files, mut ost_ffree, mut have_ost) = (0u64, 0u64, false);
    for (uuid, s) in &all {
        let ost = uuid.contains("-OST");
        let idx = uuid
            .rsplit_once("-MDT")
            .or_else(|| uuid.rsplit_once("-OST"))
            .map_or(0, |(_, t)| u32::from_str_radix(t.trim_end_matches("_UUID"), 16).unwrap_or(0));
        let tag = format!("{mnt}[{}:{idx}]", if ost { "OST" } else { "MDT" });
        println!("{}", df_line(uuid, s, human, inodes, &tag));
        if ost && !have_ost {
            have_ost = true;
            sum.os_blocks = 0.into();
            sum.os_bfree = 0.into();
            sum.os_bavail = 0.into();
        }
        if ost {
            ost_files += s.os_files.get();
            ost_ffree += s.os_ffree.get();
        } else {
            sum.os_files = (sum.os_files.get() + s.os_files.get()).into();
            sum.os_ffree = (sum.os_ffree.get() + s.os_ffree.get()).into();
        }
        if ost || !have_ost {
            let bs = u64::from(s.os_bsize.get());
            sum.os_blocks = (sum.os_blocks.get() + s.os_blocks.get() * bs).into();
            sum.os_bfree = (sum.os_bfree.get() + s.os_bfree.get() * bs).into();
            sum.os_bavail = (sum.os_bavail.get() + s.os_bavail.get() * bs).into();
        }
    }
    if ost_files > 0 && ost_ffree < sum.os_ffree.get() {
        sum.os_files = (sum.os_files.get() - sum.os_ffree.get() + ost_ffree).into();
        sum.os_ffree = ost_ffree.into();
    }
    println!();
    println!("{}", df_line("filesystem_summary:", &sum, human, inodes, mnt));
    println!();
    Ok(())
}

fn mkdir(c: &Client, path: &str, mode: u32, parents: bool, cr: Cred) -> Result<(), Error> {
    if !parents {
        return c.mkdir(path, mode, cr).map(|_| ());
    }
    let mut cur = String::new();
    for comp in client::ns::components(path) {
        cur.push('/');
        cur.push_str(comp);
        match c.mkdir(&cur, mode, cr) {
            Ok(_) => {}
            Err(e) if e.errno == libc::EEXIST => {
                let (_, b) = c.stat(&cur, true, cr)?;
                if b.mbo_mode.get() & S_IFMT != S_IFDIR {
                    return Err(Error::new(libc::ENOTDIR).ctx(cur));
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn type_char(mode: u32) -> char {
    match mode & S_IFMT {
        S_IFDIR => 'd',
        S_IFLNK => 'l',
        S_IFREG => '-',
        0o020_000 => 'c',
        0o060_000 => 'b',
        0o010_000 => 'p',
        0o140_000 => 's',
        _ => '?',
    }
}

fn perm_string(mode: u32) -> String {
    let mut s = String::with_capacity(10);
    s.push(type_char(mode));
    let bits = [
        (0o400, 'r'),
        (0o200, 'w'),
        (0o100, 'x'),
        (0o040, 'r'),
        (0o020, 'w'),
        (0o010, 'x'),
        (0o004, 'r'),
        (0o002, 'w'),
        (0o001, 'x'),
    ];
    for (i, (b, ch)) in bits.iter().enumerate() {
        let special = match i {
            2 if mode & 0o4000 != 0 => Some(if mode & b != 0 { 's' } else { 'S' }),
            5 if mode & 0o2000 != 0 => Some(if mode & b != 0 { 's' } else { 'S' }),
            8 if mode & 0o1000 != 0 => Some(if mode & b != 0 { 't' } else { 'T' }),
            _ => None,
        };
        s.push(special.unwrap_or(if mode & b != 0 { *ch } else { '-' }));
    }
    s
}

fn user_name(uid: u32) -> String {
    // SAFETY: getpwuid_r writes into our buffers only; we read the name only on success.
    unsafe {
        let mut pw: libc::passwd = std::mem::zeroed();
        let mut buf = vec![0 as libc::c_char; 1024];
        let mut out: *mut libc::passwd = std::ptr::null_mut();
        if libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr(), buf.len(), &mut out) == 0
            && !out.is_null()
        {
            return std::ffi::CStr::from_ptr(pw.pw_name).to_string_lossy().into_owned();
        }
    }
    uid.to_string()
}

fn group_name(gid: u32) -> String {
    // SAFETY: getgrgid_r writes into our buffers only; we read the name only on success.
    unsafe {
        let mut gr: libc::group = std::mem::zeroed();
        let mut buf = vec![0 as libc::c_char; 1024];
        let mut out: *mut libc::group = std::ptr::null_mut();
        if libc::getgrgid_r(gid, &mut gr, buf.as_mut_ptr(), buf.len(), &mut out) == 0
            && !out.is_null()
        {
            return std::ffi::CStr::from_ptr(gr.gr_name).to_string_lossy().into_owned();
        }
    }
    gid.to_string()
}

/// Local time as `ls -l` shows it: `Mon DD HH:MM` within six months, else `Mon DD  YYYY`.
fn ls_time(t: i64) -> String {
    const MONTHS: [&str; 12] =
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    // SAFETY: localtime_r fills our struct from a valid time_t.
    let tm = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        let tt: libc::time_t = t;
        if libc::localtime_r(&tt, &mut tm).is_null() {
            return t.to_string();
        }
        tm
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let now = i64::try_from(now).unwrap_or(i64::MAX);
    let mon = MONTHS.get(usize::try_from(tm.tm_mon).unwrap_or(0)).copied().unwrap_or("???");
    if (now - t).abs() < 183 * 86_400 {
        format!("{mon} {:>2} {:02}:{:02}", tm.tm_mday, tm.tm_hour, tm.tm_min)
    } else {
        format!("{mon} {:>2}  {}", tm.tm_mday, tm.tm_year + 1900)
    }
}

fn long_line(b: &MdtBody, name: &str, link: Option<&str>) -> String {
    let mode = b.mbo_mode.get();
    let size = if matches!(mode & S_IFMT, 0o020_000 | 0o060_000) {
        let r = b.mbo_rdev.get();
        format!("{}, {}", (r >> 8) & 0xfff, (r & 0xff) | ((r >> 12) & 0xfff00))
    } else {
        b.mbo_size.get().to_string()
    };
    let mut s = format!(
        "{} {:>2} {} {} {:>8} {} {name}",
        perm_string(mode),
        b.mbo_nlink.get(),
        user_name(b.mbo_uid.get()),
        group_name(b.mbo_gid.get()),
        size,
        ls_time(i64::try_from(b.mbo_mtime.get()).unwrap_or(0)),
    );
    if let Some(l) = link {
        s.push_str(" -> ");
        s.push_str(l);
    }
    s
}

#[derive(Debug, Clone, Copy)]
struct LsOpts {
    long: bool,
    all: bool,
    dir_itself: bool,
}

fn ls(
    c: &Client,
    path: &str,
    o: LsOpts,
    (blank, header): (bool, bool),
    cr: Cred,
) -> Result<(), Error> {
    let LsOpts { long, all, dir_itself } = o;
    let (fid, body) = c.stat(path, true, cr)?;
    if body.mbo_mode.get() & S_IFMT != S_IFDIR || dir_itself {
        if long {
            let (_, lb) = c.stat(path, false, cr)?;
            let link = if lb.mbo_mode.get() & S_IFMT == S_IFLNK {
                Some(readlink(c, path, cr)?)
            } else {
                None
            };
            println!(
                "{}",
                long_line(if link.is_some() { &lb } else { &body }, path, link.as_deref())
            );
        } else {
            println!("{path}");
        }
        return Ok(());
    }
    if blank {
        println!();
    }
    if header {
        println!("{path}:");
    }
    let mut ents = c.run(move |fs| async move { fs.readdir(fid, cr).await })?;
    ents.retain(|e| all || !e.name.starts_with('.'));
    ents.sort_by(|a, b| a.name.cmp(&b.name));
    if !long {
        for e in &ents {
            println!("{}", e.name);
        }
        return Ok(());
    }
    let fids: Vec<LuFid> = ents.iter().map(|e| e.fid).collect();
    let bodies = c.run(move |fs| async move {
        let mut out = Vec::with_capacity(fids.len());
        for f in fids {
            let b = fs.getattr_sized(f, cr).await?;
            let link = if b.mbo_mode.get() & S_IFMT == S_IFLNK {
                Some(String::from_utf8_lossy(&fs.readlink_fid(f, cr).await?).into_owned())
            } else {
                None
            };
            out.push((b, link));
        }
        Ok(out)
    })?;
    let blocks: u64 = bodies.iter().map(|(b, _)| b.mbo_blocks.get()).sum();
    println!("total {}", blocks / 2);
    for (e, (b, link)) in ents.iter().zip(bodies.iter()) {
        println!("{}", long_line(b, &e.name, link.as_deref()));
    }
    Ok(())
}

fn readlink(c: &Client, path: &str, cr: Cred) -> Result<String, Error> {
    let p = path.to_string();
    c.run(move |fs| async move {
        let (f, _) = fs.resolve(&p, cr, false).await?;
        Ok(String::from_utf8_lossy(&fs.readlink_fid(f, cr).await?).into_owned())
    })
}

fn type_name(mode: u32, size: u64) -> &'static str {
    match mode & S_IFMT {
        S_IFDIR => "directory",
        S_IFLNK => "symbolic link",
        S_IFREG if size == 0 => "regular empty file",
        S_IFREG => "regular file",
        0o020_000 => "character special file",
        0o060_000 => "block special file",
        0o010_000 => "fifo",
        0o140_000 => "socket",
        _ => "weird file",
    }
}

fn full_time(t: u64) -> String {
    let tt = i64::try_from(t).unwrap_or(0);
    // SAFETY: localtime_r fills our struct from a valid time_t.
    let tm = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&tt, &mut tm).is_null() {
            return t.to_string();
        }
        tm
    };
    let off = tm.tm_gmtoff;
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.000000000 {}{:02}{:02}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        if off < 0 { '-' } else { '+' },
        off.abs() / 3600,
        (off.abs() % 3600) / 60
    )
}

fn stat(c: &Client, path: &str, follow: bool, cr: Cred) -> Result<(), Error> {
    let (fid, b) = c.stat(path, follow, cr)?;
    let mode = b.mbo_mode.get();
    let name = if mode & S_IFMT == S_IFLNK {
        format!("{path} -> {}", readlink(c, path, cr)?)
    } else {
        path.to_string()
    };
    println!("  File: {name}");
    println!(
        "  Size: {:<15} Blocks: {:<10} IO Block: {:<6} {}",
        b.mbo_size.get(),
        b.mbo_blocks.get(),
        4096,
        type_name(mode, b.mbo_size.get())
    );
    println!("   FID: {}  Links: {}", fid_str(fid), b.mbo_nlink.get());
    println!(
        "Access: ({:04o}/{})  Uid: ({:>5}/{:>8})   Gid: ({:>5}/{:>8})",
        mode & 0o7777,
        perm_string(mode),
        b.mbo_uid.get(),
        user_name(b.mbo_uid.get()),
        b.mbo_gid.get(),
        group_name(b.mbo_gid.get())
    );
    println!("Access: {}", full_time(b.mbo_atime.get()));
    println!("Modify: {}", full_time(b.mbo_mtime.get()));
    println!("Change: {}", full_time(b.mbo_ctime.get()));
    Ok(())
}

fn rm(c: &Client, path: &str, recursive: bool, cr: Cred) -> Result<(), Error> {
    let (fid, b) = c.stat(path, false, cr)?;
    if b.mbo_mode.get() & S_IFMT != S_IFDIR {
        return c.remove(path, false, cr);
    }
    if !recursive {
        return Err(Error::new(libc::EISDIR).ctx(path.to_string()));
    }
    let ents = c.run(move |fs| async move { fs.readdir(fid, cr).await })?;
    for e in ents {
        if e.name == "." || e.name == ".." {
            continue;
        }
        rm(c, &format!("{}/{}", path.trim_end_matches('/'), e.name), true, cr)?;
    }
    c.remove(path, true, cr)
}

fn mv(c: &Client, src: &str, dst: &str, cr: Cred) -> Result<(), Error> {
    // `mv a /dir` moves into an existing directory, as mv(1) does.
    let target = match c.stat(dst, true, cr) {
        Ok((_, b)) if b.mbo_mode.get() & S_IFMT == S_IFDIR => {
            let base = client::ns::components(src).last().copied().unwrap_or_default().to_string();
            let (sf, _) = c.stat(src, false, cr)?;
            let (df, _) = c.stat(dst, true, cr)?;
            if sf == df { dst.to_string() } else { format!("{}/{base}", dst.trim_end_matches('/')) }
        }
        _ => dst.to_string(),
    };
    c.rename(src, &target, cr)
}

/// Bytes moved per read or write call of cp/cat.
const COPY_CHUNK: u64 = 8 << 20;

fn io_err(e: &std::io::Error, what: &str) -> Error {
    Error::new(e.raw_os_error().unwrap_or(libc::EIO)).ctx(what.to_string())
}

/// Streams a file of the file system to `out`.
fn cat(c: &Client, path: &str, out: &mut dyn std::io::Write, cr: Cred) -> Result<(), Error> {
    let f = c.open(path, proto::mdt::open::FMODE_READ, 0, Vec::new(), cr)?;
    let mut off = 0u64;
    let r = loop {
        let buf = match c.read(&f, off, COPY_CHUNK) {
            Ok(b) => b,
            Err(e) => break Err(e),
        };
        if buf.is_empty() {
            break Ok(());
        }
        if let Err(e) = out.write_all(&buf) {
            break Err(io_err(&e, "writing the output"));
        }
        off += buf.len() as u64;
    };
    let closed = c.close(f);
    r.and(closed).map_err(|e| e.ctx(path.to_string()))
}

fn cp(
    c: &Client,
    src: &str,
    dst: &str,
    count: Option<i32>,
    size: Option<&str>,
    cr: Cred,
) -> Result<(), Error> {
    use proto::mdt::open as of;
    use std::io::{Read, Write};
    let inside = |p: &str| p.strip_prefix(':').map(str::to_string);
    // Into the file system: create (or truncate) the target with the asked striping.
    let open_dst = |p: &str| -> Result<client::file::OpenFile, Error> {
        let lay = if count.is_some() || size.is_some() {
            let ss = size.map(parse_stripe_size).transpose()?.unwrap_or(0);
            user_layout(ss, count.unwrap_or(0), -1)
        } else {
            Vec::new()
        };
        let f = c.open(p, of::FMODE_READ | of::FMODE_WRITE | of::CREAT, 0o644, lay, cr)?;
        if c.size(&f)? > 0 {
            c.truncate(&f, 0, cr)?;
        }
        Ok(f)
    };
    match (inside(src), inside(dst)) {
        (None, Some(d)) => {
            let mut input: Box<dyn Read> = if src == "-" {
                Box::new(std::io::stdin().lock())
            } else {
                Box::new(std::fs::File::open(src).map_err(|e| io_err(&e, src))?)
            };
            let f = open_dst(&d)?;
            let mut off = 0u64;
            let mut buf = vec![0u8; usize::try_from(COPY_CHUNK).unwrap_or(1 << 20)];
            let r = loop {
                let n = match read_full(&mut input, &mut buf) {
                    Ok(n) => n,
                    Err(e) => break Err(io_err(&e, src)),
                };
                if n == 0 {
                    break Ok(());
                }
                if let Err(e) = c.write(&f, off, buf[..n].to_vec()) {
                    break Err(e);
                }
                off += n as u64;
            };
            let closed = c.close(f);
            r.and(closed).map_err(|e| e.ctx(d))
        }
        (Some(s), None) => {
            if dst == "-" {
                cat(c, &s, &mut std::io::stdout().lock(), cr)
            } else {
                let mut out = std::fs::File::create(dst).map_err(|e| io_err(&e, dst))?;
                cat(c, &s, &mut out, cr)?;
                out.flush().map_err(|e| io_err(&e, dst))
            }
        }
        (Some(s), Some(d)) => {
            let from = c.open(&s, of::FMODE_READ, 0, Vec::new(), cr)?;
            let to = open_dst(&d)?;
            let mut off = 0u64;
            let r = loop {
                let buf = match c.read(&from, off, COPY_CHUNK) {
                    Ok(b) => b,
                    Err(e) => break Err(e),
                };
                if buf.is_empty() {
                    break Ok(());
                }
                let n = buf.len() as u64;
                if let Err(e) = c.write(&to, off, buf) {
                    break Err(e);
                }
                off += n;
            };
            let a = c.close(from);
            let b = c.close(to);
            r.and(a).and(b)
        }
        (None, None) => Err(Error::new(libc::EINVAL)
            .ctx("one of the paths must be inside the file system (start it with ':')")),
    }
}

/// Reads until `buf` is full or the input ends.
fn read_full(r: &mut dyn std::io::Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn parse_stripe_size(s: &str) -> Result<u32, Error> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, ch)) if ch.is_ascii_alphabetic() => {
            let m: u64 = match ch.to_ascii_lowercase() {
                'k' => 1 << 10,
                'm' => 1 << 20,
                'g' => 1 << 30,
                _ => return Err(Error::new(libc::EINVAL).ctx(format!("bad stripe size '{s}'"))),
            };
            (&s[..i], m)
        }
        _ => (s, 1),
    };
    let v: u64 =
        num.parse().map_err(|_| Error::new(libc::EINVAL).ctx(format!("bad stripe size '{s}'")))?;
    let v = v * mult;
    if v != 0 && !v.is_multiple_of(65536) {
        return Err(
            Error::new(libc::EINVAL).ctx(format!("stripe size {v} is not a multiple of 64 KiB"))
        );
    }
    u32::try_from(v)
        .map_err(|_| Error::new(libc::EINVAL).ctx(format!("stripe size {v} is too large")))
}

fn setstripe(
    c: &Client,
    path: &str,
    count: Option<i32>,
    size: Option<&str>,
    index: Option<i32>,
    delete: bool,
    cr: Cred,
) -> Result<(), Error> {
    let existing = match c.stat(path, true, cr) {
        Ok((f, b)) => Some((f, b)),
        Err(e) if e.errno == libc::ENOENT => None,
        Err(e) => return Err(e),
    };
    if delete {
        let (f, b) = existing.ok_or_else(|| Error::new(libc::ENOENT).ctx(path.to_string()))?;
        if b.mbo_mode.get() & S_IFMT != S_IFDIR {
            return Err(Error::new(libc::ENOTDIR).ctx(path.to_string()));
        }
        return c.run(move |fs| async move {
            match fs.setxattr(f, "lustre.lov", None, 0, cr).await {
                Err(e) if e.errno == libc::ENODATA => Ok(()),
                r => r,
            }
        });
    }
    let ss = size.map(parse_stripe_size).transpose()?.unwrap_or(0);
    let sc = count.unwrap_or(0);
    if sc < -1 || sc > i32::from(proto::lov::LOV_MAX_STRIPE_COUNT) {
        return Err(Error::new(libc::EINVAL).ctx(format!("bad stripe count {sc}")));
    }
    let si = index.unwrap_or(-1);
    if !(-1..0xffff).contains(&si) {
        return Err(Error::new(libc::EINVAL).ctx(format!("bad stripe index {si}")));
    }
    let lum = user_layout(ss, sc, si);
    match existing {
        Some((f, b)) if b.mbo_mode.get() & S_IFMT == S_IFDIR => {
            c.run(move |fs| async move { fs.set_striping(f, &lum, cr).await })
        }
        Some(_) => Err(Error::new(libc::EEXIST).ctx(format!("{path}: file already has a layout"))),
        None => c.create(path, 0o644, lum, cr).map(|_| ()),
    }
}

#[derive(Debug, Clone, Copy)]
struct Only {
    count: bool,
    size: bool,
    index: bool,
}

fn getstripe(c: &Client, path: &str, only: Only, directory: bool, cr: Cred) -> Result<(), Error> {
    let (fid, b) = c.stat(path, true, cr)?;
    let is_dir = b.mbo_mode.get() & S_IFMT == S_IFDIR;
    let p = path.to_string();
    let lov = c.run(move |fs| async move {
        match fs.getstripe(&p, cr).await? {
            None if is_dir => fs.inherited_layout(cr).await.map(Some),
            l => Ok(l),
        }
    })?;
    if is_dir && !directory {
        print_layout(path, lov.as_ref(), true, only);
        let ents = c.run(move |fs| async move { fs.readdir(fid, cr).await })?;
        let mut ents: Vec<_> =
            ents.into_iter().filter(|e| e.name != "." && e.name != "..").collect();
        ents.sort_by(|a, b| a.name.cmp(&b.name));
        for e in ents {
            if e.ftype == S_IFREG || e.ftype == S_IFDIR || e.ftype == 0 {
                let child = format!("{}/{}", path.trim_end_matches('/'), e.name);
                let ch = child.clone();
                let (_, cb) = c.stat(&child, false, cr)?;
                let l = c.run(move |fs| async move { fs.getstripe(&ch, cr).await })?;
                print_layout(&child, l.as_ref(), cb.mbo_mode.get() & S_IFMT == S_IFDIR, only);
            }
        }
        return Ok(());
    }
    print_layout(path, lov.as_ref(), is_dir, only);
    Ok(())
}

fn offset_of(l: &LovMd, is_dir: bool) -> String {
    if is_dir || l.objects.is_empty() {
        if l.layout_gen == LOV_OFFSET_DEFAULT { "-1".into() } else { l.layout_gen.to_string() }
    } else {
        l.objects.first().map_or("-1".into(), |o| o.l_ost_idx.get().to_string())
    }
}

fn count_of(l: &LovMd) -> String {
    if l.stripe_count == LOV_ALL_STRIPES { "-1".into() } else { l.stripe_count.to_string() }
}

fn print_layout(path: &str, l: Option<&LovMd>, is_dir: bool, only: Only) {
    let one = only.count || only.size || only.index;
    let Some(l) = l else {
        if !one {
            println!("{path} has no stripe info");
        }
        return;
    };
    if one {
        let mut parts = Vec::new();
        if only.count {
            parts.push(count_of(l));
        }
        if only.size {
            parts.push(l.stripe_size.to_string());
        }
        if only.index {
            parts.push(offset_of(l, is_dir));
        }
        println!("{}", parts.join(" "));
        return;
    }
    println!("{path}");
    if is_dir {
        println!(
            "stripe_count:  {} stripe_size:   {} pattern:       raid0 stripe_offset: {}",
            count_of(l),
            l.stripe_size,
            offset_of(l, true)
        );
        println!();
        return;
    }
    println!("lmm_stripe_count:  {}", count_of(l));
    println!("lmm_stripe_size:   {}", l.stripe_size);
    println!("lmm_pattern:       raid0");
    println!("lmm_layout_gen:    {}", l.layout_gen);
    println!("lmm_stripe_offset: {}", offset_of(l, false));
    if !l.pool.is_empty() {
        println!("lmm_pool:          {}", l.pool);
    }
    println!("\tobdidx\t\t objid\t\t objid\t\t group");
    for o in &l.objects {
        let idx = o.l_ost_idx.get();
        let (id, group) = match o.l_ost_oi.to_fid(idx) {
            // IDIF objects print as MDT0's legacy {id, 0}; FID objects as {oid, seq}.
            Ok(f) if f.seq() >> 32 == 0x1 => ((f.seq() & 0xffff) << 32 | u64::from(f.oid()), 0),
            Ok(f) => (u64::from(f.oid()), f.seq()),
            Err(_) => o.l_ost_oi.as_legacy(),
        };
        if group == 0 {
            println!("\t{idx:>6}\t{id:>14}\t{:>#13x}\t{group:>14}", id);
        } else {
            println!("\t{idx:>6}\t{id:>14}\t{:>#13x}\t{:>#14x}", id, group);
        }
    }
    println!();
}
