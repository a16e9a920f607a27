//! Appliance configuration: `rustre serve --config FILE` (TOML), or the embedded default
//! `rustre serve --data DIR` derived from a directory.
//!
//! ```toml
//! fsname = "rustre"
//! cores = 2
//! sync_journal = true        # commit before replying (clients never need to replay)
//!
//! [network]
//! nids = ["192.168.1.10@tcp"]
//! port = 988
//! accept = "secure"          # or "all"
//! mgs_nids = []              # empty: the MGS runs here
//! interface = "eth0"         # configured when rustre is PID 1 (the appliance image)
//! address = "192.168.1.10/24"
//! gateway = "192.168.1.1"
//!
//! [[target]]
//! kind = "mgs"
//! backend = "file:/var/lib/rustre/mgs.img"
//!
//! [[target]]
//! kind = "mdt"
//! index = 0
//! backend = "dev:/dev/nvme0n1"
//! ```

use crate::store::{Backend, TargetKind};
use proto::nid::Nid;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// One target of this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetConfig {
    /// MGS, MDT or OST.
    pub kind: TargetKind,
    /// Index (0 for the MGS).
    pub index: u32,
    /// Where it stores.
    pub backend: Backend,
    /// Size of a file backend created at format time.
    pub size: u64,
}

/// HTTP management settings (the management console).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    /// Bind address (`127.0.0.1:8080`); empty disables HTTP.
    pub listen: String,
    /// Read-only token (required off loopback).
    pub read_token: Option<String>,
    /// Admin token (required off loopback for changes).
    pub admin_token: Option<String>,
}

/// The whole appliance configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplianceConfig {
    /// File system name.
    pub fsname: String,
    /// Shards (one executor per core).
    pub cores: usize,
    /// Our NIDs.
    pub nids: Vec<Nid>,
    /// LNet acceptor port.
    pub port: u16,
    /// Accept only privileged source ports (Lustre's `accept=secure`).
    pub accept_secure: bool,
    /// The MGS's NIDs when it runs elsewhere (empty: local MGS).
    pub mgs_nids: Vec<Nid>,
    /// Targets served here.
    pub targets: Vec<TargetConfig>,
    /// Default stripe size of new files.
    pub stripe_size: u64,
    /// Default stripe count (-1 = all OSTs).
    pub stripe_count: i32,
    /// OSD metadata cache per shard instance, in bytes.
    pub cache_size: u64,
    /// Management HTTP server.
    pub http: HttpConfig,
    /// Seconds a client has to answer a lock callback before eviction.
    pub ldlm_timeout: u64,
    /// Seconds of silence after which a client is evicted.
    pub evict_timeout: u64,
    /// Commit metadata and object creations before replying (Lustre's `sync_journal`): every
    /// acknowledged change survives a crash without clients replaying requests. Off, replies
    /// carry the transno and clients learn commits through `last_committed`.
    pub sync_journal: bool,
    /// The interface the appliance configures when it runs as PID 1 (`[network] interface`,
    /// `address`, `gateway`); elsewhere the host's network is used as it is.
    pub iface: IfaceConfig,
}

/// An interface's static IPv4 configuration (the appliance image has no DHCP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IfaceConfig {
    /// Interface name (default `eth0`).
    pub name: String,
    /// Address and prefix length; `None` leaves the interface down.
    pub address: Option<(std::net::Ipv4Addr, u8)>,
    /// Default gateway.
    pub gateway: Option<std::net::Ipv4Addr>,
}

/// Parses `10.0.0.2/24`.
pub fn parse_cidr(s: &str) -> Result<(std::net::Ipv4Addr, u8), String> {
    let (a, p) = s.split_once('/').ok_or_else(|| format!("address {s:?}: ADDR/PREFIX"))?;
    let a = a.parse().map_err(|e| format!("address {s:?}: {e}"))?;
    let p: u8 = p.parse().map_err(|e| format!("address {s:?}: {e}"))?;
    if p > 32 {
        return Err(format!("address {s:?}: prefix above 32"));
    }
    Ok((a, p))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    fsname: Option<String>,
    cores: Option<usize>,
    stripe_size: Option<String>,
    stripe_count: Option<i32>,
    cache_size: Option<String>,
    ldlm_timeout: Option<u64>,
    evict_timeout: Option<u64>,
    sync_journal: Option<bool>,
    network: Option<FileNetwork>,
    #[serde(default)]
    target: Vec<FileTarget>,
    http: Option<FileHttp>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileNetwork {
    nids: Option<Vec<String>>,
    port: Option<u16>,
    accept: Option<String>,
    mgs_nids: Option<Vec<String>>,
    interface: Option<String>,
    address: Option<String>,
    gateway: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTarget {
    kind: String,
    index: Option<u32>,
    backend: String,
    size: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileHttp {
    listen: Option<String>,
    read_token: Option<String>,
    admin_token: Option<String>,
}

/// Parses a size: `4096`, `64K`, `1M`, `2G`, `1T`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m: u64 = match c.to_ascii_uppercase() {
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                _ => return Err(format!("bad size suffix in {s:?}")),
            };
            (&s[..i], m)
        }
        _ => (s, 1),
    };
    let n: u64 = num.trim().parse().map_err(|_| format!("bad size {s:?}"))?;
    n.checked_mul(mult).ok_or_else(|| format!("size {s:?} overflows"))
}

fn default_cores() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

impl ApplianceConfig {
    /// Defaults shared by both ways of configuring.
    fn base(fsname: &str) -> ApplianceConfig {
        ApplianceConfig {
            fsname: fsname.into(),
            cores: default_cores(),
            nids: vec![Nid::tcp([127, 0, 0, 1])],
            port: proto::lnet::ACCEPTOR_PORT,
            accept_secure: true,
            mgs_nids: Vec::new(),
            targets: Vec::new(),
            stripe_size: 1 << 20,
            stripe_count: 1,
            cache_size: 64 << 20,
            http: HttpConfig {
                listen: "127.0.0.1:8080".into(),
                read_token: None,
                admin_token: None,
            },
            ldlm_timeout: 100,
            evict_timeout: 150,
            sync_journal: true,
            iface: IfaceConfig { name: "eth0".into(), address: None, gateway: None },
        }
    }

    /// The embedded default: an all-in-one file system named `rustre` (MGS, MDT0000 and two
    /// OSTs on the persistent OSD) in files under `dir`, on `127.0.0.1@tcp`.
    #[must_use]
    pub fn embedded(dir: &Path, size: u64) -> ApplianceConfig {
        let mut c = ApplianceConfig::base("rustre");
        let t = |kind, index, name: &str, size| TargetConfig {
            kind,
            index,
            backend: Backend::File(dir.join(name)),
            size,
        };
        c.targets = vec![
            t(TargetKind::Mgs, 0, "mgs.img", 64 << 20),
            t(TargetKind::Mdt, 0, "mdt0.img", size),
            t(TargetKind::Ost, 0, "ost0.img", size),
            t(TargetKind::Ost, 1, "ost1.img", size),
        ];
        c
    }

    /// Parses a TOML configuration.
    pub fn from_toml(text: &str) -> Result<ApplianceConfig, String> {
        let f: FileConfig = toml::from_str(text).map_err(|e| format!("config: {e}"))?;
        let mut c = ApplianceConfig::base(f.fsname.as_deref().unwrap_or("rustre"));
        if let Some(n) = f.cores {
            c.cores = n;
        }
        if let Some(s) = f.stripe_size {
            c.stripe_size = parse_size(&s)?;
        }
        if let Some(s) = f.stripe_count {
            c.stripe_count = s;
        }
        if let Some(s) = f.cache_size {
            c.cache_size = parse_size(&s)?;
        }
        if let Some(t) = f.ldlm_timeout {
            c.ldlm_timeout = t;
        }
        if let Some(t) = f.evict_timeout {
            c.evict_timeout = t;
        }
        if let Some(s) = f.sync_journal {
            c.sync_journal = s;
        }
        if let Some(n) = f.network {
            if let Some(nids) = n.nids {
                c.nids = nids
                    .iter()
                    .map(|s| s.parse().map_err(|e| format!("network.nids {s:?}: {e}")))
                    .collect::<Result<_, _>>()?;
            }
            if let Some(p) = n.port {
                c.port = p;
            }
            match n.accept.as_deref() {
                None | Some("secure") => c.accept_secure = true,
                Some("all") => c.accept_secure = false,
                Some(o) => return Err(format!("network.accept {o:?}: secure or all")),
            }
            if let Some(i) = n.interface {
                c.iface.name = i;
            }
            c.iface.address = n.address.as_deref().map(parse_cidr).transpose()?;
            c.iface.gateway = n
                .gateway
                .map(|g| g.parse().map_err(|e| format!("network.gateway {g:?}: {e}")))
                .transpose()?;
            if let Some(m) = n.mgs_nids {
                c.mgs_nids = m
                    .iter()
                    .map(|s| s.parse().map_err(|e| format!("network.mgs_nids {s:?}: {e}")))
                    .collect::<Result<_, _>>()?;
            }
        }
        for t in f.target {
            c.targets.push(TargetConfig {
                kind: t.kind.parse()?,
                index: t.index.unwrap_or(0),
                backend: t.backend.parse()?,
                size: t.size.as_deref().map(parse_size).transpose()?.unwrap_or(1 << 30),
            });
        }
        if let Some(h) = f.http {
            if let Some(l) = h.listen {
                c.http.listen = l;
            }
            c.http.read_token = h.read_token;
            c.http.admin_token = h.admin_token;
        }
        c.validate()?;
        Ok(c)
    }

    /// Reads a TOML file.
    pub fn load(path: &Path) -> Result<ApplianceConfig, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::from_toml(&text)
    }

    /// Checks consistency.
    pub fn validate(&self) -> Result<(), String> {
        if self.fsname.is_empty()
            || self.fsname.len() > 8
            || !self.fsname.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err(format!("fsname {:?}: 1-8 letters, digits or _", self.fsname));
        }
        if self.cores == 0 || self.cores > 64 {
            return Err(format!("cores {}: 1..=64", self.cores));
        }
        if self.nids.is_empty() {
            return Err("network.nids: at least one NID".into());
        }
        if self.targets.is_empty() {
            return Err("no targets configured".into());
        }
        let mut seen = std::collections::HashSet::new();
        for t in &self.targets {
            if !seen.insert((t.kind, t.index)) {
                return Err(format!("target {} {} configured twice", t.kind.as_str(), t.index));
            }
        }
        let has_mgs = self.targets.iter().any(|t| t.kind == TargetKind::Mgs);
        if !has_mgs && self.mgs_nids.is_empty() {
            return Err("no local MGS target and no network.mgs_nids".into());
        }
        if !self.stripe_size.is_multiple_of(65536) || self.stripe_size == 0 {
            return Err("stripe_size must be a multiple of 64K".into());
        }
        Ok(())
    }

    /// Whether the MGS is local.
    #[must_use]
    pub fn local_mgs(&self) -> bool {
        self.targets.iter().any(|t| t.kind == TargetKind::Mgs)
    }

    /// The target files to create for a file backend (path, size), if any.
    #[must_use]
    pub fn target_path(t: &TargetConfig) -> Option<PathBuf> {
        match &t.backend {
            Backend::File(p) | Backend::Dev(p) => Some(p.clone()),
            Backend::Mem => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_and_errors() {
        let c = ApplianceConfig::from_toml(
            r#"
            fsname = "lfs1"
            cores = 2
            stripe_size = "4M"
            [network]
            nids = ["10.0.0.1@tcp"]
            accept = "all"
            address = "10.0.0.1/24"
            [[target]]
            kind = "mgs"
            backend = "mem"
            [[target]]
            kind = "ost"
            index = 3
            backend = "file:/tmp/x.img"
            size = "2G"
            "#,
        )
        .unwrap();
        assert_eq!(c.fsname, "lfs1");
        assert_eq!(c.stripe_size, 4 << 20);
        assert!(!c.accept_secure);
        assert_eq!(c.iface.address, Some(([10, 0, 0, 1].into(), 24)));
        assert_eq!(c.iface.name, "eth0");
        assert!(parse_cidr("10.0.0.1/33").is_err());
        assert_eq!(
            c.targets[1],
            TargetConfig {
                kind: TargetKind::Ost,
                index: 3,
                backend: Backend::File("/tmp/x.img".into()),
                size: 2 << 30
            }
        );
        assert!(
            ApplianceConfig::from_toml(
                "fsname = \"waytoolongname\"\n[[target]]\nkind=\"mgs\"\nbackend=\"mem\""
            )
            .is_err()
        );
        assert!(
            ApplianceConfig::from_toml("[[target]]\nkind=\"ost\"\nbackend=\"mem\"")
                .unwrap_err()
                .contains("MGS")
        );
        assert!(ApplianceConfig::from_toml("bogus = 1").is_err());
        assert_eq!(parse_size("64K"), Ok(65536));
        assert!(parse_size("12Q").is_err());
        let e = ApplianceConfig::embedded(Path::new("/d"), 1 << 30);
        assert_eq!(e.targets.len(), 4);
        e.validate().unwrap();
    }
}
