//! Node configuration: network interfaces, acceptor policy, tunables and limits.
//!
//! Defaults follow Lustre 2.15's socklnd and LNet module parameters where Lustre has one
//! (named in each field's doc); the rest are Rustre's own bounds (design decision 12).

use std::net::SocketAddrV4;
use std::time::Duration;

use proto::Nid;
use proto::lnet::{ACCEPTOR_PORT, PID_LUSTRE, ksock_version};

pub use crate::rt::Placement;

/// One network interface: a NID and the address its acceptor listens on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NiConfig {
    /// The NID, e.g. `192.168.1.10@tcp` or `127.0.0.2@tcp1`.
    pub nid: Nid,
    /// Where the acceptor listens (every shard binds it with SO_REUSEPORT).
    pub listen: SocketAddrV4,
}

impl NiConfig {
    /// An NI whose acceptor listens on the NID's own address and `port`.
    pub fn new(nid: Nid, port: u16) -> crate::Result<NiConfig> {
        let ip = nid.ipv4().ok_or(crate::LnetError::Invalid("NID is not an IP NID"))?;
        Ok(NiConfig { nid, listen: SocketAddrV4::new(ip, port) })
    }
}

/// Which incoming connections the acceptor takes (`accept=` in Lustre).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcceptMode {
    /// Only from privileged source ports (<= 1023): Lustre's default `secure`.
    Secure,
    /// From any port; a peer on an unprivileged port gets PID `port | USERFLAG`.
    All,
    /// No acceptor (a client that only connects out).
    None,
}

/// How incoming PUTs and GETs on a portal choose the shard that matches them.
#[derive(Debug, Clone, Copy)]
pub enum PortalRoute {
    /// The shard that received the message (the peer's home shard) matches it. Request portals.
    Receiving,
    /// `f(match_bits, nshards)` names the shard; reply and bulk portals, whose MEs were
    /// attached on the shard that sent the request. The same rule must hold on every shard.
    ByMatchBits(fn(u64, usize) -> usize),
}

/// A node's LNet configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The local NIs (at least one).
    pub nis: Vec<NiConfig>,
    /// The acceptor port peers listen on (`accept_port`, 988).
    pub port: u16,
    /// Per-peer address overrides (tests, NAT); otherwise a peer is `nid-ip:port`.
    pub peer_addrs: Vec<(Nid, SocketAddrV4)>,
    /// Acceptor policy (`accept`, default secure).
    pub accept: AcceptMode,
    /// Where the shards run.
    pub placement: Placement,
    /// Our PID (`LNET_PID_LUSTRE`).
    pub pid: u32,
    /// Connect from a privileged source port, as a kernel peer does (needs root or
    /// CAP_NET_BIND_SERVICE); otherwise from an ephemeral port.
    pub connect_privileged: bool,
    /// socklnd version we offer when connecting (3; 1 and 2 for tests of old peers).
    pub proto_version: u32,
    /// Open CONTROL, BULK_IN and BULK_OUT sockets (`typed_conns`, 1).
    pub typed_conns: bool,
    /// Messages of at least this many bytes (headers included) use BULK_OUT (`min_bulk`, 1 KiB).
    pub min_bulk: usize,
    /// Payloads of at least this size request a ZC-ACK (`zc_min_payload`, 16 KiB); 0 = never.
    pub zc_min_payload: usize,
    /// Checksum outgoing messages on V2 connections (`enable_csum`, off). Incoming checksums
    /// are always verified when the peer sets them.
    pub enable_csum: bool,
    /// LNet messages in flight to one peer (`peer_credits`, 8).
    pub peer_credits: usize,
    /// Messages queued for one peer beyond its credits; past this a send fails.
    pub max_tx_queue: usize,
    /// Peers per shard.
    pub max_peers: usize,
    /// Memory descriptors per shard.
    pub max_mds: usize,
    /// Connections per peer per type (`conns_per_peer`, 1; loopback peers are exempt as in
    /// Lustre).
    pub conns_per_type: usize,
    /// Idle time before a keepalive NOOP (`keepalive`, 30 s).
    pub keepalive: Duration,
    /// A connection with data to send or receive that makes no progress for this long is
    /// closed; also the ZC-ACK and connect deadline (`sock_timeout`, ~50 s in 2.15).
    pub timeout: Duration,
    /// No news from a peer for this long declares it dead (`peer_timeout`, 180 s).
    pub peer_timeout: Duration,
    /// Deadline for the acceptor request and hello (`accept_timeout`, 5 s).
    pub accept_timeout: Duration,
    /// First reconnect interval (`min_reconnectms`, 1 s).
    pub min_reconnect: Duration,
    /// Largest reconnect interval (`max_reconnectms`, 60 s).
    pub max_reconnect: Duration,
    /// Ping a peer before the first non-reserved PUT/GET to it (discovery, on in 2.15).
    pub discovery: bool,
    /// Deadline for a discovery ping's REPLY.
    pub discovery_timeout: Duration,
    /// Shard routing per portal; portals not listed use [`PortalRoute::Receiving`].
    pub routes: Vec<(u32, PortalRoute)>,
    /// Portals where an unmatched PUT waits for a buffer instead of being dropped
    /// (`LNetSetLazyPortal`, ptlrpc's request portals). The connection stalls meanwhile.
    pub lazy_portals: Vec<u32>,
    /// Longest wait of a PUT on a lazy portal before it is dropped.
    pub lazy_timeout: Duration,
    /// Messages in flight between two shards (channel mesh capacity).
    pub mesh_capacity: usize,
    /// Bytes read ahead when a connection reads a header (small messages are batched in one
    /// read; bulk payload past it is read straight into the MD).
    pub rx_readahead: usize,
    /// Events an event queue holds before receivers for it wait (backpressure).
    pub eq_capacity: usize,
}

impl Config {
    /// A configuration with Lustre's defaults for `nis`, listening on port 988.
    #[must_use]
    pub fn new(nis: Vec<NiConfig>) -> Config {
        Config {
            nis,
            port: ACCEPTOR_PORT,
            peer_addrs: Vec::new(),
            accept: AcceptMode::Secure,
            placement: Placement::MaxSpread(1),
            pid: PID_LUSTRE,
            connect_privileged: true,
            proto_version: ksock_version::V3,
            typed_conns: true,
            min_bulk: 1024,
            zc_min_payload: 16 << 10,
            enable_csum: false,
            peer_credits: 8,
            max_tx_queue: 1024,
            max_peers: 16384,
            max_mds: 1 << 20,
            conns_per_type: 1,
            keepalive: Duration::from_secs(30),
            timeout: Duration::from_secs(50),
            peer_timeout: Duration::from_secs(180),
            accept_timeout: Duration::from_secs(5),
            min_reconnect: Duration::from_secs(1),
            max_reconnect: Duration::from_secs(60),
            discovery: true,
            discovery_timeout: Duration::from_secs(50),
            routes: Vec::new(),
            lazy_portals: Vec::new(),
            lazy_timeout: Duration::from_secs(60),
            mesh_capacity: 256,
            rx_readahead: 4096,
            eq_capacity: 4096,
        }
    }

    /// Checks the configuration's internal consistency.
    pub fn validate(&self) -> crate::Result<()> {
        use crate::LnetError::Invalid;
        if self.nis.is_empty() {
            return Err(Invalid("no NI configured"));
        }
        for ni in &self.nis {
            if ni.nid.ipv4().is_none() {
                return Err(Invalid("NI is not a TCP (IP) NID"));
            }
        }
        let n = self.placement.count();
        if n == 0 || n > 256 {
            return Err(Invalid("shard count must be 1..=256"));
        }
        if !(ksock_version::V1..=ksock_version::V3).contains(&self.proto_version) {
            return Err(Invalid("proto_version must be 1..=3"));
        }
        if self.max_mds == 0 || self.max_mds >= (1 << 24) {
            return Err(Invalid("max_mds must be 1..2^24"));
        }
        if self.peer_credits == 0 || self.mesh_capacity == 0 || self.eq_capacity == 0 {
            return Err(Invalid("credits and capacities must be positive"));
        }
        if self.rx_readahead < 128 {
            return Err(Invalid("rx_readahead must be >= 128"));
        }
        Ok(())
    }

    /// The address to connect to for `nid`.
    #[must_use]
    pub fn peer_addr(&self, nid: Nid) -> Option<SocketAddrV4> {
        if let Some((_, a)) = self.peer_addrs.iter().find(|(n, _)| *n == nid) {
            return Some(*a);
        }
        nid.ipv4().map(|ip| SocketAddrV4::new(ip, self.port))
    }

    pub(crate) fn route(&self, portal: u32) -> PortalRoute {
        self.routes.iter().find(|(p, _)| *p == portal).map_or(PortalRoute::Receiving, |(_, r)| *r)
    }
}
