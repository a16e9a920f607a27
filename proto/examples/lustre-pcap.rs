//! Writes a pcap of a protocol-correct synthetic Lustre conversation on port 988 between a
//! client (127.0.0.1) and servers (127.0.0.2), built only with proto's encoders.
//!
//! ```sh
//! cargo run -p proto --example lustre-pcap -- OUT.pcap
//! tshark -r OUT.pcap -d tcp.port==988,lnet -T fields -e lustre.ptlrpc_body.pb_opc -e lustre.ptlrpc_body.pb_type
//! ```

#[path = "../tests/support/conversation.rs"]
mod conversation;

fn main() -> std::process::ExitCode {
    let Some(out) = std::env::args_os().nth(1) else {
        eprintln!("usage: lustre-pcap OUT.pcap");
        return std::process::ExitCode::from(2);
    };
    let result = std::fs::File::create(&out)
        .map_err(|e| e.to_string())
        .and_then(|f| conversation::write(std::io::BufWriter::new(f)).map_err(|e| e.to_string()));
    match result {
        Ok(n) => {
            let names: Vec<&str> = conversation::OPCODES.iter().map(|o| o.name()).collect();
            println!("wrote {n} packets to {}: {}", out.to_string_lossy(), names.join(" "));
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("lustre-pcap: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
