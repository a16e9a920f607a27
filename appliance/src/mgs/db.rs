//! The MGS configuration database: which file systems exist, their targets and NIDs, and the
//! configuration logs generated from them.
//!
//! Targets join with MGS_TARGET_REG (index assignment, NID updates); every change bumps the
//! file system's generation, which the MGS uses to revoke the config locks clients hold so
//! they re-read their logs. The logs are generated from the live configuration rather than
//! stored record by record: the configuration is small, and a generated log is always
//! consistent with it.

use proto::cfg::{CfgTarget, ClientLogSpec};
use proto::connect::ObdConnectData;
use proto::llog::PlainLog;
use proto::mgs::{MgsTargetInfo, ldd_flags};
use proto::nid::Nid;
use proto::wire::cstr;
use std::collections::BTreeMap;

/// Lustre version the MGS writes into markers (2.15.8, the LTS we speak).
pub const MGS_LUSTRE_VERSION: u32 = ObdConnectData::version(2, 15, 8, 0);
/// Highest target index (`INDEX_MAP_SIZE * 8 - 1`).
pub const MAX_INDEX: u32 = 65535;

/// Errno results of registration.
pub mod errno {
    /// `-EADDRINUSE`: a new target asked for an index that is taken.
    pub const EADDRINUSE: i32 = -98;
    /// `-EINVAL`: malformed registration.
    pub const EINVAL: i32 = -22;
    /// `-ENOENT`: no such log.
    pub const ENOENT: i32 = -2;
}

/// Target kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// Metadata target.
    Mdt,
    /// Object storage target.
    Ost,
}

impl Kind {
    fn tag(self) -> &'static str {
        match self {
            Kind::Mdt => "MDT",
            Kind::Ost => "OST",
        }
    }
}

/// Lustre's service name of a target: `fsname-OST000a`.
#[must_use]
pub fn svname(fsname: &str, kind: Kind, index: u32) -> String {
    format!("{fsname}-{}{index:04x}", kind.tag())
}

/// One registered target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Kind.
    pub kind: Kind,
    /// Index.
    pub index: u32,
    /// NIDs, primary first.
    pub nids: Vec<Nid>,
}

/// One file system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsDb {
    /// Name (1-8 characters).
    pub fsname: String,
    /// Default stripe size of new files.
    pub stripe_size: u64,
    /// Default stripe count (-1 = all OSTs).
    pub stripe_count: i32,
    /// Targets by (kind, index).
    pub targets: BTreeMap<(Kind, u32), Target>,
    /// Bumped on every change; config locks are revoked when it moves.
    pub generation: u64,
    /// Creation time (written into log markers).
    pub created: i64,
}

impl FsDb {
    /// The `fsname-client` log spec.
    #[must_use]
    pub fn client_spec(&self) -> ClientLogSpec {
        let tgt = |t: &Target| CfgTarget {
            svname: svname(&self.fsname, t.kind, t.index),
            index: t.index,
            nids: t.nids.clone(),
        };
        ClientLogSpec {
            fsname: self.fsname.clone(),
            stripe_size: self.stripe_size,
            stripe_count: u32::try_from(self.stripe_count.max(0)).unwrap_or(1).max(1),
            mdts: self.targets.values().filter(|t| t.kind == Kind::Mdt).map(tgt).collect(),
            osts: self.targets.values().filter(|t| t.kind == Kind::Ost).map(tgt).collect(),
            version: MGS_LUSTRE_VERSION,
            time: self.created,
        }
    }
}

/// What a registration did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    /// The target's index (assigned if it asked for one).
    pub index: u32,
    /// Its service name.
    pub svname: String,
    /// Whether the configuration changed (clients must re-read their logs).
    pub changed: bool,
}

/// The MGS database.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MgsDb {
    /// File systems by name.
    pub fs: BTreeMap<String, FsDb>,
}

fn valid_fsname(s: &str) -> bool {
    !s.is_empty() && s.len() <= 8 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

impl MgsDb {
    /// Creates a file system (mkfs of the MGS, or first registration).
    pub fn create_fs(
        &mut self,
        fsname: &str,
        stripe_size: u64,
        stripe_count: i32,
        now: i64,
    ) -> Result<&mut FsDb, i32> {
        if !valid_fsname(fsname) {
            return Err(errno::EINVAL);
        }
        Ok(self.fs.entry(fsname.to_string()).or_insert_with(|| FsDb {
            fsname: fsname.to_string(),
            stripe_size,
            stripe_count,
            targets: BTreeMap::new(),
            generation: 1,
            created: now,
        }))
    }

    /// Registers (or updates) a target, as MGS_TARGET_REG does: NEED_INDEX gets the first free
    /// index; a new (VIRGIN) target asking for a used index gets -EADDRINUSE unless it
    /// rewrites the config (WRITECONF); a known target updates its NIDs.
    pub fn register(&mut self, mti: &MgsTargetInfo, now: i64) -> Result<Registered, i32> {
        let fsname = cstr("mti_fsname", &mti.mti_fsname).map_err(|_| errno::EINVAL)?.to_string();
        let flags = mti.mti_flags.get();
        let kind = if flags & ldd_flags::SV_TYPE_MDT != 0 {
            Kind::Mdt
        } else if flags & ldd_flags::SV_TYPE_OST != 0 {
            Kind::Ost
        } else {
            return Err(errno::EINVAL);
        };
        let nids = mti.nids();
        if nids.is_empty() {
            return Err(errno::EINVAL);
        }
        let fs = match self.fs.get_mut(&fsname) {
            Some(f) => f,
            None => self.create_fs(&fsname, 1 << 20, 1, now)?,
        };
        let index = if flags & ldd_flags::NEED_INDEX != 0 {
            (0..=MAX_INDEX).find(|i| !fs.targets.contains_key(&(kind, *i))).ok_or(errno::EINVAL)?
        } else {
            let i = mti.mti_stripe_index.get();
            if i > MAX_INDEX {
                return Err(errno::EINVAL);
            }
            if fs.targets.contains_key(&(kind, i))
                && flags & ldd_flags::VIRGIN != 0
                && flags & ldd_flags::WRITECONF == 0
            {
                return Err(errno::EADDRINUSE);
            }
            i
        };
        let new = Target { kind, index, nids };
        let changed = fs.targets.get(&(kind, index)) != Some(&new);
        if changed {
            fs.targets.insert((kind, index), new);
            fs.generation += 1;
        }
        Ok(Registered { index, svname: svname(&fsname, kind, index), changed })
    }

    /// Generates log `name` as it stands now: `fsname-client`, `fsname-sptlrpc` (empty: null
    /// security everywhere), `params` (empty: no permanent parameters set), or a target's
    /// own log `fsname-MDT0000` (empty: our targets take their setup from their own config).
    pub fn log(&self, name: &str) -> Result<PlainLog, i32> {
        let empty =
            |t: i64| PlainLog::new("MGS", u64::try_from(t).unwrap_or(0)).map_err(|_| errno::EINVAL);
        if name == "params" {
            return empty(0);
        }
        let (fsname, suffix) = name.rsplit_once('-').ok_or(errno::ENOENT)?;
        let fs = self.fs.get(fsname).ok_or(errno::ENOENT)?;
        match suffix {
            "client" => fs.client_spec().to_log().map_err(|_| errno::EINVAL),
            "sptlrpc" => empty(fs.created),
            s if (s.starts_with("MDT") || s.starts_with("OST")) && s.len() == 7 => {
                let kind = if s.starts_with("MDT") { Kind::Mdt } else { Kind::Ost };
                let idx = u32::from_str_radix(&s[3..], 16).map_err(|_| errno::ENOENT)?;
                if fs.targets.contains_key(&(kind, idx)) {
                    empty(fs.created)
                } else {
                    Err(errno::ENOENT)
                }
            }
            _ => Err(errno::ENOENT),
        }
    }

    /// The generation of the file system a log belongs to (0 for `params`).
    #[must_use]
    pub fn generation_of(&self, log: &str) -> u64 {
        log.rsplit_once('-').and_then(|(f, _)| self.fs.get(f)).map_or(0, |f| f.generation)
    }

    /// Serialises the database (one line per item; stored in the MGS's own object).
    #[must_use]
    pub fn encode(&self) -> String {
        let mut s = String::from("rustre-mgs-db 1\n");
        for f in self.fs.values() {
            s += &format!(
                "fs {} {} {} {} {}\n",
                f.fsname, f.stripe_size, f.stripe_count, f.generation, f.created
            );
            for t in f.targets.values() {
                let nids: Vec<String> = t.nids.iter().map(ToString::to_string).collect();
                s += &format!(
                    "target {} {} {} {}\n",
                    f.fsname,
                    t.kind.tag(),
                    t.index,
                    nids.join(",")
                );
            }
        }
        s
    }

    /// Parses what [`MgsDb::encode`] wrote.
    pub fn decode(text: &str) -> Result<MgsDb, String> {
        let mut lines = text.lines();
        if lines.next() != Some("rustre-mgs-db 1") {
            return Err("not an MGS database (bad header)".into());
        }
        let mut db = MgsDb::default();
        for (n, line) in lines.enumerate() {
            let bad = || format!("MGS database line {}: {line:?}", n + 2);
            let w: Vec<&str> = line.split(' ').collect();
            match w.as_slice() {
                ["fs", name, ss, sc, generation, created] => {
                    let f = db
                        .create_fs(
                            name,
                            ss.parse().map_err(|_| bad())?,
                            sc.parse().map_err(|_| bad())?,
                            created.parse().map_err(|_| bad())?,
                        )
                        .map_err(|_| bad())?;
                    f.generation = generation.parse().map_err(|_| bad())?;
                }
                ["target", fsname, kind, index, nids] => {
                    let kind = match *kind {
                        "MDT" => Kind::Mdt,
                        "OST" => Kind::Ost,
                        _ => return Err(bad()),
                    };
                    let index: u32 = index.parse().map_err(|_| bad())?;
                    let nids = nids
                        .split(',')
                        .map(str::parse)
                        .collect::<Result<Vec<Nid>, _>>()
                        .map_err(|_| bad())?;
                    db.fs
                        .get_mut(*fsname)
                        .ok_or_else(bad)?
                        .targets
                        .insert((kind, index), Target { kind, index, nids });
                }
                [""] => {}
                _ => return Err(bad()),
            }
        }
        Ok(db)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::llog::LlogRecIter;
    use proto::wire::{FromZeros, cstr_array};

    fn mti(kind: u32, index: u32, flags: u32, nid: &str) -> MgsTargetInfo {
        let mut m = MgsTargetInfo::new_zeroed();
        m.mti_flags = (kind | flags).into();
        m.mti_stripe_index = index.into();
        m.mti_fsname = cstr_array("fsname", "rustre").unwrap();
        m.set_nids(&[nid.parse().unwrap()]).unwrap();
        m
    }

    #[test]
    fn registration_rules() {
        let mut db = MgsDb::default();
        db.create_fs("rustre", 1 << 20, 1, 100).unwrap();
        let g0 = db.generation_of("rustre-client");
        let r = db
            .register(&mti(ldd_flags::SV_TYPE_MDT, 0, ldd_flags::VIRGIN, "127.0.0.1@tcp"), 1)
            .unwrap();
        assert_eq!(r, Registered { index: 0, svname: "rustre-MDT0000".into(), changed: true });
        let a = db
            .register(
                &mti(
                    ldd_flags::SV_TYPE_OST,
                    0,
                    ldd_flags::NEED_INDEX | ldd_flags::VIRGIN,
                    "127.0.0.2@tcp",
                ),
                1,
            )
            .unwrap();
        let b = db
            .register(
                &mti(
                    ldd_flags::SV_TYPE_OST,
                    0,
                    ldd_flags::NEED_INDEX | ldd_flags::VIRGIN,
                    "127.0.0.3@tcp",
                ),
                1,
            )
            .unwrap();
        assert_eq!((a.index, b.index), (0, 1));
        assert_eq!(b.svname, "rustre-OST0001");
        assert!(db.generation_of("rustre-client") > g0);
        // A new target may not steal a used index...
        assert_eq!(
            db.register(&mti(ldd_flags::SV_TYPE_OST, 1, ldd_flags::VIRGIN, "127.0.0.9@tcp"), 1),
            Err(errno::EADDRINUSE)
        );
        // ...but a known one may come back, and a NID change is a config change.
        assert!(
            !db.register(&mti(ldd_flags::SV_TYPE_OST, 1, 0, "127.0.0.3@tcp"), 2).unwrap().changed
        );
        assert!(
            db.register(&mti(ldd_flags::SV_TYPE_OST, 1, 0, "127.0.0.4@tcp"), 2).unwrap().changed
        );
        assert_eq!(svname("rustre", Kind::Ost, 10), "rustre-OST000a");
        let back = MgsDb::decode(&db.encode()).unwrap();
        assert_eq!(back, db);
        assert!(MgsDb::decode("junk").is_err());
    }

    #[test]
    fn logs() {
        let mut db = MgsDb::default();
        db.create_fs("rustre", 1 << 20, 1, 100).unwrap();
        db.register(&mti(ldd_flags::SV_TYPE_MDT, 0, ldd_flags::VIRGIN, "127.0.0.1@tcp"), 1)
            .unwrap();
        db.register(&mti(ldd_flags::SV_TYPE_OST, 0, ldd_flags::VIRGIN, "127.0.0.1@tcp"), 1)
            .unwrap();
        let log = db.log("rustre-client").unwrap();
        let (chunk, _, _) = log.chunk_at(8192).unwrap();
        assert!(LlogRecIter::new(&chunk).count() > 10);
        assert_eq!(db.log("rustre-sptlrpc").unwrap().last_index, 0);
        assert_eq!(db.log("params").unwrap().last_index, 0);
        assert!(db.log("rustre-MDT0000").is_ok());
        assert_eq!(db.log("rustre-OST0007").err(), Some(errno::ENOENT));
        assert_eq!(db.log("other-client").err(), Some(errno::ENOENT));
    }
}
