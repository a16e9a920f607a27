//! The `rustre` appliance binary: `rustre mkfs`, `rustre fsck`, `rustre serve`, and
//! `rustre console` (the management console of a running node, over HTTP).

use appliance::config::{ApplianceConfig, TargetConfig, parse_size};
use appliance::node;
use appliance::store::{Backend, TargetKind};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(name = "rustre", version, about = "Rustre: a Lustre server appliance")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Formats a target device or file.
    Mkfs {
        /// File system name.
        #[arg(long, default_value = "rustre")]
        fsname: String,
        /// Format an MGS.
        #[arg(long)]
        mgs: bool,
        /// Format MDT INDEX.
        #[arg(long)]
        mdt: Option<u32>,
        /// Format OST INDEX.
        #[arg(long)]
        ost: Option<u32>,
        /// Backend: mem, file:PATH or dev:PATH.
        #[arg(long)]
        backend: String,
        /// Size of a file backend (e.g. 1G).
        #[arg(long, default_value = "1G")]
        size: String,
        /// Shards (cores) the target is split into.
        #[arg(long)]
        cores: Option<usize>,
    },
    /// Checks a formatted target (file or device) offline: label, journal, checkpoints and
    /// every checksum of every shard. Exits 1 on damage, naming the structure.
    Fsck {
        /// The target's file or device.
        path: PathBuf,
    },
    /// Serves the configured targets.
    Serve {
        /// Configuration file (TOML).
        #[arg(long, conflicts_with = "data")]
        config: Option<PathBuf>,
        /// The embedded default: an all-in-one file system "rustre" (MGS, MDT0000, OST0000,
        /// OST0001) in files under DIR, formatted on first start.
        #[arg(long)]
        data: Option<PathBuf>,
        /// Shards (one pinned executor per core).
        #[arg(long)]
        cores: Option<usize>,
        /// Size of each target file created by --data.
        #[arg(long, default_value = "4G")]
        size: String,
        /// LNet acceptor port (default 988).
        #[arg(long)]
        port: Option<u16>,
        /// Accept connections from unprivileged ports (Lustre's accept=all).
        #[arg(long)]
        accept_all: bool,
        /// Management HTTP address (default 127.0.0.1:8080, or the config's http.listen);
        /// "off" disables it. Off loopback the config must hold http.read_token and
        /// http.admin_token.
        #[arg(long, value_name = "HOST:PORT")]
        http: Option<String>,
        /// Run the console REPL on stdin even when it is not a terminal.
        #[arg(long)]
        repl: bool,
    },
    /// Runs management commands on a node over its HTTP API (`help` lists them); without a
    /// command, an interactive console.
    Console {
        /// The node's HTTP address.
        #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:8080")]
        http: String,
        /// Access token (read-only or admin), when the node requires one.
        #[arg(long, env = "RUSTRE_TOKEN")]
        token: Option<String>,
        /// The command and its arguments (e.g. `get_param obdfilter.*.stats`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        cmd: Vec<String>,
    },
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn install_signals() {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
    let act = SigAction::new(SigHandler::Handler(on_signal), SaFlags::SA_RESTART, SigSet::empty());
    for s in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        if let Err(e) = unsafe { sigaction(s, &act) } {
            log::warn!("cannot handle {s}: {e}");
        }
    }
}

fn serve(cfg: ApplianceConfig, format_missing: bool, repl: bool) -> Result<(), String> {
    let h = &cfg.http;
    mgmt::http::check_bind(&h.listen, h.read_token.as_deref(), h.admin_token.as_deref())?;
    let n = node::prepare(&cfg, format_missing)?;
    install_signals();
    let console = if repl || std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        let (tx, rx) = flume::bounded(1);
        mgmt::repl::spawn_stdin(tx, format!("{}> ", cfg.fsname))
            .map_err(|e| format!("console: {e}"))?;
        Some(rx)
    } else {
        None
    };
    let running = node::start_with(cfg, n, console)?;
    let mut reboot = false;
    loop {
        std::thread::sleep(Duration::from_millis(100));
        if STOP.load(Ordering::SeqCst) {
            log::info!("rustre: stopping (signal)");
            break;
        }
        if let Some(r) = appliance::mgmt::stop_asked() {
            log::info!(
                "rustre: stopping ({} from the console)",
                if r { "reboot" } else { "shutdown" }
            );
            reboot = r;
            break;
        }
        if let Some(e) = node::fatal_error() {
            running.stop();
            let _ = running.join();
            return Err(e);
        }
    }
    running.stop();
    running.join()?;
    log::info!("rustre: stopped cleanly");
    if std::process::id() == 1 {
        power_off(reboot);
    }
    Ok(())
}

/// As `/init` the process cannot just exit (the kernel would panic): every target is flushed
/// by now; sync what the kernel holds and power off or reboot.
fn power_off(reboot: bool) {
    use nix::sys::reboot::{RebootMode, reboot as sys_reboot};
    nix::unistd::sync();
    let mode = if reboot { RebootMode::RB_AUTOBOOT } else { RebootMode::RB_POWER_OFF };
    let Err(e) = sys_reboot(mode);
    log::error!("rustre: {mode:?}: {e}");
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.cmd {
        Cmd::Mkfs { fsname, mgs, mdt, ost, backend, size, cores } => {
            let kind = match (mgs, mdt, ost) {
                (true, None, None) => (TargetKind::Mgs, 0),
                (false, Some(i), None) => (TargetKind::Mdt, i),
                (false, None, Some(i)) => (TargetKind::Ost, i),
                _ => return Err("give exactly one of --mgs, --mdt INDEX, --ost INDEX".into()),
            };
            let backend: Backend = backend.parse()?;
            let t = TargetConfig { kind: kind.0, index: kind.1, backend, size: parse_size(&size)? };
            let n = cores.unwrap_or_else(|| {
                std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
            });
            let l = node::mkfs(&fsname, &t, u32::try_from(n).map_err(|_| "too many cores")?)?;
            println!(
                "formatted {} {} of {} on {} ({} shards)",
                l.kind.as_str(),
                l.index,
                l.fsname,
                t.backend,
                l.nshards
            );
            Ok(())
        }
        Cmd::Fsck { path } => {
            let (label, reports) = node::fsck(&path)?;
            println!(
                "{}: {} {} of {} ({} shards)",
                path.display(),
                label.kind.as_str(),
                label.index,
                label.fsname,
                label.nshards
            );
            let mut damaged = 0;
            for (i, r) in reports.iter().enumerate() {
                println!("shard {i}: {}", r.summary().trim_end());
                if !r.is_clean() {
                    damaged += 1;
                }
            }
            if damaged > 0 {
                return Err(format!("{damaged} damaged shard(s)"));
            }
            Ok(())
        }
        Cmd::Console { http, token, cmd } => {
            if mgmt::remote::main(&http, token.as_deref(), &cmd)? {
                Ok(())
            } else {
                Err("command failed".into())
            }
        }
        Cmd::Serve { config, data, cores, size, port, accept_all, http, repl } => {
            let (mut cfg, format) = match (config, data) {
                (Some(c), None) => (ApplianceConfig::load(&c)?, false),
                (None, Some(d)) => (ApplianceConfig::embedded(&d, parse_size(&size)?), true),
                _ => return Err("give --config FILE or --data DIR".into()),
            };
            if let Some(c) = cores {
                cfg.cores = c;
            }
            if let Some(p) = port {
                cfg.port = p;
            }
            if accept_all {
                cfg.accept_secure = false;
            }
            if let Some(h) = http {
                cfg.http.listen = if h == "off" { String::new() } else { h };
            }
            cfg.validate()?;
            serve(cfg, format, repl)
        }
    }
}

/// `/init` of the appliance image: boot duties, then serve with the REPL on the console.
/// Returns only through a power off, a reboot, or a fatal error (which reboots).
fn pid1_main() -> ExitCode {
    use appliance::pid1;
    let cfg = pid1::boot().unwrap_or_else(|e| pid1::fatal(&e));
    match serve(cfg, true, true) {
        Ok(()) => pid1::fatal("the node stopped but the power is still on"),
        Err(e) => pid1::fatal(&e),
    }
}

fn main() -> ExitCode {
    ptlrpc::logger::init(log::LevelFilter::Info);
    if appliance::pid1::is_pid1() {
        return pid1_main();
    }
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rustre: {e}");
            ExitCode::FAILURE
        }
    }
}
