//! Random and mutated bytes fed to every decoder for a bounded number of cases: none may
//! panic. Mutations start from valid encodings so that they reach deep into each decoder.
//! A failing case prints its decoder, seed and input; `PROTO_GARBAGE_SEED=N` replays a run.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step fails the test

#[path = "support/conversation.rs"]
mod conversation;

use proto::decoders::Decoder;
use proto::frame::parse_frame;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Valid inputs to mutate: every frame payload of the synthetic conversation, the frames
/// themselves, and each ptlrpc buffer inside them.
fn corpus() -> Vec<Vec<u8>> {
    let mut pcap = Vec::new();
    conversation::write(&mut pcap).unwrap();
    // Skip the pcap global header (24 B); each record has a 16-byte header then Ethernet (14),
    // IPv4 (20) and TCP (20) headers before the payload.
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut off = 24;
    while off + 16 <= pcap.len() {
        let caplen = u32::from_le_bytes(pcap[off + 8..off + 12].try_into().unwrap()) as usize;
        let pkt = &pcap[off + 16..off + 16 + caplen];
        off += 16 + caplen;
        let payload = pkt[54..].to_vec();
        if let Ok((f, _)) = parse_frame(&payload) {
            if let Some(Ok(m)) = f.ptlrpc() {
                if let Ok(b) = m.body() {
                    seen.insert(b.opc());
                }
                out.extend(m.bufs().map(<[u8]>::to_vec));
                out.push(m.raw().to_vec());
            }
            out.push(f.payload.to_vec());
        }
        out.push(payload);
    }
    for op in conversation::OPCODES {
        assert!(seen.contains(op), "corpus lacks {op}");
    }
    // A valid ACL xattr (user::rw- user:1000:rwx group::r-- mask::r-x other::---), so the
    // mutations of the ACL decoder start from the real format.
    out.push(
        [
            2u32.to_le_bytes().as_slice(),
            &[1, 0, 6, 0, 255, 255, 255, 255],
            &[2, 0, 7, 0, 0xe8, 3, 0, 0],
        ]
        .concat(),
    );
    out.last_mut().unwrap().extend_from_slice(&[
        4, 0, 4, 0, 255, 255, 255, 255, 0x10, 0, 5, 0, 255, 255, 255, 255, 0x20, 0, 0, 0, 255, 255,
        255, 255,
    ]);
    out.retain(|v| !v.is_empty());
    out
}

fn mutate(rng: &mut StdRng, base: &[u8]) -> Vec<u8> {
    let mut v = base.to_vec();
    for _ in 0..rng.random_range(1..8) {
        match rng.random_range(0..7) {
            0 if !v.is_empty() => {
                let i = rng.random_range(0..v.len());
                v[i] ^= 1 << rng.random_range(0..8);
            }
            1 if !v.is_empty() => {
                let n = rng.random_range(0..v.len());
                v.truncate(n);
            }
            2 => {
                let n = rng.random_range(1..64);
                v.extend((0..n).map(|_| rng.random::<u8>()));
            }
            3 if v.len() >= 4 => {
                // Interesting 32-bit values where lengths and counts live.
                let i = rng.random_range(0..v.len() - 3) & !3;
                let val: u32 =
                    [0, 1, 7, 8, 0x7fff_ffff, 0xffff_ffff, 0x8000_0000, 4096, 8192, 65536]
                        [rng.random_range(0..10)];
                v[i..i + 4].copy_from_slice(&val.to_le_bytes());
            }
            4 if v.len() >= 8 => {
                let i = rng.random_range(0..v.len() - 7);
                v[i..i + 8].copy_from_slice(&rng.random::<u64>().to_le_bytes());
            }
            5 if !v.is_empty() => {
                let i = rng.random_range(0..v.len());
                v.remove(i);
            }
            _ => {
                let i = rng.random_range(0..=v.len());
                v.insert(i, rng.random());
            }
        }
    }
    v
}

#[test]
fn random_and_mutated_bytes_never_panic() {
    let seed: u64 =
        std::env::var("PROTO_GARBAGE_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed_u64);
    let corpus = corpus();
    assert!(corpus.len() > 100, "corpus of {} valid inputs", corpus.len());
    let mut rng = StdRng::seed_from_u64(seed);
    let cases_per_decoder = 20_000;
    let mut accepted = 0usize;
    for &d in Decoder::ALL {
        // Valid inputs first: every decoder must at least not panic on them.
        for c in &corpus {
            accepted += d.run(c);
        }
        for case in 0..cases_per_decoder {
            let input = if case % 4 == 0 {
                let n = rng.random_range(0..1024);
                (0..n).map(|_| rng.random::<u8>()).collect()
            } else {
                let base = &corpus[rng.random_range(0..corpus.len())];
                mutate(&mut rng, base)
            };
            let r = std::panic::catch_unwind(|| d.run(&input));
            match r {
                Ok(n) => accepted += n,
                Err(_) => panic!(
                    "{d:?} panicked (seed {seed}, case {case}) on {} bytes: {:02x?}",
                    input.len(),
                    &input[..input.len().min(256)]
                ),
            }
        }
    }
    eprintln!(
        "{} decoders x ({} valid + {cases_per_decoder} random/mutated) inputs, {accepted} sub-decodes accepted",
        Decoder::ALL.len(),
        corpus.len()
    );
    // The mutations must reach past the first checks sometimes, or the test proves little.
    assert!(accepted > 10_000, "only {accepted} sub-decodes succeeded");
}
