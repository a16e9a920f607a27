//! `cargo run -p image -- build`: builds the appliance image into `target/image/`.

use std::process::ExitCode;

const USAGE: &str = "usage: image build [--rustre PATH] [--out DIR]
  Settings from the environment: RUSTRE_KERNEL_PACKAGE (default linux-image-6.1.0-56-amd64),
  RUSTRE_KERNEL_VERSION (default 6.1.192-2), SOURCE_DATE_EPOCH (default 2026-01-01).";

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() != Some("build") {
        eprintln!("{USAGE}");
        return ExitCode::FAILURE;
    }
    let mut s = image::build::Settings::from_env();
    while let Some(a) = args.next() {
        match (a.as_str(), args.next()) {
            ("--rustre", Some(p)) => s.rustre = Some(p.into()),
            ("--out", Some(p)) => s.out = p.into(),
            _ => {
                eprintln!("{USAGE}");
                return ExitCode::FAILURE;
            }
        }
    }
    match image::build::build(&s) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("image: {e}");
            ExitCode::FAILURE
        }
    }
}
