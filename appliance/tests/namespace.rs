//! End-to-end namespace tests: a real `rustre serve --data` process, real clients over TCP.

#![allow(clippy::unwrap_used, reason = "test helpers: a failure is a test failure")]

mod common;

use client::{Cred, Fs};
use common::{Server, TempDir, free_port};
use proto::fid::LuFid;
use std::collections::BTreeSet;
use std::rc::Rc;
use std::time::Instant;

const ROOT: Cred = Cred { uid: 0, gid: 0, suppgid: u32::MAX };

/// Runs `n` jobs `f(i)` with up to `par` in flight on the client's executor.
async fn parallel<F, Fut>(n: usize, par: usize, f: F) -> client::Result<()>
where
    F: Fn(usize) -> Fut + 'static,
    Fut: std::future::Future<Output = client::Result<()>> + 'static,
{
    let f = Rc::new(f);
    let next = Rc::new(std::cell::Cell::new(0usize));
    let mut tasks: Vec<glommio::Task<client::Result<()>>> = Vec::new();
    for _ in 0..par.min(n.max(1)) {
        let (f, next) = (f.clone(), next.clone());
        tasks.push(glommio::spawn_local(async move {
            loop {
                let i = next.get();
                if i >= n {
                    return Ok(());
                }
                next.set(i + 1);
                f(i).await?;
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    Ok(())
}

fn names(fs_list: &[client::Entry]) -> BTreeSet<String> {
    fs_list.iter().filter(|e| e.name != "." && e.name != "..").map(|e| e.name.clone()).collect()
}

#[test]
fn tree_of_ten_thousand_entries() {
    let dir = TempDir::new("tree");
    let srv = Server::all_in_one(dir.path(), free_port());
    let c = srv.mount();
    const FLAT: usize = 5000;
    const DIRS: usize = 50;
    const PER: usize = 100;
    let t = Instant::now();
    c.run(|fs: Rc<Fs>| async move {
        let (flat, _) = fs.mkdir("/flat", 0o755, &[], ROOT).await?;
        let (tree, _) = fs.mkdir("/tree", 0o755, &[], ROOT).await?;
        let f2 = fs.clone();
        parallel(FLAT, 8, move |i| {
            let fs = f2.clone();
            async move {
                fs.create_at(flat, format!("f{i:05}").as_bytes(), 0o644, &[], ROOT)
                    .await
                    .map(|_| ())
            }
        })
        .await?;
        let f2 = fs.clone();
        parallel(DIRS, 8, move |d| {
            let fs = f2.clone();
            async move {
                let (sub, _) = fs
                    .mknod_at(tree, format!("d{d:02}").as_bytes(), (0o040_755, 0), &[], &[], ROOT)
                    .await?;
                for i in 0..PER {
                    fs.create_at(sub, format!("g{i:03}").as_bytes(), 0o644, &[], ROOT).await?;
                }
                Ok(())
            }
        })
        .await
    })
    .unwrap();
    let created = FLAT + DIRS * (PER + 1) + 2;
    eprintln!("created {created} entries in {:?}", t.elapsed());

    // readdir is complete and in stable order.
    let flat = c.ls("/flat", ROOT).unwrap();
    let got = names(&flat);
    let want: BTreeSet<String> = (0..FLAT).map(|i| format!("f{i:05}")).collect();
    assert_eq!(got, want, "flat listing incomplete");
    assert_eq!(flat.len(), FLAT + 2, "duplicates or missing dot entries");
    let again = c.ls("/flat", ROOT).unwrap();
    assert_eq!(flat, again, "two listings of an unchanged directory differ");
    for d in 0..DIRS {
        let l = names(&c.ls(&format!("/tree/d{d:02}"), ROOT).unwrap());
        assert_eq!(l.len(), PER, "/tree/d{d:02}");
    }

    // Listing while the directory changes: every name present throughout appears exactly
    // once (hash-ordered cookies keep the position of the others).
    let (flat_fid, _) = c.stat("/flat", true, ROOT).unwrap();
    let listed = c
        .run(move |fs: Rc<Fs>| async move {
            let f2 = fs.clone();
            let churn = glommio::spawn_local(async move {
                for i in 0..300 {
                    let n = format!("churn{i}");
                    f2.create_at(flat_fid, n.as_bytes(), 0o644, &[], ROOT).await?;
                    if i % 2 == 0 {
                        f2.unlink_at(flat_fid, n.as_bytes(), false, ROOT).await?;
                    }
                }
                client::Result::Ok(())
            });
            let l = fs.readdir(flat_fid, ROOT).await?;
            churn.await?;
            Ok(l)
        })
        .unwrap();
    let mut seen = std::collections::HashMap::new();
    for e in &listed {
        *seen.entry(e.name.clone()).or_insert(0) += 1;
    }
    for n in &want {
        assert_eq!(seen.get(n), Some(&1), "{n} listed {:?} times during churn", seen.get(n));
    }
    assert!(seen.values().all(|&v| v == 1), "a name was listed twice during churn");

    // Rename every flat file into the tree (cross-directory, across MDT shards), then remove
    // everything.
    let t = Instant::now();
    c.run(move |fs: Rc<Fs>| async move {
        let (tree0, _) = fs.resolve("/tree/d00", ROOT, true).await?;
        let f2 = fs.clone();
        parallel(FLAT, 8, move |i| {
            let fs = f2.clone();
            async move {
                let n = format!("f{i:05}");
                fs.rename_at(
                    flat_fid,
                    n.as_bytes(),
                    tree0,
                    format!("moved{i:05}").as_bytes(),
                    0,
                    ROOT,
                )
                .await
            }
        })
        .await
    })
    .unwrap();
    eprintln!("renamed {FLAT} files in {:?}", t.elapsed());
    let flat_left = names(&c.ls("/flat", ROOT).unwrap());
    assert!(
        flat_left.iter().all(|n| n.starts_with("churn")),
        "left in /flat: {:?}",
        flat_left.iter().take(5).collect::<Vec<_>>()
    );
    assert_eq!(names(&c.ls("/tree/d00", ROOT).unwrap()).len(), PER + FLAT);

    let t = Instant::now();
    c.run(move |fs: Rc<Fs>| async move {
        for d in 0..DIRS {
            let (sub, _) = fs.resolve(&format!("/tree/d{d:02}"), ROOT, true).await?;
            let ents = fs.readdir(sub, ROOT).await?;
            let ents: Vec<String> = names(&ents).into_iter().collect();
            let f2 = fs.clone();
            let ents = Rc::new(ents);
            let e2 = ents.clone();
            parallel(ents.len(), 8, move |i| {
                let (fs, e) = (f2.clone(), e2.clone());
                async move { fs.unlink_at(sub, e[i].as_bytes(), false, ROOT).await.map(|_| ()) }
            })
            .await?;
        }
        for n in names(&fs.readdir(flat_fid, ROOT).await?) {
            fs.unlink_at(flat_fid, n.as_bytes(), false, ROOT).await?;
        }
        Ok(())
    })
    .unwrap();
    for d in 0..DIRS {
        c.remove(&format!("/tree/d{d:02}"), true, ROOT).unwrap();
    }
    c.remove("/tree", true, ROOT).unwrap();
    c.remove("/flat", true, ROOT).unwrap();
    eprintln!("removed everything in {:?}", t.elapsed());
    assert_eq!(names(&c.ls("/", ROOT).unwrap()), BTreeSet::new());
    let root: LuFid = c.stat("/", true, ROOT).unwrap().0;
    assert!(root.seq() != 0);
}

fn errno<T: std::fmt::Debug>(r: client::Result<T>) -> i32 {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.errno,
    }
}

/// Objects in use on the OSTs (IUsed summed), to see objects destroyed with the last link.
fn ost_objects(c: &client::Client) -> u64 {
    c.run(|fs: Rc<Fs>| async move { fs.statfs_all().await })
        .unwrap()
        .iter()
        .filter(|(u, _)| u.contains("-OST"))
        .map(|(_, s)| s.os_files.get() - s.os_ffree.get())
        .sum()
}

#[test]
fn rename_link_unlink_semantics() {
    use proto::mdt::open as of;
    let dir = TempDir::new("sem");
    let srv = Server::all_in_one(dir.path(), free_port());
    let c = srv.mount();
    let nlink = |p: &str| c.stat(p, false, ROOT).unwrap().1.mbo_nlink.get();
    let fid = |p: &str| c.stat(p, false, ROOT).unwrap().0;

    c.mkdir("/d", 0o755, ROOT).unwrap();
    c.mkdir("/d/sub", 0o755, ROOT).unwrap();
    c.mkdir("/e", 0o755, ROOT).unwrap();
    assert_eq!(nlink("/d"), 3, "a directory counts its subdirectories' '..'");
    for f in ["/d/a", "/d/b", "/e/x"] {
        c.create(f, 0o644, Vec::new(), ROOT).unwrap();
    }

    // link: counts, EEXIST, EPERM on directories, ENOENT.
    c.link("/d/a", "/e/a2", ROOT).unwrap();
    assert_eq!(nlink("/d/a"), 2);
    assert_eq!(fid("/d/a"), fid("/e/a2"));
    assert_eq!(errno(c.link("/d/a", "/d/b", ROOT)), libc::EEXIST);
    assert_eq!(errno(c.link("/d/sub", "/e/sub2", ROOT)), libc::EPERM);
    assert_eq!(errno(c.link("/d/none", "/e/none", ROOT)), libc::ENOENT);

    // rename over an existing file: the target's inode loses a link; when that was its last,
    // its OST objects go.
    let objs = ost_objects(&c);
    let b_fid = fid("/d/b");
    c.rename("/d/a", "/d/b", ROOT).unwrap();
    assert_eq!(fid("/d/b"), fid("/e/a2"));
    assert_eq!(errno(c.stat("/d/a", false, ROOT)), libc::ENOENT);
    assert_eq!(nlink("/d/b"), 2);
    let gone = c
        .run(move |fs: Rc<Fs>| async move { Ok(fs.getattr(b_fid, ROOT).await.map(|_| ())) })
        .unwrap();
    assert_eq!(errno(gone), libc::ENOENT, "the overwritten inode is gone");
    assert_eq!(ost_objects(&c), objs - 1, "its object was destroyed");

    // rename onto another link of the same inode does nothing.
    c.rename("/d/b", "/e/a2", ROOT).unwrap();
    assert!(c.stat("/d/b", false, ROOT).is_ok() && c.stat("/e/a2", false, ROOT).is_ok());
    // rename to itself.
    c.rename("/d/b", "/d/b", ROOT).unwrap();

    // Type rules.
    c.mkdir("/d/empty", 0o755, ROOT).unwrap();
    c.mkdir("/d/full", 0o755, ROOT).unwrap();
    c.create("/d/full/f", 0o644, Vec::new(), ROOT).unwrap();
    assert_eq!(errno(c.rename("/d/b", "/d/empty", ROOT)), libc::EISDIR);
    assert_eq!(errno(c.rename("/d/empty", "/d/b", ROOT)), libc::ENOTDIR);
    assert_eq!(errno(c.rename("/d/sub", "/d/full", ROOT)), libc::ENOTEMPTY);
    assert_eq!(errno(c.rename("/d", "/d/sub/inside", ROOT)), libc::EINVAL);
    assert_eq!(errno(c.rename("/d/none", "/d/z", ROOT)), libc::ENOENT);
    // A directory over an empty one, across parents: link counts and '..' follow.
    let d_links = nlink("/d");
    let e_links = nlink("/e");
    c.mkdir("/e/target", 0o755, ROOT).unwrap();
    c.rename("/d/empty", "/e/target", ROOT).unwrap();
    assert_eq!(nlink("/d"), d_links - 1);
    assert_eq!(nlink("/e"), e_links + 1);
    assert_eq!(fid("/e/target/.."), fid("/e"), "'..' of a moved directory names its new parent");

    // unlink and rmdir rules.
    assert_eq!(errno(c.remove("/d/sub", false, ROOT)), libc::EISDIR);
    assert_eq!(errno(c.remove("/d/b", true, ROOT)), libc::ENOTDIR);
    assert_eq!(errno(c.remove("/d/full", true, ROOT)), libc::ENOTEMPTY);
    c.remove("/e/a2", false, ROOT).unwrap();
    assert_eq!(nlink("/d/b"), 1);

    // Unlink while open: the inode lives until the last close, then its objects go.
    let objs = ost_objects(&c);
    let (dfid, _) = c.stat("/d", true, ROOT).unwrap();
    let still = c
        .run(move |fs: Rc<Fs>| async move {
            let (f, body, _) =
                fs.open_at(dfid, b"b", of::FMODE_READ | of::FMODE_WRITE, 0, &[], ROOT).await?;
            fs.unlink_at(dfid, b"b", false, ROOT).await?;
            let open_attr = fs.getattr(f, ROOT).await.map(|(b, _)| b.mbo_nlink.get());
            fs.close(f, body.mbo_open_handle.get(), None).await?;
            let after = fs.getattr(f, ROOT).await.map(|_| ());
            Ok((open_attr, after))
        })
        .unwrap();
    assert_eq!(still.0.unwrap(), 0, "an open unlinked file is still reachable by FID");
    assert_eq!(errno(still.1), libc::ENOENT, "and gone after the last close");
    assert_eq!(ost_objects(&c), objs - 1);

    // O_EXCL and names.
    c.create("/d/x", 0o644, Vec::new(), ROOT).unwrap();
    assert_eq!(errno(c.create("/d/x", 0o644, Vec::new(), ROOT)), libc::EEXIST);
    let long = format!("/d/{}", "n".repeat(256));
    assert_eq!(errno(c.create(&long, 0o644, Vec::new(), ROOT)), libc::ENAMETOOLONG);
    let ok255 = format!("/d/{}", "n".repeat(255));
    c.create(&ok255, 0o644, Vec::new(), ROOT).unwrap();

    // Other node types.
    c.symlink("../e/x", "/d/ln", ROOT).unwrap();
    assert_eq!(fid("/d/ln"), fid("/d/ln"));
    assert_eq!(c.stat("/d/ln", true, ROOT).unwrap().0, fid("/e/x"), "the symlink resolves");
    let (dfid, _) = c.stat("/d", true, ROOT).unwrap();
    let modes = c
        .run(move |fs: Rc<Fs>| async move {
            let mut out = Vec::new();
            for (name, mode, rdev) in
                [("fifo", 0o010_644u32, 0u64), ("chr", 0o020_600, 0x0103), ("sock", 0o140_755, 0)]
            {
                let (_, b) =
                    fs.mknod_at(dfid, name.as_bytes(), (mode, rdev), &[], &[], ROOT).await?;
                out.push((b.mbo_mode.get(), b.mbo_rdev.get()));
            }
            Ok(out)
        })
        .unwrap();
    assert_eq!(modes, vec![(0o010_644, 0), (0o020_600, 0x0103), (0o140_755, 0)]);
    let listed = names(&c.ls("/d", ROOT).unwrap());
    for n in ["chr", "fifo", "sock", "ln", "x", "full", "sub"] {
        assert!(listed.contains(n), "{n} missing from {listed:?}");
    }
}

#[test]
fn second_client_invalidates_cached_names_through_lock_callbacks() {
    let dir = TempDir::new("cache");
    let srv = Server::all_in_one(dir.path(), free_port());
    let a = srv.mount();
    let b = srv.mount();
    assert_ne!(a.nid, b.nid);
    a.mkdir("/dir", 0o755, ROOT).unwrap();
    a.create("/dir/x", 0o644, Vec::new(), ROOT).unwrap();
    let x = a.stat("/dir/x", false, ROOT).unwrap().0;
    let before = a.counters().unwrap();
    assert_eq!(a.stat("/dir/x", false, ROOT).unwrap().0, x);
    let cached = a.counters().unwrap();
    assert!(cached.cache_hits > before.cache_hits, "a repeated lookup is served from the cache");
    assert!(cached.locks > 0);

    // B renames what A has cached: the MDT calls A's locks back before granting B's.
    b.rename("/dir/x", "/dir/y", ROOT).unwrap();
    let after = a.counters().unwrap();
    assert!(after.blocking_asts > cached.blocking_asts, "A got a blocking AST");
    assert_eq!(errno(a.stat("/dir/x", false, ROOT)), libc::ENOENT, "A's stale name is gone");
    assert_eq!(a.stat("/dir/y", false, ROOT).unwrap().0, x);

    // Attributes too: B changes the mode, A sees it.
    let _ = a.stat("/dir/y", false, ROOT).unwrap();
    let (yfid, _) = b.stat("/dir/y", false, ROOT).unwrap();
    b.run(move |fs: Rc<Fs>| async move {
        let rec = proto::mdt::MdtRecSetattr { sa_mode: 0o100_600.into(), ..Default::default() };
        fs.setattr_fid(yfid, proto::mdt::attr::MODE, &rec, ROOT).await.map(|_| ())
    })
    .unwrap();
    assert_eq!(a.stat("/dir/y", false, ROOT).unwrap().1.mbo_mode.get() & 0o7777, 0o600);

    // A name B removes disappears for A.
    b.remove("/dir/y", false, ROOT).unwrap();
    assert_eq!(errno(a.stat("/dir/y", false, ROOT)), libc::ENOENT);
    assert!(names(&a.ls("/dir", ROOT).unwrap()).is_empty());
    a.umount().unwrap();
    b.umount().unwrap();
}

/// Acknowledged changes survive a clean stop and a SIGKILL.
#[test]
fn restart_clean_and_after_sigkill_keeps_acknowledged_changes() {
    let dir = TempDir::new("restart");
    let mut srv = Server::all_in_one(dir.path(), free_port());
    let c = srv.mount();
    c.mkdir("/keep", 0o755, ROOT).unwrap();
    for i in 0..50 {
        c.create(&format!("/keep/f{i}"), 0o644, Vec::new(), ROOT).unwrap();
    }
    c.rename("/keep/f0", "/keep/renamed", ROOT).unwrap();
    c.remove("/keep/f1", false, ROOT).unwrap();
    c.symlink("renamed", "/keep/link", ROOT).unwrap();
    let fid_before = c.stat("/keep/renamed", false, ROOT).unwrap().0;
    drop(c);
    srv.stop();
    assert!(srv.log_text().contains("rustre: stopped cleanly"));
    // Offline check of the stopped targets.
    for img in ["mdt0.img", "ost0.img", "ost1.img", "mgs.img"] {
        let out = std::process::Command::new(common::rustre())
            .arg("fsck")
            .arg(dir.path().join(img))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && text.contains("status=clean"), "{img}: {text}");
    }

    srv.restart();
    let c = srv.mount();
    let l = names(&c.ls("/keep", ROOT).unwrap());
    assert_eq!(l.len(), 50, "{l:?}");
    assert!(l.contains("renamed") && l.contains("link") && !l.contains("f0") && !l.contains("f1"));
    assert_eq!(c.stat("/keep/renamed", false, ROOT).unwrap().0, fid_before);
    assert_eq!(c.stat("/keep/link", true, ROOT).unwrap().0, fid_before);

    // Now changes acknowledged just before a SIGKILL, including cross-directory renames
    // (cross-shard operations, replayed from the intent log if they were cut short).
    c.mkdir("/other", 0o755, ROOT).unwrap();
    for i in 2..40 {
        c.rename(&format!("/keep/f{i}"), &format!("/other/g{i}"), ROOT).unwrap();
    }
    for i in 0..30 {
        c.mkdir(&format!("/other/dir{i}"), 0o700, ROOT).unwrap();
    }
    srv.kill();
    drop(c);
    srv.restart();
    let c = srv.mount();
    let keep = names(&c.ls("/keep", ROOT).unwrap());
    let other = names(&c.ls("/other", ROOT).unwrap());
    assert_eq!(other.len(), 38 + 30, "{other:?}");
    assert_eq!(keep.len(), 50 - 38, "{keep:?}");
    for i in 2..40 {
        assert!(other.contains(&format!("g{i}")));
    }
    assert_eq!(c.stat("/other", false, ROOT).unwrap().1.mbo_nlink.get(), 32);
    // The file system still works normally.
    c.create("/other/after", 0o644, Vec::new(), ROOT).unwrap();
}

/// LDLM_CONVERT: a client gives back the UPDATE bit of its lock and keeps LOOKUP; another
/// client's attribute change then needs no blocking AST, while a rename still does.
#[test]
fn convert_drops_bits_of_a_granted_lock() {
    use proto::ldlm::{LdlmInodebits, LdlmLockDesc, LdlmRequest, Policy, ibits, lock_type};
    let dir = TempDir::new("convert");
    let srv = Server::all_in_one(dir.path(), free_port());
    let a = srv.mount();
    let b = srv.mount();
    a.mkdir("/d", 0o755, ROOT).unwrap();
    a.create("/d/f", 0o644, Vec::new(), ROOT).unwrap();
    let (f, _) = a.stat("/d/f", false, ROOT).unwrap();
    // A's locks on /d/f (LOOKUP|UPDATE|PERM from its lookup) keep LOOKUP only.
    let statuses = a
        .run(move |fs: Rc<Fs>| async move {
            let mut out = Vec::new();
            for l in fs.locks.on_resource(&f.res_id()) {
                let req = LdlmRequest {
                    lock_flags: 0,
                    lock_desc: LdlmLockDesc::new(
                        lock_type::IBITS,
                        f.res_id(),
                        l.mode,
                        &Policy::Ibits(LdlmInodebits {
                            bits: ibits::LOOKUP.into(),
                            ..Default::default()
                        }),
                    ),
                    handles: vec![proto::fid::LustreHandle::new(l.remote)],
                };
                let m = proto::build::MsgBuilder::request(proto::opcode::Opcode::LdlmConvert)?
                    .set("DLM_REQ", req.to_vec())?;
                let mdc = fs.mdc(0)?;
                out.push(mdc.rpc(m, None).await?.status());
            }
            Ok(out)
        })
        .unwrap();
    assert!(!statuses.is_empty());
    let status = statuses.iter().copied().max().unwrap_or(-1);
    assert_eq!(status, 0);
    let before = a.counters().unwrap().blocking_asts;
    let (ffid, _) = b.stat("/d/f", false, ROOT).unwrap();
    b.run(move |fs: Rc<Fs>| async move {
        let rec = proto::mdt::MdtRecSetattr { sa_mode: 0o100_600.into(), ..Default::default() };
        fs.setattr_fid(ffid, proto::mdt::attr::MODE, &rec, ROOT).await.map(|_| ())
    })
    .unwrap();
    assert_eq!(a.counters().unwrap().blocking_asts, before, "UPDATE was given back: no AST");
    b.rename("/d/f", "/d/g", ROOT).unwrap();
    assert!(a.counters().unwrap().blocking_asts > before, "LOOKUP is still held: AST");
    // Converting a lock that is gone: ELDLM_NO_LOCK_DATA.
    let st = a
        .run(move |fs: Rc<Fs>| async move {
            let req = LdlmRequest {
                lock_flags: 0,
                lock_desc: LdlmLockDesc::new(
                    lock_type::IBITS,
                    f.res_id(),
                    proto::ldlm::mode::CR,
                    &Policy::Ibits(LdlmInodebits {
                        bits: ibits::LOOKUP.into(),
                        ..Default::default()
                    }),
                ),
                handles: vec![proto::fid::LustreHandle::new(0x1234_5678)],
            };
            let m = proto::build::MsgBuilder::request(proto::opcode::Opcode::LdlmConvert)?
                .set("DLM_REQ", req.to_vec())?;
            Ok(fs.mdc(0)?.rpc(m, None).await?.status())
        })
        .unwrap();
    assert_eq!(st, proto::ldlm::status::NO_LOCK_DATA);
}
