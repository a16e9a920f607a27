//! Helper of the real-process crash test: `osd-crash-child PATH SEED TXNS`.
//!
//! Creates a file-backed OSD at PATH (io_uring O_DIRECT through glommio), runs the seeded
//! workload of `osd_nvme::sim` with a committer task, and prints `acked N` on stdout when
//! the commit callback of transaction N fires. The parent SIGKILLs it at a random moment,
//! remounts the file and checks that every acknowledged transaction is there.

use std::cell::Cell;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::rc::Rc;

use osd_nvme::dev::dma::DmaDev;
use osd_nvme::sim::{Workload, run_txn};
use osd_nvme::{DiskOsd, FormatOptions, OsdConfig, Region};

/// Size of the device file: small, so that rounds are quick.
const DEV_SIZE: u64 = 8 << 20;

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

async fn run(path: PathBuf, seed: u64, txns: usize) -> osd_nvme::Result<()> {
    let dev = DmaDev::create(&path, DEV_SIZE).await?;
    let region = Region::whole(&dev);
    DiskOsd::format(&dev, region, FormatOptions::default()).await?;
    let osd =
        DiskOsd::mount(dev, region, OsdConfig { commit_bytes: 64 << 10, ..OsdConfig::default() })
            .await?;
    glommio::spawn_local(osd.clone().committer()).detach();
    say("mounted");
    let mut w = Workload::new(seed);
    let inflight = Rc::new(Cell::new(0u32));
    for i in 1..=txns {
        let ops = w.next_txn();
        let n = inflight.clone();
        n.set(n.get() + 1);
        run_txn(&osd, &ops, i % 13 == 0, move |_| {
            n.set(n.get() - 1);
            say(&format!("acked {i}"));
        })
        .await?;
        // Let the committer run now and then, as a shard would between requests.
        if i % 3 == 0 {
            glommio::yield_if_needed().await;
            futures_lite::future::yield_now().await;
        }
    }
    osd_nvme::Osd::sync(&osd).await?;
    say("done");
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(path), Some(seed), Some(txns)) = (args.get(1), args.get(2), args.get(3)) else {
        eprintln!("usage: osd-crash-child PATH SEED TXNS");
        return ExitCode::from(2);
    };
    let (Ok(seed), Ok(txns)) = (seed.parse::<u64>(), txns.parse::<usize>()) else {
        eprintln!("osd-crash-child: SEED and TXNS are numbers");
        return ExitCode::from(2);
    };
    let path = PathBuf::from(path);
    let Ok(ex) = glommio::LocalExecutorBuilder::default().io_memory(1 << 20).make() else {
        eprintln!("osd-crash-child: cannot start the executor");
        return ExitCode::from(2);
    };
    match ex.run(run(path, seed, txns)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("osd-crash-child: {e}");
            ExitCode::from(1)
        }
    }
}
