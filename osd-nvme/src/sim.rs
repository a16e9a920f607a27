//! A deterministic random workload for crash testing (the storage simulator's driver).
//!
//! `Workload::new(seed)` yields the same transactions every time, so a crashed run (a
//! simulated power cut, or a SIGKILLed child process) can be checked against the memory OSD
//! replaying the same transactions: the recovered state must equal the model's state after
//! some prefix of the transactions that includes every acknowledged one.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use proto::fid::LuFid;

use crate::api::Osd;
use crate::error::Result;
use crate::types::{Attr, AttrMask, ObjType, Timespec, XattrMode};

/// One update of a generated transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Create an object.
    Create(LuFid, ObjType),
    /// Write `len` pattern bytes (from `seed`) at `off`.
    Write(LuFid, u64, usize, u64),
    /// Punch `start..end`.
    Punch(LuFid, u64, u64),
    /// Set xattr `name` to `len` pattern bytes.
    XattrSet(LuFid, String, usize, u64),
    /// Delete xattr `name`.
    XattrDel(LuFid, String),
    /// Insert a directory entry.
    Insert(LuFid, String, LuFid),
    /// Delete a directory entry.
    Delete(LuFid, String),
    /// Set mtime and size.
    SetAttr(LuFid, i64, u64),
    /// Destroy an object.
    Destroy(LuFid),
}

/// Pattern bytes for a seed.
#[must_use]
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut r = StdRng::seed_from_u64(seed);
    let mut v = vec![0u8; len];
    r.fill(&mut v[..]);
    v
}

/// The generator. It tracks what exists so every generated update is valid.
#[derive(Debug)]
pub struct Workload {
    rng: StdRng,
    seq: u64,
    next_oid: u32,
    files: Vec<LuFid>,
    dirs: Vec<(LuFid, Vec<String>)>,
    xattrs: Vec<(LuFid, String)>,
    /// Largest object offset written (keeps the device small).
    pub max_off: u64,
}

impl Workload {
    /// A workload for `seed`.
    #[must_use]
    pub fn new(seed: u64) -> Workload {
        Workload::in_sequence(seed, 0x2_0000_0401)
    }

    /// A workload for `seed` whose objects are in FID sequence `seq`.
    #[must_use]
    pub fn in_sequence(seed: u64, seq: u64) -> Workload {
        Workload {
            rng: StdRng::seed_from_u64(seed),
            seq,
            next_oid: 1,
            files: Vec::new(),
            dirs: Vec::new(),
            xattrs: Vec::new(),
            max_off: 96 << 10,
        }
    }

    fn new_fid(&mut self) -> LuFid {
        let f = LuFid::new(self.seq, self.next_oid, 0);
        self.next_oid += 1;
        f
    }

    /// The next transaction's updates.
    pub fn next_txn(&mut self) -> Vec<Op> {
        let n = self.rng.random_range(1..=4);
        let mut ops = Vec::new();
        for _ in 0..n {
            let op = self.next_op();
            ops.push(op);
        }
        ops
    }

    fn next_op(&mut self) -> Op {
        let r = &mut self.rng;
        let choice = r.random_range(0..100);
        if self.dirs.is_empty() || choice < 8 {
            let f = self.new_fid();
            self.dirs.push((f, Vec::new()));
            return Op::Create(f, ObjType::Dir);
        }
        if self.files.len() < 2 || choice < 20 {
            let f = self.new_fid();
            self.files.push(f);
            return Op::Create(f, ObjType::Regular);
        }
        let fi = self.rng.random_range(0..self.files.len());
        let f = self.files[fi];
        let r = &mut self.rng;
        match choice {
            20..=49 => {
                let aligned = r.random_bool(0.5);
                let (off, len) = if aligned {
                    (r.random_range(0..self.max_off / 4096) * 4096, 4096 * r.random_range(1..=8))
                } else {
                    (r.random_range(0..self.max_off), r.random_range(1..20_000))
                };
                Op::Write(f, off, len, r.random())
            }
            50..=56 => {
                let s = r.random_range(0..self.max_off);
                let e = if r.random_bool(0.3) { u64::MAX } else { s + r.random_range(1..30_000) };
                Op::Punch(f, s, e)
            }
            57..=66 => {
                let name = format!("user.x{}", r.random_range(0..4));
                if !self.xattrs.contains(&(f, name.clone())) {
                    self.xattrs.push((f, name.clone()));
                }
                Op::XattrSet(f, name, r.random_range(0..3000), r.random())
            }
            67..=71 if !self.xattrs.is_empty() => {
                let i = r.random_range(0..self.xattrs.len());
                let (f, name) = self.xattrs.swap_remove(i);
                Op::XattrDel(f, name)
            }
            72..=84 => {
                let di = r.random_range(0..self.dirs.len());
                let name = format!("n{}", r.random_range(0..1_000_000u32));
                let (d, names) = &mut self.dirs[di];
                if names.contains(&name) {
                    let d = *d;
                    names.retain(|n| *n != name);
                    return Op::Delete(d, name);
                }
                names.push(name.clone());
                Op::Insert(*d, name, f)
            }
            85..=89 => {
                let di = r.random_range(0..self.dirs.len());
                let (d, names) = &mut self.dirs[di];
                match names.pop() {
                    Some(n) => Op::Delete(*d, n),
                    None => Op::SetAttr(*d, r.random_range(0..1 << 40), 0),
                }
            }
            90..=95 => Op::SetAttr(f, r.random_range(0..1 << 40), r.random_range(0..self.max_off)),
            _ => {
                self.files.swap_remove(fi);
                self.xattrs.retain(|(x, _)| *x != f);
                Op::Destroy(f)
            }
        }
    }
}

/// Runs one generated transaction on `osd`; `sync` waits for durability; `on_commit` is
/// registered as its commit callback. Returns the transaction number.
pub async fn run_txn<O: Osd>(
    osd: &O,
    ops: &[Op],
    sync: bool,
    on_commit: impl FnOnce(u64) + 'static,
) -> Result<u64> {
    let mut th = osd.trans_create();
    for op in ops {
        match op {
            Op::Create(f, _) => th.declare_create(f),
            Op::Write(f, off, len, _) => th.declare_write(f, *off, *len as u64),
            Op::Punch(f, s, e) => th.declare_punch(f, *s, *e),
            Op::XattrSet(f, n, len, _) => th.declare_xattr_set(f, n.len(), *len),
            Op::XattrDel(f, n) => th.declare_xattr_del(f, n.len()),
            Op::Insert(d, n, _) => th.declare_index_insert(d, n.len(), 16),
            Op::Delete(d, n) => th.declare_index_delete(d, n.len()),
            Op::SetAttr(f, _, _) => th.declare_attr_set(f),
            Op::Destroy(f) => th.declare_destroy(f),
        }
    }
    if sync {
        th.set_sync();
    }
    th.on_commit(on_commit);
    osd.trans_start(&mut th).await?;
    // A started transaction is always stopped, also when an update fails (Lustre's rule).
    let mut first_err = None;
    for op in ops {
        let r: Result<()> = async {
            match op {
                Op::Create(f, ty) => {
                    let a = Attr { mode: 0o640, nlink: 1, ..Attr::default() };
                    osd.create(&mut th, f, *ty, &a).await?;
                }
                Op::Write(f, off, len, seed) => {
                    let data = pattern(*seed, *len);
                    osd.write(&mut th, f, *off, &[&data]).await?;
                }
                Op::Punch(f, s, e) => osd.punch(&mut th, f, *s, *e).await?,
                Op::XattrSet(f, n, len, seed) => {
                    let v = pattern(*seed, *len);
                    osd.xattr_set(&mut th, f, n.as_bytes(), &v, XattrMode::Upsert).await?;
                }
                Op::XattrDel(f, n) => osd.xattr_del(&mut th, f, n.as_bytes()).await?,
                Op::Insert(d, n, target) => {
                    let mut v = target.seq().to_le_bytes().to_vec();
                    v.extend_from_slice(&target.oid().to_le_bytes());
                    osd.index_insert(&mut th, d, n.as_bytes(), &v).await?;
                }
                Op::Delete(d, n) => osd.index_delete(&mut th, d, n.as_bytes()).await?,
                Op::SetAttr(f, t, size) => {
                    let a = Attr {
                        mtime: Timespec { sec: *t, nsec: 7 },
                        size: *size,
                        ..Attr::default()
                    };
                    let mask = if osd.obj_type(f).await?.is_index() {
                        AttrMask::MTIME
                    } else {
                        AttrMask::MTIME | AttrMask::SIZE
                    };
                    osd.attr_set(&mut th, f, mask, &a).await?;
                }
                Op::Destroy(f) => osd.destroy(&mut th, f).await?,
            }
            Ok(())
        }
        .await;
        if let Err(e) = r {
            first_err = Some(e);
            break;
        }
    }
    let stopped = osd.trans_stop(th).await;
    match first_err {
        Some(e) => Err(e),
        None => stopped,
    }
}
