//! The MGC of a node whose MGS runs elsewhere: it registers the node's MDTs and OSTs with
//! MGS_TARGET_REG (retrying until the MGS answers), then follows the file system's
//! configuration so MDTs learn which OSTs exist and where.
//!
//! Lustre's targets read their own configuration logs and keep a config lock whose blocking
//! callback tells them to re-read. A server node here does not serve the LDLM callback
//! portal, so the MGC re-reads the `<fsname>-client` log (which names every target and its
//! NIDs) on a short period instead; a registration changes the log within one period.

use crate::shard::Shard;
use proto::cfg::ClientLog;
use proto::connect::ObdConnectData;
use proto::nid::Nid;
use proto::opcode::Opcode;
use proto::portal;
use ptlrpc::{Import, ImportConfig};
use std::rc::Rc;
use std::time::Duration;

/// How often the configuration is re-read.
pub const POLL: Duration = Duration::from_secs(2);

/// The targets of the file system other nodes serve, as the MGS last described them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cluster {
    /// OSTs: index and NIDs.
    pub osts: Vec<(u32, Vec<Nid>)>,
    /// MDTs: index and NIDs.
    pub mdts: Vec<(u32, Vec<Nid>)>,
}

impl Cluster {
    fn from_log(log: &ClientLog) -> Cluster {
        Cluster {
            osts: log.osts.iter().map(|(i, _, n)| (*i, n.clone())).collect(),
            mdts: log.mdts.iter().map(|(i, _, n)| (*i, n.clone())).collect(),
        }
    }
}

fn mgc_import(sh: &Rc<Shard>, mgs: Nid) -> Rc<Import> {
    let uuid = format!("{}-mgc-{:x}", sh.cfg.fsname, sh.salt & 0xffff_ffff);
    let mut c = ImportConfig::new(
        lnd::ProcessId::lustre(mgs),
        portal::MGS_REQUEST,
        portal::MGC_REPLY,
        "MGS",
        &uuid,
        Opcode::MgsConnect,
    );
    c.conn_cookie = sh.salt | 1;
    c.timeout = Duration::from_secs(10);
    c.reply_size = 64 << 10;
    Import::new(sh.lnet.clone(), c, sh.xids.clone())
}

async fn connect(imp: &Import) -> Result<(), String> {
    let mut d: ObdConnectData = proto::wire::FromZeros::new_zeroed();
    d.ocd_connect_flags = proto::connect::MGC_CONNECT_FLAGS.into();
    d.ocd_connect_flags2 = proto::connect::MGC_CONNECT_FLAGS2.into();
    d.ocd_version = crate::mgs::db::MGS_LUSTRE_VERSION.into();
    imp.connect(d).await.map(|_| ()).map_err(|e| e.to_string())
}

async fn register(sh: &Rc<Shard>, imp: &Import) -> Result<(), String> {
    for t in &sh.cfg.targets {
        let Some(mti) =
            crate::mgs::service::target_info(&sh.cfg.fsname, t.kind, t.index, &sh.cfg.nids)?
        else {
            continue;
        };
        let b = proto::build::MsgBuilder::request(Opcode::MgsTargetReg)
            .and_then(|b| b.wire("MGS_TARGET_INFO", &mti))
            .map_err(|e| e.to_string())?;
        let rep = imp.rpc(b, None).await.map_err(|e| e.to_string())?;
        if rep.status() < 0 {
            return Err(format!(
                "the MGS refused {}{:04x}: errno {}",
                t.kind.as_str(),
                t.index,
                rep.status()
            ));
        }
        log::info!("MGC: registered {}-{}{:04x}", sh.cfg.fsname, t.kind.as_str(), t.index);
    }
    Ok(())
}

/// Publishes a new view of the cluster to every shard.
async fn publish(sh: &Rc<Shard>, c: Cluster) {
    for s in 0..sh.n {
        let c = c.clone();
        let _ = sh
            .mesh
            .call(sh, s, move |x: Rc<Shard>| async move {
                *x.cluster.borrow_mut() = c;
            })
            .await;
    }
}

/// Runs the MGC until the node stops (shard 0 of a node with a remote MGS).
pub async fn run(sh: Rc<Shard>) {
    let mut registered = false;
    let mut next = 0usize;
    let mut last: Option<Cluster> = None;
    let mut backoff = Duration::from_millis(200);
    while !sh.lnet.is_stopping() {
        let nids = &sh.cfg.mgs_nids;
        let Some(&mgs) = nids.get(next % nids.len().max(1)) else { return };
        let imp = mgc_import(&sh, mgs);
        let r: Result<(), String> = async {
            connect(&imp).await?;
            if !registered {
                register(&sh, &imp).await?;
                registered = true;
            }
            loop {
                let recs =
                    ptlrpc::llog::read_config_log(&imp, &format!("{}-client", sh.cfg.fsname))
                        .await
                        .map_err(|e| format!("config log: {e}"))?;
                let log = ClientLog::from_records(&recs).map_err(|e| e.to_string())?;
                let c = Cluster::from_log(&log);
                if last.as_ref() != Some(&c) {
                    log::info!(
                        "MGC: {} MDT(s), OSTs {:?}",
                        c.mdts.len(),
                        c.osts.iter().map(|o| o.0).collect::<Vec<_>>()
                    );
                    publish(&sh, c.clone()).await;
                    last = Some(c);
                }
                if sh.lnet.is_stopping() {
                    return Ok(());
                }
                glommio::timer::sleep(POLL).await;
            }
        }
        .await;
        if let Err(e) = r {
            if !sh.lnet.is_stopping() {
                crate::ratelog::warn("mgc", &format!("MGC: MGS at {mgs}: {e}"));
            }
            next += 1;
            glommio::timer::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        } else {
            backoff = Duration::from_millis(200);
        }
    }
}
