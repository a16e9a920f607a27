//! Target storage: the label at the start of a target's device, the per-shard regions after it,
//! and [`AnyOsd`], which runs the same services over the memory OSD or the persistent one.

use osd_nvme::dev::dma::DmaDev;
use osd_nvme::{
    Attr, AttrMask, BlockDev, DiskOsd, FormatOptions, IndexPage, IoBuf, IoOp, LuFid, MemOsd,
    ObjType, Osd, OsdConfig, Region, StatFs, Txn, XattrMode,
};
use std::path::{Path, PathBuf};

/// What a target is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TargetKind {
    /// Management server.
    Mgs,
    /// Metadata target.
    Mdt,
    /// Object storage target.
    Ost,
}

impl TargetKind {
    /// Lowercase name (`mgs`, `mdt`, `ost`).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::Mgs => "mgs",
            TargetKind::Mdt => "mdt",
            TargetKind::Ost => "ost",
        }
    }
    fn code(self) -> u32 {
        match self {
            TargetKind::Mgs => 1,
            TargetKind::Mdt => 2,
            TargetKind::Ost => 3,
        }
    }
    fn from_code(c: u32) -> Option<TargetKind> {
        Some(match c {
            1 => TargetKind::Mgs,
            2 => TargetKind::Mdt,
            3 => TargetKind::Ost,
            _ => return None,
        })
    }
}

impl std::str::FromStr for TargetKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "mgs" => Ok(TargetKind::Mgs),
            "mdt" => Ok(TargetKind::Mdt),
            "ost" => Ok(TargetKind::Ost),
            o => Err(format!("unknown target kind {o:?} (mgs, mdt, ost)")),
        }
    }
}

/// Where a target keeps its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// In memory: gone at exit.
    Mem,
    /// A file, created sparse at format time.
    File(PathBuf),
    /// A block device.
    Dev(PathBuf),
}

impl std::str::FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "mem" {
            Ok(Backend::Mem)
        } else if let Some(p) = s.strip_prefix("file:") {
            Ok(Backend::File(PathBuf::from(p)))
        } else if let Some(p) = s.strip_prefix("dev:") {
            Ok(Backend::Dev(PathBuf::from(p)))
        } else {
            Err(format!("unknown backend {s:?} (mem, file:PATH, dev:PATH)"))
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Backend::Mem => write!(f, "mem"),
            Backend::File(p) => write!(f, "file:{}", p.display()),
            Backend::Dev(p) => write!(f, "dev:{}", p.display()),
        }
    }
}

/// Magic of a target label.
pub const LABEL_MAGIC: &[u8; 8] = b"RUSTRTGT";
/// Label format version.
pub const LABEL_VERSION: u32 = 1;
/// Bytes before the first shard region (label block, then alignment).
pub const LABEL_AREA: u64 = 1 << 20;

/// The label at offset 0 of a target's device: what the target is and how it was laid out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    /// File system name.
    pub fsname: String,
    /// Target kind.
    pub kind: TargetKind,
    /// Target index.
    pub index: u32,
    /// Shards the device was split into (fixed at format time: FIDs map to shards by it).
    pub nshards: u32,
    /// Format time.
    pub created: i64,
}

impl Label {
    /// Encodes into a 4 KiB block with a crc32c.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![0u8; 4096];
        b[..8].copy_from_slice(LABEL_MAGIC);
        b[8..12].copy_from_slice(&LABEL_VERSION.to_le_bytes());
        b[12..16].copy_from_slice(&self.kind.code().to_le_bytes());
        b[16..20].copy_from_slice(&self.index.to_le_bytes());
        b[20..24].copy_from_slice(&self.nshards.to_le_bytes());
        b[24..32].copy_from_slice(&self.created.to_le_bytes());
        let f = self.fsname.as_bytes();
        let n = f.len().min(63);
        b[32..32 + n].copy_from_slice(&f[..n]);
        let c = crc32c::crc32c(&b[..4092]);
        b[4092..].copy_from_slice(&c.to_le_bytes());
        b
    }

    /// Decodes and checks a label block.
    pub fn decode(b: &[u8]) -> Result<Label, String> {
        let b = b.get(..4096).ok_or("label block truncated")?;
        if &b[..8] != LABEL_MAGIC {
            return Err("not a Rustre target (no label; run rustre mkfs)".into());
        }
        let stored = u32::from_le_bytes(b[4092..].try_into().map_err(|_| "label")?);
        if crc32c::crc32c(&b[..4092]) != stored {
            return Err("target label checksum mismatch".into());
        }
        let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap_or_default());
        if u32_at(8) != LABEL_VERSION {
            return Err(format!("unsupported target label version {}", u32_at(8)));
        }
        let kind = TargetKind::from_code(u32_at(12)).ok_or("bad target kind in label")?;
        let nshards = u32_at(20);
        if nshards == 0 || nshards > 256 {
            return Err(format!("bad shard count {nshards} in label"));
        }
        let fs = &b[32..96];
        let end = fs.iter().position(|&c| c == 0).unwrap_or(fs.len());
        Ok(Label {
            fsname: String::from_utf8(fs[..end].to_vec()).map_err(|_| "bad fsname in label")?,
            kind,
            index: u32_at(16),
            nshards,
            created: i64::from_le_bytes(b[24..32].try_into().unwrap_or_default()),
        })
    }
}

/// The region of shard `i` of `n` on a device of `size` bytes, after the label area.
#[must_use]
pub fn shard_region(size: u64, i: u32, n: u32) -> Region {
    let usable = size.saturating_sub(LABEL_AREA);
    let per = usable / u64::from(n.max(1)) / 4096 * 4096;
    Region { offset: LABEL_AREA + per * u64::from(i), len: per }
}

/// Creates (for files) and labels a target device. Each shard formats its own region when it
/// first mounts (see [`open_shard`]).
pub async fn write_label(
    path: &Path,
    create_size: Option<u64>,
    label: &Label,
) -> Result<(), String> {
    if let Some(size) = create_size {
        // Sparse: blocks are allocated as the OSD writes them.
        let f = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        f.set_len(size).map_err(|e| format!("{}: {e}", path.display()))?;
        f.sync_all().map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let dev = DmaDev::open(path).await.map_err(|e| format!("{}: {e}", path.display()))?;
    let info = dev.info();
    if info.size < LABEL_AREA + u64::from(label.nshards) * (8 << 20) {
        return Err(format!(
            "{}: {} bytes is too small for {} shards",
            path.display(),
            info.size,
            label.nshards
        ));
    }
    let buf = IoBuf::from_slice(&label.encode());
    dev.submit(&mut [IoOp::Write { off: 0, buf: &buf }]).await.map_err(|e| e.to_string())?;
    // Invalidate any old shard superblocks so every region is formatted fresh.
    let zero = IoBuf::new(64 << 10);
    for i in 0..label.nshards {
        let r = shard_region(info.size, i, label.nshards);
        dev.submit(&mut [IoOp::Write { off: r.offset, buf: &zero }])
            .await
            .map_err(|e| e.to_string())?;
    }
    dev.flush().await.map_err(|e| e.to_string())
}

/// Reads a device's label.
pub async fn read_label(path: &Path) -> Result<Label, String> {
    let dev = DmaDev::open(path).await.map_err(|e| format!("{}: {e}", path.display()))?;
    let mut buf = IoBuf::new(4096);
    dev.submit(&mut [IoOp::Read { off: 0, buf: &mut buf }])
        .await
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Label::decode(&buf)
}

/// Checks a labelled target offline: its label, then every shard region's OSD structures and
/// checksums. Returns the label and one report per shard.
pub async fn fsck(path: &Path) -> Result<(Label, Vec<osd_nvme::fsck::FsckReport>), String> {
    let label = read_label(path).await?;
    let dev = DmaDev::open(path).await.map_err(|e| format!("{}: {e}", path.display()))?;
    let size = dev.info().size;
    let mut out = Vec::new();
    // The MGS keeps its database on shard 0 only; its other regions stay unformatted.
    let used = if label.kind == TargetKind::Mgs { 1 } else { label.nshards };
    for i in 0..used {
        out.push(osd_nvme::fsck::fsck(&dev, shard_region(size, i, label.nshards)).await);
    }
    Ok((label, out))
}

/// Opens (formatting on first use) shard `shard`'s OSD on a labelled device.
pub async fn open_shard(
    path: &Path,
    shard: u32,
    nshards: u32,
    cfg: OsdConfig,
) -> Result<(DiskOsd<DmaDev>, bool), String> {
    let dev = DmaDev::open(path).await.map_err(|e| format!("{}: {e}", path.display()))?;
    let region = shard_region(dev.info().size, shard, nshards);
    let mut formatted = false;
    let mut sb = IoBuf::new(4096);
    dev.submit(&mut [IoOp::Read { off: region.offset, buf: &mut sb }])
        .await
        .map_err(|e| e.to_string())?;
    if sb.iter().all(|&b| b == 0) {
        DiskOsd::format(&dev, region, FormatOptions { shard, ..FormatOptions::default() })
            .await
            .map_err(|e| format!("{}: format shard {shard}: {e}", path.display()))?;
        formatted = true;
    }
    let osd = DiskOsd::mount(dev, region, cfg)
        .await
        .map_err(|e| format!("{}: mount shard {shard}: {e}", path.display()))?;
    Ok((osd, formatted))
}

/// An OSD of either kind, so services are written once.
#[derive(Clone)]
pub enum AnyOsd {
    /// In memory.
    Mem(std::rc::Rc<MemOsd>),
    /// Persistent.
    Disk(DiskOsd<DmaDev>),
}

impl std::fmt::Debug for AnyOsd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AnyOsd::Mem(_) => write!(f, "AnyOsd::Mem"),
            AnyOsd::Disk(_) => write!(f, "AnyOsd::Disk"),
        }
    }
}

macro_rules! delegate {
    ($self:ident, $o:ident => $e:expr) => {
        match $self {
            AnyOsd::Mem($o) => $e,
            AnyOsd::Disk($o) => $e,
        }
    };
}

impl Osd for AnyOsd {
    fn trans_create(&self) -> Txn {
        Txn::new()
    }
    async fn trans_start(&self, th: &mut Txn) -> osd_nvme::Result<()> {
        delegate!(self, o => o.trans_start(th).await)
    }
    async fn trans_stop(&self, th: Txn) -> osd_nvme::Result<u64> {
        delegate!(self, o => o.trans_stop(th).await)
    }
    async fn sync(&self) -> osd_nvme::Result<()> {
        delegate!(self, o => o.sync().await)
    }
    fn last_committed(&self) -> u64 {
        delegate!(self, o => o.last_committed())
    }
    async fn statfs(&self) -> osd_nvme::Result<StatFs> {
        delegate!(self, o => o.statfs().await)
    }
    async fn attr_get(&self, fid: &LuFid) -> osd_nvme::Result<Attr> {
        delegate!(self, o => o.attr_get(fid).await)
    }
    async fn obj_type(&self, fid: &LuFid) -> osd_nvme::Result<ObjType> {
        delegate!(self, o => o.obj_type(fid).await)
    }
    async fn create(
        &self,
        th: &mut Txn,
        fid: &LuFid,
        ty: ObjType,
        attr: &Attr,
    ) -> osd_nvme::Result<()> {
        delegate!(self, o => o.create(th, fid, ty, attr).await)
    }
    async fn destroy(&self, th: &mut Txn, fid: &LuFid) -> osd_nvme::Result<()> {
        delegate!(self, o => o.destroy(th, fid).await)
    }
    async fn attr_set(
        &self,
        th: &mut Txn,
        fid: &LuFid,
        mask: AttrMask,
        attr: &Attr,
    ) -> osd_nvme::Result<()> {
        delegate!(self, o => o.attr_set(th, fid, mask, attr).await)
    }
    async fn ref_add(&self, th: &mut Txn, fid: &LuFid) -> osd_nvme::Result<()> {
        delegate!(self, o => o.ref_add(th, fid).await)
    }
    async fn ref_del(&self, th: &mut Txn, fid: &LuFid) -> osd_nvme::Result<()> {
        delegate!(self, o => o.ref_del(th, fid).await)
    }
    async fn xattr_get(&self, fid: &LuFid, name: &[u8], buf: &mut [u8]) -> osd_nvme::Result<usize> {
        delegate!(self, o => o.xattr_get(fid, name, buf).await)
    }
    async fn xattr_list(&self, fid: &LuFid) -> osd_nvme::Result<Vec<Vec<u8>>> {
        delegate!(self, o => o.xattr_list(fid).await)
    }
    async fn xattr_set(
        &self,
        th: &mut Txn,
        fid: &LuFid,
        name: &[u8],
        value: &[u8],
        mode: XattrMode,
    ) -> osd_nvme::Result<()> {
        delegate!(self, o => o.xattr_set(th, fid, name, value, mode).await)
    }
    async fn xattr_del(&self, th: &mut Txn, fid: &LuFid, name: &[u8]) -> osd_nvme::Result<()> {
        delegate!(self, o => o.xattr_del(th, fid, name).await)
    }
    async fn read(&self, fid: &LuFid, off: u64, bufs: &mut [&mut [u8]]) -> osd_nvme::Result<usize> {
        delegate!(self, o => o.read(fid, off, bufs).await)
    }
    async fn write(
        &self,
        th: &mut Txn,
        fid: &LuFid,
        off: u64,
        bufs: &[&[u8]],
    ) -> osd_nvme::Result<usize> {
        delegate!(self, o => o.write(th, fid, off, bufs).await)
    }
    async fn punch(&self, th: &mut Txn, fid: &LuFid, start: u64, end: u64) -> osd_nvme::Result<()> {
        delegate!(self, o => o.punch(th, fid, start, end).await)
    }
    async fn index_lookup(&self, fid: &LuFid, key: &[u8]) -> osd_nvme::Result<Vec<u8>> {
        delegate!(self, o => o.index_lookup(fid, key).await)
    }
    async fn index_insert(
        &self,
        th: &mut Txn,
        fid: &LuFid,
        key: &[u8],
        value: &[u8],
    ) -> osd_nvme::Result<()> {
        delegate!(self, o => o.index_insert(th, fid, key, value).await)
    }
    async fn index_delete(&self, th: &mut Txn, fid: &LuFid, key: &[u8]) -> osd_nvme::Result<()> {
        delegate!(self, o => o.index_delete(th, fid, key).await)
    }
    async fn index_iter(
        &self,
        fid: &LuFid,
        cookie: u64,
        max: usize,
    ) -> osd_nvme::Result<IndexPage> {
        delegate!(self, o => o.index_iter(fid, cookie, max).await)
    }
    async fn objects(&self, after: Option<LuFid>, max: usize) -> osd_nvme::Result<Vec<LuFid>> {
        delegate!(self, o => o.objects(after, max).await)
    }
}

impl AnyOsd {
    /// A memory OSD of `capacity` bytes.
    #[must_use]
    pub fn mem(capacity: u64) -> AnyOsd {
        AnyOsd::Mem(std::rc::Rc::new(MemOsd::new(capacity)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_round_trip_and_damage() {
        let l = Label {
            fsname: "rustre".into(),
            kind: TargetKind::Ost,
            index: 3,
            nshards: 2,
            created: 17,
        };
        let mut b = l.encode();
        assert_eq!(Label::decode(&b).unwrap(), l);
        b[40] ^= 1;
        assert!(Label::decode(&b).unwrap_err().contains("checksum"));
        assert!(Label::decode(&[0u8; 4096]).unwrap_err().contains("mkfs"));
        let r0 = shard_region(1 << 30, 0, 2);
        let r1 = shard_region(1 << 30, 1, 2);
        assert_eq!(r0.offset, LABEL_AREA);
        assert_eq!(r1.offset, r0.offset + r0.len);
        assert!(r1.offset + r1.len <= 1 << 30);
        assert_eq!(r0.len % 4096, 0);
    }
}
