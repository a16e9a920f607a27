//! The data path end to end: real `rustre` processes, real clients over TCP, files striped
//! over OSTs. Byte-exact round trips around stripe boundaries, unusual stripe sizes and
//! counts, a 1 GiB file, sparse files, two writers on one file, cache coherence between
//! clients, a checksum error on the wire, and an OST process dying mid-write.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test: a failure is a test failure")]

mod common;

use client::file::OpenFile;
use client::ns::user_layout;
use client::{Client, Cred};
use common::{Server, TempDir, free_port};
use proto::mdt::open as of;
use std::time::Instant;

const ROOT: Cred = Cred { uid: 0, gid: 0, suppgid: u32::MAX };
const RW: u64 = of::FMODE_READ | of::FMODE_WRITE;

/// Deterministic bytes: a position-dependent pattern seeded per file.
fn pattern(seed: u64, off: u64, len: usize) -> Vec<u8> {
    (0..len as u64)
        .map(|i| {
            let x = (off + i).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ seed;
            (x >> 29) as u8
        })
        .collect()
}

fn create(c: &Client, path: &str, ss: u32, count: i32) -> OpenFile {
    c.open(path, RW | of::CREAT | of::EXCL, 0o644, user_layout(ss, count, -1), ROOT).unwrap()
}

#[test]
fn round_trips_around_stripe_boundaries() {
    let dir = TempDir::new("data-rt");
    let srv = Server::all_in_one(dir.path(), free_port());
    let c = srv.mount();
    c.mkdir("/rt", 0o755, ROOT).unwrap();
    let mut n = 0u64;
    for ss in [64u32 << 10, 1 << 20, 4 << 20] {
        for count in [1, 2, -1] {
            let s = u64::from(ss);
            for size in [0, 1, s - 1, s, s + 1, 3 * s + 7] {
                n += 1;
                let path = format!("/rt/f-{ss}-{count}-{size}");
                let f = create(&c, &path, ss, count);
                let data = pattern(n, 0, usize::try_from(size).unwrap());
                c.write(&f, 0, data.clone()).unwrap();
                c.close(f).unwrap();
                // Read back through a fresh open, from another client too (no shared cache).
                let f = c.open(&path, of::FMODE_READ, 0, Vec::new(), ROOT).unwrap();
                assert_eq!(c.size(&f).unwrap(), size, "{path}");
                assert!(c.read(&f, 0, size + 100).unwrap() == data, "{path}: data differs");
                if size > 2 {
                    let mid = size / 2;
                    let got = c.read(&f, mid - 1, 3).unwrap();
                    assert_eq!(got, data[(mid - 1) as usize..(mid + 2) as usize], "{path} middle");
                }
                c.close(f).unwrap();
                let (_, st) = c.stat(&path, true, ROOT).unwrap();
                assert_eq!(st.mbo_size.get(), size, "stat size of {path}");
            }
        }
    }
    let other = srv.mount();
    let path = format!("/rt/f-{}-2-{}", 64 << 10, 3 * (64 << 10) + 7);
    let f = other.open(&path, of::FMODE_READ, 0, Vec::new(), ROOT).unwrap();
    let size = 3 * (64 << 10) + 7;
    assert_eq!(other.read(&f, 0, size).unwrap().len() as u64, size);
}

#[test]
fn a_write_of_three_bulk_mds_and_an_error_reply_reach_the_client() {
    // 3 MiB in one BRW is three 1 MiB MDs: `ioo_max_brw` must still be a power of two, and
    // the client must find replies (errors too) on `pb_mbits` (OBD_CONNECT2_REP_MBITS).
    let dir = TempDir::new("data-mds");
    let srv = Server::all_in_one(dir.path(), free_port());
    let c = srv.mount();
    let f = create(&c, "/three", 4 << 20, 1);
    let data = pattern(9, 4096, 3 << 20);
    c.write(&f, 4096, data.clone()).unwrap();
    c.fsync(&f).unwrap();
    assert!(c.read(&f, 4096, 3 << 20).unwrap() == data);
    c.close(f).unwrap();
}

#[test]
fn sparse_files_read_holes_as_zeros() {
    let dir = TempDir::new("data-sparse");
    let srv = Server::all_in_one(dir.path(), free_port());
    let c = srv.mount();
    let f = create(&c, "/sparse", 64 << 10, 2);
    let far = 10u64 << 20;
    c.write(&f, far, b"tail".to_vec()).unwrap();
    c.write(&f, 3, b"head".to_vec()).unwrap();
    c.fsync(&f).unwrap();
    assert_eq!(c.size(&f).unwrap(), far + 4);
    let all = c.read(&f, 0, far + 4).unwrap();
    assert_eq!(all.len() as u64, far + 4);
    assert_eq!(&all[3..7], b"head");
    assert_eq!(&all[all.len() - 4..], b"tail");
    assert!(all[7..all.len() - 4].iter().all(|&b| b == 0), "holes read as zeros");
    // Truncate shrinks and grows; growth reads as zeros too.
    c.truncate(&f, 5, ROOT).unwrap();
    assert_eq!(c.read(&f, 0, 100).unwrap(), b"\0\0\0he".to_vec());
    c.truncate(&f, 70_000, ROOT).unwrap();
    let grown = c.read(&f, 0, 100_000).unwrap();
    assert_eq!(grown.len(), 70_000);
    assert!(grown[5..].iter().all(|&b| b == 0));
    c.close(f).unwrap();
}

#[test]
fn a_one_gib_file() {
    let dir = TempDir::new("data-1g");
    let srv = Server::all_in_one_sized(dir.path(), free_port(), "3G");
    let c = srv.mount();
    let f = create(&c, "/big", 1 << 20, -1);
    const CHUNK: u64 = 8 << 20;
    const SIZE: u64 = 1 << 30;
    let t = Instant::now();
    let mut off = 0;
    while off < SIZE {
        c.write(&f, off, pattern(7, off, CHUNK as usize)).unwrap();
        off += CHUNK;
    }
    c.close(f).unwrap();
    let wrote = t.elapsed();
    let f = c.open("/big", of::FMODE_READ, 0, Vec::new(), ROOT).unwrap();
    assert_eq!(c.size(&f).unwrap(), SIZE);
    let t = Instant::now();
    let mut off = 0;
    while off < SIZE {
        let got = c.read(&f, off, CHUNK).unwrap();
        assert!(got == pattern(7, off, CHUNK as usize), "data differs at {off}");
        off += CHUNK;
    }
    eprintln!("1 GiB: write {wrote:?}, read {:?}", t.elapsed());
    c.close(f).unwrap();
}

#[test]
fn two_clients_write_disjoint_ranges_of_one_file() {
    let dir = TempDir::new("data-two");
    let srv = Server::all_in_one(dir.path(), free_port());
    let a = srv.mount();
    let b = srv.mount();
    let fa = create(&a, "/shared", 64 << 10, 2);
    let fb = b.open("/shared", RW, 0, Vec::new(), ROOT).unwrap();
    const PIECE: u64 = 192 << 10;
    const PIECES: u64 = 16;
    // A writes the even pieces, B the odd ones, at the same time.
    std::thread::scope(|s| {
        let (a, b, fa, fb) = (&a, &b, &fa, &fb);
        let ta = s.spawn(move || {
            for i in (0..PIECES).step_by(2) {
                a.write(fa, i * PIECE, pattern(1, i * PIECE, PIECE as usize)).unwrap();
            }
            a.fsync(fa).unwrap();
        });
        let tb = s.spawn(move || {
            for i in (1..PIECES).step_by(2) {
                b.write(fb, i * PIECE, pattern(1, i * PIECE, PIECE as usize)).unwrap();
            }
            b.fsync(fb).unwrap();
        });
        ta.join().unwrap();
        tb.join().unwrap();
    });
    let want = pattern(1, 0, (PIECE * PIECES) as usize);
    for (c, f) in [(&a, &fa), (&b, &fb)] {
        let got = c.read(f, 0, PIECE * PIECES).unwrap();
        assert_eq!(got.len(), want.len());
        assert!(got == want, "a client reads what both wrote");
    }
    a.close(fa).unwrap();
    b.close(fb).unwrap();
}

#[test]
fn a_cached_file_shows_another_clients_overwrite() {
    let dir = TempDir::new("data-coh");
    let srv = Server::all_in_one(dir.path(), free_port());
    let a = srv.mount();
    let b = srv.mount();
    let fa = create(&a, "/coh", 1 << 20, 2);
    a.write(&fa, 0, vec![b'a'; 3 << 20]).unwrap();
    a.fsync(&fa).unwrap();
    assert_eq!(a.read(&fa, 0, 3 << 20).unwrap(), vec![b'a'; 3 << 20]); // cached in A
    let before = a.counters().unwrap().blocking_asts;
    let fb = b.open("/coh", RW, 0, Vec::new(), ROOT).unwrap();
    b.write(&fb, 1 << 20, vec![b'b'; 1 << 20]).unwrap();
    b.close(fb).unwrap();
    assert!(a.counters().unwrap().blocking_asts > before, "A's lock was called back");
    let got = a.read(&fa, 0, 3 << 20).unwrap();
    assert!(got[..1 << 20].iter().all(|&x| x == b'a'));
    assert!(got[1 << 20..2 << 20].iter().all(|&x| x == b'b'), "A sees B's data");
    assert!(got[2 << 20..].iter().all(|&x| x == b'a'));
    // Appends from both clients land whole, one after the other.
    let fb = b.open("/coh", RW | of::APPEND, 0, Vec::new(), ROOT).unwrap();
    let mut offs = Vec::new();
    for i in 0..10u8 {
        offs.push(a.append(&fa, vec![b'A' + i; 1000]).unwrap());
        offs.push(b.append(&fb, vec![b'a' + i; 1000]).unwrap());
    }
    offs.sort_unstable();
    for (k, o) in offs.iter().enumerate() {
        assert_eq!(*o, (3 << 20) + 1000 * k as u64, "appends never overlap");
    }
    b.close(fb).unwrap();
    assert_eq!(a.size(&fa).unwrap(), (3 << 20) + 20_000);
    a.close(fa).unwrap();
}

/// A write lock granted after waiting for another client's is grown at its grant, and the
/// completion AST says how far: the client must hold it to that extent, or each next write
/// beside the first conflicts with its own lock (a blocking AST and a write-back per write).
#[test]
fn a_lock_granted_after_waiting_covers_its_grown_extent() {
    let dir = TempDir::new("data-grow");
    let srv = Server::all_in_one(dir.path(), free_port());
    let a = srv.mount();
    let b = srv.mount();
    let fa = create(&a, "/grow", 1 << 20, 1);
    a.write(&fa, 0, vec![b'a'; 4096]).unwrap();
    a.close(fa).unwrap(); // A keeps its write lock
    let fb = b.open("/grow", RW, 0, Vec::new(), ROOT).unwrap();
    b.write(&fb, 0, vec![b'b'; 4096]).unwrap(); // waits for A's lock
    let before = b.counters().unwrap().blocking_asts;
    for i in 1..8u64 {
        b.write(&fb, i << 20, vec![b'b'; 4096]).unwrap();
    }
    assert_eq!(b.counters().unwrap().blocking_asts, before, "B's own lock was called back");
    b.close(fb).unwrap();
}

#[test]
fn a_truncating_open_elsewhere_drops_a_cached_copy() {
    let dir = TempDir::new("data-trunc");
    let srv = Server::all_in_one(dir.path(), free_port());
    let a = srv.mount();
    let b = srv.mount();
    let fa = create(&a, "/t", 1 << 20, 2);
    a.write(&fa, 0, pattern(4, 0, 3 << 20)).unwrap();
    a.fsync(&fa).unwrap();
    assert_eq!(a.read(&fa, 0, 3 << 20).unwrap().len(), 3 << 20); // cached in A
    // B truncates through the MDT (open with O_TRUNC): the OSTs lock the objects first, so
    // A's cached pages go.
    let fb = b.open("/t", RW | of::TRUNC, 0, Vec::new(), ROOT).unwrap();
    b.write(&fb, 0, b"new".to_vec()).unwrap();
    b.close(fb).unwrap();
    assert_eq!(a.size(&fa).unwrap(), 3);
    assert_eq!(a.read(&fa, 0, 1 << 20).unwrap(), b"new");
    a.close(fa).unwrap();
}

#[test]
fn concurrent_appends_from_two_clients_all_land() {
    let dir = TempDir::new("data-app");
    let srv = Server::all_in_one(dir.path(), free_port());
    let a = srv.mount();
    let b = srv.mount();
    let f = create(&a, "/log", 1 << 20, 1);
    a.close(f).unwrap();
    const N: usize = 100;
    let mut offs: Vec<u64> = std::thread::scope(|s| {
        let hs: Vec<_> = [(&a, b'A'), (&b, b'B')]
            .into_iter()
            .map(|(c, tag)| {
                s.spawn(move || {
                    let f = c.open("/log", RW | of::APPEND, 0, Vec::new(), ROOT).unwrap();
                    let mut offs = Vec::with_capacity(N);
                    for i in 0..N {
                        let mut rec = vec![tag; 64];
                        rec[1] = u8::try_from(i).unwrap();
                        offs.push(c.append(&f, rec).unwrap());
                    }
                    c.close(f).unwrap();
                    offs
                })
            })
            .collect();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    offs.sort_unstable();
    let want: Vec<u64> = (0..2 * N as u64).map(|k| 64 * k).collect();
    assert_eq!(offs, want, "every append got its own place");
    let f = b.open("/log", of::FMODE_READ, 0, Vec::new(), ROOT).unwrap();
    let data = b.read(&f, 0, 64 * 2 * N as u64 + 1).unwrap();
    assert_eq!(data.len(), 64 * 2 * N);
    let mut seen = std::collections::HashSet::new();
    for rec in data.chunks(64) {
        assert!(rec.iter().enumerate().all(|(i, &x)| i == 1 || x == rec[0]), "torn record");
        assert!(seen.insert((rec[0], rec[1])), "record twice");
    }
    b.close(f).unwrap();
}

#[test]
fn a_checksum_error_on_the_wire_is_resent_not_stored() {
    let dir = TempDir::new("data-cksum");
    let srv = Server::all_in_one(dir.path(), free_port());
    let c = srv.mount();
    let f = create(&c, "/ck", 1 << 20, 1);
    let ost = f.layout.as_ref().unwrap().stripes[0].ost;
    c.run(move |fs| async move {
        fs.osc_state(ost).corrupt_writes.set(1);
        Ok(())
    })
    .unwrap();
    let data = pattern(3, 0, 1 << 20);
    c.write(&f, 0, data.clone()).unwrap();
    c.fsync(&f).unwrap();
    let (left, resends) = c
        .run(move |fs| async move {
            let st = fs.osc_state(ost);
            Ok((st.corrupt_writes.get(), st.checksum_resends.get()))
        })
        .unwrap();
    assert_eq!(left, 0, "the corruption was injected");
    assert_eq!(resends, 1, "the OST refused it and the client resent");
    c.close(f).unwrap();
    let other = srv.mount();
    let f = other.open("/ck", of::FMODE_READ, 0, Vec::new(), ROOT).unwrap();
    assert!(other.read(&f, 0, 1 << 20).unwrap() == data, "what is stored is the good data");
    assert!(srv.log_text().to_lowercase().contains("checksum"), "the OST logged it");
}
