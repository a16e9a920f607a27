//! Property tests: for arbitrary values, encode then decode gives the value back.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step fails the test

use proptest::prelude::*;
use proto::cfg::LustreCfg;
use proto::dir::{DirEntry, build_page, luda, parse_page};
use proto::fid::{LuFid, LustreHandle, OstId};
use proto::ldlm::{LdlmExtent, LdlmInodebits, LdlmLockDesc, LdlmRequest, Policy, lock_type, mode};
use proto::llog::{LlogRecIter, PlainLog, rec_type};
use proto::lnet::{
    Hello, LnetAck, LnetBody, LnetGet, LnetHandleWire, LnetHdrNid4, LnetPut, LnetReply, PingInfo,
    ni_status,
};
use proto::lov::{
    LovComp, LovCompMd, LovCompMdEntryV1, LovCompMdV1, LovForm, LovMd, LovOstDataV1, magic, pattern,
};
use proto::msg::{self, LustreMsg, MsgHdr};
use proto::nid::{Net, Nid, lnd_type};
use proto::wire::{IntoBytes, Wire};

fn nid() -> impl Strategy<Value = Nid> {
    (
        prop_oneof![
            Just(lnd_type::SOCKLND),
            Just(lnd_type::O2IBLND),
            Just(lnd_type::EFALND),
            Just(lnd_type::GNILND)
        ],
        0u16..4,
        any::<u32>(),
    )
        .prop_map(|(t, n, a)| Nid::new(Net::new(t, n), a))
}

fn fid() -> impl Strategy<Value = LuFid> {
    (any::<u64>(), any::<u32>(), any::<u32>()).prop_map(|(s, o, v)| LuFid::new(s, o, v))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn nid_text(n in nid()) {
        prop_assert_eq!(n.to_string().parse::<Nid>().unwrap(), n);
    }

    #[test]
    fn fid_text(f in fid()) {
        prop_assert_eq!(f.to_string().parse::<LuFid>().unwrap(), f);
    }

    #[test]
    fn hello(v in 1u32..=4, src in nid(), dst in nid(), inc in any::<u64>(), dinc in any::<u64>(), ctype in -1i32..=3) {
        prop_assume!(!src.is_any());
        let h = Hello {
            version: v,
            src_nid: src,
            dst_nid: if v == 1 { Nid::ANY } else { dst },
            src_pid: 12345,
            dst_pid: if v == 1 { 0 } else { 12345 },
            src_incarnation: inc,
            dst_incarnation: if v == 1 { 0 } else { dinc },
            ctype,
            nips: 0,
        };
        let mut b = Vec::new();
        h.encode(&mut b).unwrap();
        prop_assert_eq!(Hello::decode(&b).unwrap(), (h, b.len()));
    }

    #[test]
    fn lnet_header(d in nid(), s in nid(), c0 in any::<u64>(), c1 in any::<u64>(), mb in any::<u64>(), p in 0u32..64, off in any::<u32>(), len in 0u32..=1_048_576, which in 0..4) {
        let wmd = LnetHandleWire::new(c0, c1);
        let body = match which {
            0 => LnetBody::Put(LnetPut { ack_wmd: wmd, match_bits: mb.into(), hdr_data: 0.into(), ptl_index: p.into(), offset: off.into() }),
            1 => LnetBody::Get(LnetGet { return_wmd: wmd, match_bits: mb.into(), ptl_index: p.into(), src_offset: off.into(), sink_length: len.into() }),
            2 => LnetBody::Ack(LnetAck { dst_wmd: wmd, match_bits: mb.into(), mlength: len.into() }),
            _ => LnetBody::Reply(LnetReply { dst_wmd: wmd }),
        };
        let plen = if matches!(body, LnetBody::Put(_) | LnetBody::Reply(_)) { len } else { 0 };
        let h = LnetHdrNid4::new((d, 12345), (s, 12345), plen, &body);
        let back = LnetHdrNid4::decode(h.as_bytes()).unwrap();
        prop_assert_eq!(back.body().unwrap(), body);
        prop_assert_eq!(back.dest(), d);
        prop_assert_eq!(back.src(), s);
    }

    #[test]
    fn ping_info(nids in proptest::collection::vec(nid(), 0..16)) {
        let p = PingInfo::for_nids(12345, &nids);
        let mut b = Vec::new();
        p.encode(&mut b);
        let d = PingInfo::decode(&b).unwrap();
        prop_assert_eq!(d.nis.len(), nids.len() + 1);
        prop_assert!(d.nis.iter().all(|n| n.1 == ni_status::UP));
        prop_assert_eq!(d, p);
    }

    #[test]
    fn lustre_msg(bufs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 1..12), flags in any::<u32>(), rep in any::<u32>()) {
        let refs: Vec<&[u8]> = bufs.iter().map(Vec::as_slice).collect();
        let m = msg::to_vec(MsgHdr { flags, repsize: rep, cksum: 0 }, &refs).unwrap();
        prop_assert_eq!(m.len() % 8, 0);
        let d = LustreMsg::decode(&m).unwrap();
        prop_assert_eq!(d.bufcount(), bufs.len());
        for (i, b) in bufs.iter().enumerate() {
            prop_assert_eq!(d.buf(i).unwrap(), b.as_slice());
        }
        prop_assert_eq!(d.header().lm_flags.get(), flags);
    }

    #[test]
    fn ldlm_request(f in fid(), m in prop_oneof![Just(mode::EX), Just(mode::PW), Just(mode::PR), Just(mode::CR), Just(mode::CW)], start in any::<u64>(), len in any::<u64>(), handles in proptest::collection::vec(any::<u64>(), 0..40), ibits in any::<u64>(), extent in any::<bool>()) {
        let (t, p) = if extent {
            (lock_type::EXTENT, Policy::Extent(LdlmExtent { start: start.into(), end: start.saturating_add(len).into(), gid: 0.into() }))
        } else {
            (lock_type::IBITS, Policy::Ibits(LdlmInodebits { bits: ibits.into(), ..Default::default() }))
        };
        let r = LdlmRequest { lock_flags: 0x1000, lock_desc: LdlmLockDesc::new(t, f.res_id(), m, &p), handles: handles.into_iter().map(LustreHandle::new).collect() };
        let b = r.to_vec();
        prop_assert!(b.len() >= 104);
        let d = LdlmRequest::decode(&b).unwrap();
        prop_assert_eq!(d.lock_desc.policy().unwrap(), p);
        prop_assert_eq!(d, r);
    }

    #[test]
    fn layouts(f in fid(), count in 1u16..20, ss in 1u32..64, v3 in any::<bool>(), pool in "[a-z]{0,15}") {
        let l = LovMd {
            magic: if v3 { magic::V3 } else { magic::V1 },
            pattern: pattern::RAID0,
            oi: OstId::from_fid(f),
            stripe_size: ss * 65536,
            stripe_count: count,
            layout_gen: 3,
            pool: if v3 { pool } else { String::new() },
            objects: (0..count).map(|i| LovOstDataV1 { l_ost_oi: OstId::from_fid(LuFid::new(0x1_0000_0000, u32::from(i) + 1, 0)), l_ost_gen: 0.into(), l_ost_idx: u32::from(i).into() }).collect(),
        };
        let b = l.to_vec().unwrap();
        prop_assert_eq!(LovMd::decode(&b, LovForm::Stored).unwrap(), l.clone());
        let c = LovCompMd {
            header: LovCompMdV1::default(),
            comps: vec![LovComp { entry: LovCompMdEntryV1 { lcme_id: 1.into(), lcme_extent: [0.into(), u64::MAX.into()], ..Default::default() }, md: Some(l) }],
        };
        let cb = c.encode().unwrap();
        let d = LovCompMd::decode(&cb, LovForm::Stored).unwrap();
        prop_assert_eq!(&d.comps[0].md, &c.comps[0].md);
    }

    #[test]
    fn lustre_cfg(strs in proptest::collection::vec("[ -~]{0,60}", 1..7), cmd in any::<u32>(), n in nid()) {
        let refs: Vec<&str> = strs.iter().map(String::as_str).collect();
        let mut c = LustreCfg::new(cmd, &refs);
        c.nid = n;
        let b = c.to_vec().unwrap();
        prop_assert_eq!(b.len() % 8, 0);
        prop_assert_eq!(LustreCfg::decode(&b).unwrap(), c);
    }

    #[test]
    fn llog(bodies in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..3000), 1..30)) {
        let mut log = PlainLog::new("MGS", 1).unwrap();
        for b in &bodies {
            log.append(rec_type::OBD_CFG, b).unwrap();
        }
        let mut got = Vec::new();
        let mut off = 8192u64;
        while let Some((chunk, _, next)) = log.chunk_at(off) {
            for r in LlogRecIter::new(&chunk) {
                let r = r.unwrap();
                if r.hdr.lrh_type.get() == rec_type::OBD_CFG {
                    prop_assert!(log.header.is_live(r.hdr.lrh_index.get()));
                    got.push(r.body[..r.body.len()].to_vec());
                }
            }
            off = next;
        }
        prop_assert_eq!(got.len(), bodies.len());
        for (g, b) in got.iter().zip(&bodies) {
            prop_assert_eq!(&g[..b.len()], b.as_slice());
        }
    }

    #[test]
    fn dir_pages(names in proptest::collection::btree_set("[a-zA-Z0-9._-]{1,60}", 1..300)) {
        let entries: Vec<DirEntry> = names.iter().enumerate().map(|(i, n)| DirEntry {
            fid: LuFid::new(0x2_0000_0400, i as u32 + 1, 0),
            hash: (i as u64 + 1) << 8,
            name: n.as_bytes().to_vec(),
            mode_type: Some(0o100000),
        }).collect();
        let mut read = Vec::new();
        let mut start = 0;
        while start < entries.len() {
            let (page, n) = build_page(&entries[start..], None, luda::FID | luda::TYPE | luda::BIT64HASH).unwrap();
            prop_assert!(n > 0);
            let (hdr, es) = parse_page(&page).unwrap();
            prop_assert_eq!(hdr.ldp_hash_start.get(), entries[start].hash);
            read.extend(es);
            start += n;
        }
        prop_assert_eq!(read, entries);
    }

    #[test]
    fn fixed_structs_are_byte_exact(bytes in proptest::collection::vec(any::<u8>(), 216)) {
        let b = proto::mdt::MdtBody::read(&bytes).unwrap();
        prop_assert_eq!(b.to_vec(), bytes[..216].to_vec());
        let o = proto::ost::Obdo::read(&bytes).unwrap();
        prop_assert_eq!(o.to_vec(), bytes[..208].to_vec());
        let c = proto::connect::ObdConnectData::decode_any(&bytes[..192]).unwrap();
        prop_assert_eq!(c.to_vec(), bytes[..192].to_vec());
    }
}
