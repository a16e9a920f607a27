//! `rustre-fsck PATH [--shards N]`: checks a Rustre OSD device or image file and every
//! structure and checksum in it, prints a summary per shard, and exits 1 on damage (naming
//! the damaged structure), 2 if the device cannot be opened.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use osd_nvme::dev::dma::DmaDev;
use osd_nvme::dev::mem::MemDev;
use osd_nvme::fsck::{FsckReport, fsck};
use osd_nvme::{BlockDev, Region};

/// Check a Rustre OSD.
#[derive(Debug, Parser)]
#[command(name = "rustre-fsck", version)]
struct Args {
    /// Block device or image file.
    path: PathBuf,
    /// Number of shard regions the device is split into.
    #[arg(long, default_value_t = 1)]
    shards: u64,
}

async fn check_all(dev: &impl BlockDev, shards: u64) -> Vec<FsckReport> {
    let mut out = Vec::new();
    for i in 0..shards {
        out.push(fsck(dev, Region::shard(dev, i, shards)).await);
    }
    out
}

fn main() -> ExitCode {
    let args = Args::parse();
    let path = args.path.clone();
    let shards = args.shards.max(1);
    let ex = glommio::LocalExecutorBuilder::default().io_memory(1 << 20).make();
    let Ok(ex) = ex else {
        eprintln!("rustre-fsck: cannot start the executor");
        return ExitCode::from(2);
    };
    let reports = ex.run(async move {
        match DmaDev::open(&path).await {
            Ok(dev) => Ok(check_all(&dev, shards).await),
            // No O_DIRECT (tmpfs): read the image into memory instead.
            Err(_) => match std::fs::read(&path) {
                Ok(img) => Ok(check_all(&MemDev::from_image(img), shards).await),
                Err(e) => Err(e),
            },
        }
    });
    let reports = match reports {
        Ok(r) => r,
        Err(e) => {
            eprintln!("rustre-fsck: {}: {e}", args.path.display());
            return ExitCode::from(2);
        }
    };
    let mut damaged = false;
    for (i, r) in reports.iter().enumerate() {
        for line in r.summary().lines() {
            println!("{}: shard {i}: {line}", args.path.display());
        }
        damaged |= !r.is_clean();
    }
    if damaged { ExitCode::from(1) } else { ExitCode::SUCCESS }
}
