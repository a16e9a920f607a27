//! LNet network identifiers: `lnet_nid_t` (64-bit, "nid4") and `struct lnet_nid` (20 bytes).
//!
//! A nid4 is `net << 32 | addr`, with `net = lnd_type << 16 | net_num`. Text forms follow
//! Lustre's `libcfs_nid2str`: `192.168.1.10@tcp`, `10.0.0.1@tcp1`, `0@lo`, `5@gni`, and the
//! net alone as `tcp`, `tcp1`, `o2ib`.

use crate::error::{Result, WireError};
use crate::wire::Wire;
use core::fmt;
use core::str::FromStr;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// LNet network driver types (`enum lnet_nal` in `nidstr.h`).
pub mod lnd_type {
    /// TCP sockets (socklnd).
    pub const SOCKLND: u32 = 2;
    /// InfiniBand / RoCE verbs (o2iblnd).
    pub const O2IBLND: u32 = 5;
    /// Loopback.
    pub const LOLND: u32 = 9;
    /// Cray Gemini.
    pub const GNILND: u32 = 13;
    /// Cray Gemini over IP.
    pub const GNIIPLND: u32 = 14;
    /// Portals 4 for BXI.
    pub const PTL4LND: u32 = 15;
    /// HPE kfabric (newer than 2.15).
    pub const KFILND: u32 = 16;
    /// Fujitsu Tofu (newer than 2.15).
    pub const TOFULND: u32 = 17;
    /// Amazon Elastic Fabric Adapter (newer than 2.15).
    pub const EFALND: u32 = 18;
    /// Bull BXIv3 (newer than 2.15).
    pub const BXI3LND: u32 = 19;
}

/// How an LND writes its addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AddrForm {
    /// Dotted IPv4.
    Ip,
    /// Decimal number.
    Num,
}

/// (type, name, address form), as in `libcfs_netstrfns`.
const LNDS: &[(u32, &str, AddrForm)] = &[
    (lnd_type::LOLND, "lo", AddrForm::Num),
    (lnd_type::SOCKLND, "tcp", AddrForm::Ip),
    (lnd_type::O2IBLND, "o2ib", AddrForm::Ip),
    (lnd_type::GNILND, "gni", AddrForm::Num),
    (lnd_type::GNIIPLND, "gip", AddrForm::Ip),
    (lnd_type::PTL4LND, "ptlf", AddrForm::Num),
    (lnd_type::KFILND, "kfi", AddrForm::Num),
    (lnd_type::TOFULND, "tofu", AddrForm::Num),
    (lnd_type::EFALND, "efa", AddrForm::Ip),
    (lnd_type::BXI3LND, "bxi3f", AddrForm::Num),
];

fn lnd_by_type(t: u32) -> Option<(&'static str, AddrForm)> {
    LNDS.iter().find(|(ty, _, _)| *ty == t).map(|&(_, n, f)| (n, f))
}

/// An LNet network: `lnd_type << 16 | net_num` (the upper half of a nid4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Net(pub u32);

impl Net {
    /// `tcp` (net number 0).
    pub const TCP: Net = Net(lnd_type::SOCKLND << 16);
    /// `lo`.
    pub const LO: Net = Net(lnd_type::LOLND << 16);

    /// A network of LND type `lnd` and number `num`.
    #[must_use]
    pub const fn new(lnd: u32, num: u16) -> Net {
        Net((lnd << 16) | num as u32)
    }
    /// The LND type.
    #[must_use]
    pub const fn lnd(self) -> u32 {
        self.0 >> 16
    }
    /// The network number (`tcp1` has 1).
    #[must_use]
    pub const fn num(self) -> u16 {
        (self.0 & 0xffff) as u16
    }
}

impl fmt::Display for Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match lnd_by_type(self.lnd()) {
            Some((name, _)) if self.num() == 0 => write!(f, "{name}"),
            Some((name, _)) => write!(f, "{name}{}", self.num()),
            None if self.num() == 0 => write!(f, "<{}>", self.lnd()),
            None => write!(f, "<{}:{}>", self.lnd(), self.num()),
        }
    }
}

impl FromStr for Net {
    type Err = WireError;
    fn from_str(s: &str) -> Result<Net> {
        const WHAT: &str = "net";
        // Longest name first so that "gip" is not taken for "gni"-like prefixes, and so on.
        let mut best: Option<(u32, &str)> = None;
        for &(t, name, _) in LNDS {
            if s.starts_with(name) && best.is_none_or(|(_, b)| name.len() > b.len()) {
                best = Some((t, name));
            }
        }
        let (t, name) = best.ok_or(WireError::BadString { what: WHAT, detail: "unknown LND" })?;
        let rest = s.get(name.len()..).unwrap_or_default();
        if rest.is_empty() {
            return Ok(Net::new(t, 0));
        }
        if t == lnd_type::LOLND {
            return Err(WireError::BadString { what: WHAT, detail: "lo takes no net number" });
        }
        if !rest.bytes().all(|b| b.is_ascii_digit()) {
            return Err(WireError::BadString { what: WHAT, detail: "bad net number" });
        }
        let num: u16 =
            rest.parse().map_err(|_| WireError::BadString { what: WHAT, detail: "net number" })?;
        Ok(Net::new(t, num))
    }
}

/// A 64-bit LNet NID (`lnet_nid_t`), as carried by socklnd V1-V3 and the nid4 LNet header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Nid(pub u64);

impl Nid {
    /// `LNET_NID_ANY`.
    pub const ANY: Nid = Nid(u64::MAX);
    /// `0@lo`.
    pub const LO: Nid = Nid((Net::LO.0 as u64) << 32);

    /// The NID of `addr` on `net`.
    #[must_use]
    pub const fn new(net: Net, addr: u32) -> Nid {
        Nid(((net.0 as u64) << 32) | addr as u64)
    }
    /// An IPv4 address on `tcp` (net 0).
    #[must_use]
    pub const fn tcp(ip: [u8; 4]) -> Nid {
        Nid::new(Net::TCP, u32::from_be_bytes(ip))
    }
    /// The network half.
    #[must_use]
    pub const fn net(self) -> Net {
        Net((self.0 >> 32) as u32)
    }
    /// The address half (an IPv4 address in host order for IP networks).
    #[must_use]
    pub const fn addr(self) -> u32 {
        (self.0 & 0xffff_ffff) as u32
    }
    /// The IPv4 address, for IP-addressed LNDs.
    #[must_use]
    pub fn ipv4(self) -> Option<std::net::Ipv4Addr> {
        match lnd_by_type(self.net().lnd()) {
            Some((_, AddrForm::Ip)) => Some(std::net::Ipv4Addr::from(self.addr())),
            _ => None,
        }
    }
    /// Whether this is `LNET_NID_ANY`.
    #[must_use]
    pub const fn is_any(self) -> bool {
        self.0 == u64::MAX
    }
}

impl fmt::Display for Nid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_any() {
            return write!(f, "<?>");
        }
        match lnd_by_type(self.net().lnd()) {
            Some((_, AddrForm::Ip)) => {
                let [a, b, c, d] = self.addr().to_be_bytes();
                write!(f, "{a}.{b}.{c}.{d}@{}", self.net())
            }
            _ => write!(f, "{}@{}", self.addr(), self.net()),
        }
    }
}

impl FromStr for Nid {
    type Err = WireError;
    /// Parses `ADDR@NET`; an empty address is not allowed except that `@lo`-less forms like
    /// `0@lo` are written in full.
    fn from_str(s: &str) -> Result<Nid> {
        const WHAT: &str = "nid";
        let s = s.trim();
        if s == "<?>" {
            return Ok(Nid::ANY);
        }
        let (addr, net) =
            s.rsplit_once('@').ok_or(WireError::BadString { what: WHAT, detail: "missing @" })?;
        let net: Net = net.parse()?;
        let form = lnd_by_type(net.lnd()).map(|(_, f)| f).unwrap_or(AddrForm::Num);
        let a = match form {
            AddrForm::Ip => {
                let ip: std::net::Ipv4Addr = addr
                    .parse()
                    .map_err(|_| WireError::BadString { what: WHAT, detail: "bad IPv4 address" })?;
                u32::from(ip)
            }
            AddrForm::Num => {
                if addr.is_empty() || !addr.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(WireError::BadString { what: WHAT, detail: "bad numeric address" });
                }
                addr.parse().map_err(|_| WireError::BadString { what: WHAT, detail: "address" })?
            }
        };
        if net.lnd() == lnd_type::LOLND && a != 0 {
            return Err(WireError::BadString { what: WHAT, detail: "lo address must be 0" });
        }
        Ok(Nid::new(net, a))
    }
}

impl From<Nid> for crate::wire::U64 {
    fn from(n: Nid) -> Self {
        crate::wire::U64::new(n.0)
    }
}

/// `struct lnet_nid` (20 bytes): the large-address NID of socklnd V4 and acceptor version 2.
/// Its address words are big-endian, unlike everything else on the wire.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct LnetNid {
    /// Address bytes minus 4 (0 for IPv4, 12 for IPv6).
    pub nid_size: u8,
    /// LND type.
    pub nid_type: u8,
    /// Network number, big-endian.
    pub nid_num: zerocopy::big_endian::U16,
    /// Address words, big-endian.
    pub nid_addr: [zerocopy::big_endian::U32; 4],
}

impl Wire for LnetNid {
    const NAME: &'static str = "lnet_nid";
    fn check(&self) -> Result<()> {
        if self.nid_size > 12 {
            return Err(WireError::BadValue { what: Self::NAME, got: u64::from(self.nid_size) });
        }
        Ok(())
    }
}

impl LnetNid {
    /// The large form of a nid4.
    #[must_use]
    pub fn from_nid4(n: Nid) -> LnetNid {
        let net = n.net();
        LnetNid {
            nid_size: 0,
            nid_type: u8::try_from(net.lnd()).unwrap_or(u8::MAX),
            nid_num: net.num().into(),
            nid_addr: [n.addr().into(), 0.into(), 0.into(), 0.into()],
        }
    }
    /// The nid4 form, when the address fits in 32 bits.
    pub fn to_nid4(&self) -> Result<Nid> {
        if self.nid_size != 0 {
            return Err(WireError::BadValue {
                what: "lnet_nid (not a nid4)",
                got: self.nid_size.into(),
            });
        }
        let net = Net::new(u32::from(self.nid_type), self.nid_num.get());
        Ok(Nid::new(net, self.nid_addr[0].get()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_forms() {
        let cases = [
            ("192.168.1.10@tcp", 0x0002_0000_c0a8_010a_u64),
            ("10.0.0.1@tcp1", 0x0002_0001_0a00_0001),
            ("10.0.0.1@o2ib", 0x0005_0000_0a00_0001),
            ("10.0.0.1@o2ib3", 0x0005_0003_0a00_0001),
            ("172.31.0.5@efa", 0x0012_0000_ac1f_0005),
            ("0@lo", 0x0009_0000_0000_0000),
            ("17@gni", 0x000d_0000_0000_0011),
        ];
        for (s, v) in cases {
            let n: Nid = s.parse().unwrap();
            assert_eq!(n.0, v, "{s}");
            assert_eq!(n.to_string(), s);
        }
        assert_eq!(Nid::tcp([192, 168, 1, 10]).0.to_le_bytes(), [0x0a, 1, 0xa8, 0xc0, 0, 0, 2, 0]);
        assert_eq!(Nid::ANY.to_string(), "<?>");
        assert_eq!("tcp1".parse::<Net>().unwrap(), Net::new(lnd_type::SOCKLND, 1));
        assert_eq!(Net::new(lnd_type::SOCKLND, 1).to_string(), "tcp1");
        assert_eq!("efa".parse::<Net>().unwrap().to_string(), "efa");
    }

    #[test]
    fn bad_text() {
        for s in [
            "",
            "@tcp",
            "1.2.3@tcp",
            "1.2.3.4",
            "1.2.3.4@",
            "1.2.3.4@xyz",
            "1@lo",
            "0@lo1",
            "1.2.3.4@tcpx",
            "x@gni",
            "300.1.1.1@tcp",
            "1.2.3.4@tcp99999",
        ] {
            assert!(s.parse::<Nid>().is_err(), "{s:?} should not parse");
        }
    }

    #[test]
    fn large_nid_round_trip() {
        let n: Nid = "192.168.1.10@tcp1".parse().unwrap();
        let l = LnetNid::from_nid4(n);
        assert_eq!(
            l.as_bytes(),
            &[0, 2, 0, 1, 192, 168, 1, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(l.to_nid4().unwrap(), n);
    }
}
