//! Memory descriptors (MDs), match entries (MEs), portals and events: the LNet core's data
//! structures, one set per shard (`lib-md.c`, `lib-me.c`, `lib-ptl.c` in Lustre).
//!
//! An MD owns its memory: a list of segments of any type that can lend out its bytes
//! ([`MdSegment`]). Incoming payload is read from the socket straight into that memory and
//! outgoing payload is written from it; the segments come back to the owner in the event that
//! reports the MD unlinked.

use std::any::Any;
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use proto::Nid;

use crate::error::{LnetError, Result};
use crate::rt::Notify;

/// `LNET_MAX_PORTALS`: portal indices are below this.
pub const MAX_PORTALS: u32 = 64;

/// A node process: NID and PID (`struct lnet_process_id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProcessId {
    /// The NID.
    pub nid: Nid,
    /// The PID (12345 for kernel nodes; `port | USERFLAG` for unprivileged userspace peers).
    pub pid: u32,
}

impl ProcessId {
    /// `LNET_PID_ANY`.
    pub const PID_ANY: u32 = u32::MAX;
    /// Any process (`LNET_NID_ANY`, `LNET_PID_ANY`): an ME that matches every sender.
    pub const ANY: ProcessId = ProcessId { nid: Nid::ANY, pid: u32::MAX };

    /// A process on a kernel-style node (PID 12345).
    #[must_use]
    pub fn lustre(nid: Nid) -> ProcessId {
        ProcessId { nid, pid: proto::lnet::PID_LUSTRE }
    }
}

impl std::fmt::Display for ProcessId {
    /// Lustre's `libcfs_id2str` form: `12345-192.168.1.10@tcp`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.pid == u32::MAX {
            write!(f, "LNET_PID_ANY-{}", self.nid)
        } else if self.pid & proto::lnet::PID_USERFLAG != 0 {
            write!(f, "U{}-{}", self.pid & !proto::lnet::PID_USERFLAG, self.nid)
        } else {
            write!(f, "{}-{}", self.pid, self.nid)
        }
    }
}

/// Memory an MD can own: anything that lends out a byte slice. The slice's address and length
/// must not change while the segment is owned by an MD (true of `Vec<u8>`, `Box<[u8]>`, arrays
/// and aligned DMA buffers). `into_any` gives the owner its concrete type back on unlink.
pub trait MdSegment: AsRef<[u8]> + AsMut<[u8]> + 'static {
    /// The segment as `Any`, for downcasting back to its type.
    fn into_any(self: Box<Self>) -> Box<dyn Any>;
}

impl<T: AsRef<[u8]> + AsMut<[u8]> + 'static> MdSegment for T {
    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}

/// The segments of an unlinked MD, returned to their owner.
#[derive(Default)]
pub struct MdBuffers(pub Vec<Box<dyn MdSegment>>);

impl std::fmt::Debug for MdBuffers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let lens: Vec<usize> = self.0.iter().map(|s| (**s).as_ref().len()).collect();
        f.debug_tuple("MdBuffers").field(&lens).finish()
    }
}

impl MdBuffers {
    /// The segments downcast to `T`; segments of another type are dropped.
    #[must_use]
    pub fn into_typed<T: 'static>(self) -> Vec<T> {
        self.0.into_iter().filter_map(|s| s.into_any().downcast::<T>().ok()).map(|b| *b).collect()
    }

    /// The single `Vec<u8>` segment, when the MD was made from one.
    #[must_use]
    pub fn into_vec(self) -> Option<Vec<u8>> {
        self.into_typed::<Vec<u8>>().into_iter().next()
    }
}

/// MD options (`LNET_MD_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MdOptions {
    /// Incoming PUTs may match (`LNET_MD_OP_PUT`).
    pub op_put: bool,
    /// Incoming GETs may match (`LNET_MD_OP_GET`).
    pub op_get: bool,
    /// Accept messages larger than the space left, keeping what fits (`LNET_MD_TRUNCATE`).
    pub truncate: bool,
    /// Use the offset the sender names instead of the MD's own running offset
    /// (`LNET_MD_MANAGE_REMOTE`).
    pub manage_remote: bool,
    /// Never send ACKs for PUTs into this MD (`LNET_MD_ACK_DISABLE`).
    pub ack_disable: bool,
    /// Each message takes exactly this much space; the MD is exhausted when less remains
    /// (`LNET_MD_MAX_SIZE`, used for request buffers holding many requests).
    pub max_size: Option<u32>,
    /// Operations before the MD is exhausted; `None` = `LNET_MD_THRESH_INF`.
    pub threshold: Option<u32>,
    /// Unlink the MD (and its ME) when exhausted (`LNET_UNLINK`); otherwise it stays,
    /// inactive, until unlinked explicitly (`LNET_RETAIN`).
    pub auto_unlink: bool,
}

impl Default for MdOptions {
    fn default() -> Self {
        MdOptions {
            op_put: false,
            op_get: false,
            truncate: false,
            manage_remote: false,
            ack_disable: false,
            max_size: None,
            threshold: Some(1),
            auto_unlink: true,
        }
    }
}

/// Where a new ME goes in its portal's list (`LNET_INS_BEFORE` / `LNET_INS_AFTER`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InsertPos {
    /// Ahead of every existing ME.
    Before,
    /// Behind every existing ME.
    #[default]
    After,
}

/// A match entry: which incoming messages on a portal an MD accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatchEntry {
    /// Sender filter ([`ProcessId::ANY`] for everyone; NID and PID may be wildcards alone).
    pub source: ProcessId,
    /// Match bits.
    pub match_bits: u64,
    /// Bits ignored when matching.
    pub ignore_bits: u64,
    /// List position.
    pub pos: InsertPos,
}

impl MatchEntry {
    /// Matches exactly `match_bits` from anyone, appended.
    #[must_use]
    pub fn bits(match_bits: u64) -> MatchEntry {
        MatchEntry { source: ProcessId::ANY, match_bits, ignore_bits: 0, pos: InsertPos::After }
    }
    /// Matches everything from anyone, appended (request buffers).
    #[must_use]
    pub fn any() -> MatchEntry {
        MatchEntry {
            source: ProcessId::ANY,
            match_bits: 0,
            ignore_bits: u64::MAX,
            pos: InsertPos::After,
        }
    }
}

/// A handle on an MD of some shard (`lnet_handle_md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MdHandle {
    pub(crate) shard: u16,
    pub(crate) index: u32,
    pub(crate) generation: u32,
}

impl MdHandle {
    /// The shard that owns the MD.
    #[must_use]
    pub fn shard(&self) -> usize {
        usize::from(self.shard)
    }

    /// The object cookie carried on the wire: generation, index and owning shard. The shard in
    /// the low byte lets any shard route a REPLY or ACK to the MD's owner.
    pub(crate) fn wire_cookie(&self) -> u64 {
        (u64::from(self.generation) << 32) | (u64::from(self.index) << 8) | u64::from(self.shard)
    }

    pub(crate) fn from_wire_cookie(c: u64) -> MdHandle {
        MdHandle {
            shard: (c & 0xff) as u16,
            index: ((c >> 8) & 0xff_ffff) as u32,
            generation: (c >> 32) as u32,
        }
    }
}

/// What happened to an MD (`enum lnet_event_kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// A PUT landed in the MD.
    Put,
    /// A GET read from the MD (reported once its REPLY is sent).
    Get,
    /// The REPLY to our GET landed in the MD.
    Reply,
    /// The ACK to our PUT arrived.
    Ack,
    /// Our PUT or GET from this MD left (after its ZC-ACK when one was requested).
    Send,
    /// The MD was unlinked explicitly with nothing in flight.
    Unlink,
}

/// An event on an MD, delivered to the MD's [`EventQueue`].
#[derive(Debug)]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// The MD.
    pub md: MdHandle,
    /// The value given when the MD was created (ptlrpc's request/bulk pointer).
    pub user: u64,
    /// Who started the operation: the sender of a PUT/GET we received, or ourselves.
    pub initiator: ProcessId,
    /// The other end of our PUT/GET (for Send, Ack, Reply).
    pub target: ProcessId,
    /// Portal index.
    pub portal: u32,
    /// Match bits.
    pub match_bits: u64,
    /// Offset in the MD where the data went or came from.
    pub offset: u32,
    /// Bytes the sender offered (requested length).
    pub rlength: u32,
    /// Bytes actually moved (manipulated length).
    pub mlength: u32,
    /// `hdr_data` of a PUT.
    pub hdr_data: u64,
    /// Success, or why the operation failed.
    pub status: std::result::Result<(), LnetError>,
    /// This is the MD's last event: it is unlinked and `buffers` holds its memory.
    pub unlinked: bool,
    /// The MD's segments, when `unlinked`.
    pub buffers: Option<MdBuffers>,
}

#[derive(Debug)]
struct EqInner {
    q: VecDeque<Event>,
    capacity: usize,
    ready: Notify,
    space: Notify,
}

/// A bounded event queue on one shard. Receivers wait for space before matching a message to
/// an MD whose queue is full; completions of operations already in flight and unlink events
/// are always queued, so the queue holds at most `capacity` + in-flight operations + MDs.
#[derive(Debug, Clone)]
pub struct EventQueue(Rc<RefCell<EqInner>>);

impl EventQueue {
    pub(crate) fn new(capacity: usize) -> EventQueue {
        EventQueue(Rc::new(RefCell::new(EqInner {
            q: VecDeque::new(),
            capacity,
            ready: Notify::default(),
            space: Notify::default(),
        })))
    }

    /// The next event, waiting for one.
    pub async fn next(&self) -> Event {
        loop {
            let l = self.0.borrow().ready.listen();
            if let Some(e) = self.try_next() {
                return e;
            }
            l.await;
        }
    }

    /// The next event, if one is queued.
    #[must_use]
    pub fn try_next(&self) -> Option<Event> {
        let mut i = self.0.borrow_mut();
        let e = i.q.pop_front();
        if e.is_some() && i.q.len() < i.capacity {
            i.space.notify();
        }
        e
    }

    /// Events queued.
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.borrow().q.len()
    }

    /// Whether no event is queued.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn push(&self, e: Event) {
        let i = &mut *self.0.borrow_mut();
        i.q.push_back(e);
        i.ready.notify();
    }

    pub(crate) async fn wait_space(&self) {
        loop {
            let l = {
                let i = self.0.borrow();
                if i.q.len() < i.capacity {
                    return;
                }
                i.space.listen()
            };
            l.await;
        }
    }
}

/// Who hears about an MD's events.
#[derive(Debug, Clone)]
pub(crate) enum Sink {
    /// The upper layer's queue.
    Eq(EventQueue),
    /// LNet itself (ping target, discovery ping buffer).
    Internal(Internal),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Internal {
    /// The ping target on portal 0 (answers GETs, swallows PUSHes).
    PingTarget,
    /// The sink of our discovery ping to the peer at this home-shard peer-table key.
    Discovery(ProcessId),
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct MeInfo {
    pub(crate) portal: u32,
    pub(crate) entry: MatchEntry,
    key: i64,
}

pub(crate) struct Md {
    segs: Vec<Box<dyn MdSegment>>,
    /// Stable raw views of the segments, taken once at creation.
    iov: Vec<(*mut u8, usize)>,
    pub(crate) length: usize,
    pub(crate) opts: MdOptions,
    threshold: Option<u32>,
    offset: usize,
    pub(crate) user: u64,
    pub(crate) sink: Sink,
    /// Messages in flight that use this MD's memory or will report on it.
    pending: u32,
    unlinking: bool,
    pub(crate) me: Option<MeInfo>,
}

impl Md {
    fn exhausted(&self) -> bool {
        self.threshold == Some(0)
            || self.opts.max_size.is_some_and(|m| self.offset + m as usize > self.length)
    }

    /// Raw (pointer, length) pieces covering `offset..offset+len` of the MD.
    pub(crate) fn region(&self, offset: usize, len: usize) -> Vec<(*mut u8, usize)> {
        let mut out = Vec::with_capacity(1);
        let mut skip = offset;
        let mut want = len;
        for &(p, l) in &self.iov {
            if want == 0 {
                break;
            }
            if skip >= l {
                skip -= l;
                continue;
            }
            let n = (l - skip).min(want);
            // SAFETY: `skip < l`, so the pointer stays inside this segment.
            out.push((unsafe { p.add(skip) }, n));
            skip = 0;
            want -= n;
        }
        out
    }
}

struct Slot {
    generation: u32,
    md: Option<Md>,
}

/// What a matched message does to its MD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Matched {
    pub(crate) index: u32,
    pub(crate) handle: MdHandle,
    pub(crate) offset: usize,
    pub(crate) mlength: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MatchResult {
    Ok(Matched),
    None,
    /// An MD matched but the message does not fit and it may not truncate.
    Drop,
}

/// The incoming message being matched (`struct lnet_match_info`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct MatchInfo {
    pub(crate) source: ProcessId,
    pub(crate) put: bool,
    pub(crate) portal: u32,
    pub(crate) match_bits: u64,
    pub(crate) roffset: usize,
    pub(crate) rlength: usize,
}

#[derive(Default)]
struct Portal {
    lazy: bool,
    /// MEs with no ignore bits, by match bits: the common reply/bulk case, found in O(1).
    exact: HashMap<u64, VecDeque<(i64, u32)>>,
    /// Every other ME, in list order.
    wild: VecDeque<(i64, u32)>,
    /// Signalled when an ME is attached (wakes PUTs waiting on a lazy portal).
    attached: Notify,
}

/// One shard's MDs and portals.
pub(crate) struct MdTable {
    shard: u16,
    slots: Vec<Slot>,
    free: Vec<u32>,
    live: usize,
    max: usize,
    portals: Vec<Portal>,
    next_front: i64,
    next_back: i64,
}

impl std::fmt::Debug for MdTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MdTable").field("shard", &self.shard).field("live", &self.live).finish()
    }
}

impl MdTable {
    pub(crate) fn new(shard: usize, max: usize) -> MdTable {
        MdTable {
            shard: u16::try_from(shard).unwrap_or(u16::MAX),
            slots: Vec::new(),
            free: Vec::new(),
            live: 0,
            max,
            portals: (0..MAX_PORTALS).map(|_| Portal::default()).collect(),
            next_front: -1,
            next_back: 0,
        }
    }

    pub(crate) fn live(&self) -> usize {
        self.live
    }

    pub(crate) fn set_lazy(&mut self, portal: u32, lazy: bool) {
        if let Some(p) = self.portals.get_mut(portal as usize) {
            p.lazy = lazy;
            p.attached.notify();
        }
    }

    pub(crate) fn is_lazy(&self, portal: u32) -> bool {
        self.portals.get(portal as usize).is_some_and(|p| p.lazy)
    }

    pub(crate) fn attach_notify(&self, portal: u32) -> Option<crate::rt::Listen> {
        self.portals.get(portal as usize).map(|p| p.attached.listen())
    }

    /// Creates an MD, optionally attached to a portal with an ME.
    pub(crate) fn insert(
        &mut self,
        mut segs: Vec<Box<dyn MdSegment>>,
        opts: MdOptions,
        user: u64,
        sink: Sink,
        me: Option<(u32, MatchEntry)>,
    ) -> Result<MdHandle> {
        if self.live >= self.max {
            return Err(LnetError::Full("MD table"));
        }
        if let Some((portal, _)) = me
            && portal >= MAX_PORTALS
        {
            return Err(LnetError::Invalid("portal index"));
        }
        if opts.threshold == Some(0) {
            return Err(LnetError::Invalid("threshold 0"));
        }
        let iov: Vec<(*mut u8, usize)> = segs
            .iter_mut()
            .map(|s| {
                let b = (**s).as_mut();
                (b.as_mut_ptr(), b.len())
            })
            .collect();
        let length: usize = iov.iter().map(|(_, l)| l).sum();
        if length > u32::MAX as usize {
            return Err(LnetError::Invalid("MD longer than 4 GiB"));
        }
        if opts.max_size.is_some_and(|m| m as usize > length) {
            return Err(LnetError::Invalid("max_size larger than the MD"));
        }
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                let i = u32::try_from(self.slots.len()).map_err(|_| LnetError::Full("MD table"))?;
                self.slots.push(Slot { generation: 1, md: None });
                i
            }
        };
        let slot = self.slots.get_mut(index as usize).ok_or(LnetError::BadHandle)?;
        let handle = MdHandle { shard: self.shard, index, generation: slot.generation };
        let me_info = me.map(|(portal, entry)| {
            let key = match entry.pos {
                InsertPos::After => {
                    self.next_back += 1;
                    self.next_back
                }
                InsertPos::Before => {
                    self.next_front -= 1;
                    self.next_front
                }
            };
            MeInfo { portal, entry, key }
        });
        slot.md = Some(Md {
            segs,
            iov,
            length,
            opts,
            threshold: opts.threshold,
            offset: 0,
            user,
            sink,
            pending: 0,
            unlinking: false,
            me: me_info,
        });
        self.live += 1;
        if let Some(mi) = me_info {
            self.link_me(index, mi);
        }
        Ok(handle)
    }

    fn link_me(&mut self, index: u32, mi: MeInfo) {
        let Some(p) = self.portals.get_mut(mi.portal as usize) else { return };
        let list = if mi.entry.ignore_bits == 0 {
            p.exact.entry(mi.entry.match_bits).or_default()
        } else {
            &mut p.wild
        };
        match mi.entry.pos {
            InsertPos::After => list.push_back((mi.key, index)),
            InsertPos::Before => list.push_front((mi.key, index)),
        }
        p.attached.notify();
    }

    fn unlink_me(&mut self, index: u32, mi: MeInfo) {
        let Some(p) = self.portals.get_mut(mi.portal as usize) else { return };
        if mi.entry.ignore_bits == 0 {
            if let Some(list) = p.exact.get_mut(&mi.entry.match_bits) {
                list.retain(|&(_, i)| i != index);
                if list.is_empty() {
                    p.exact.remove(&mi.entry.match_bits);
                }
            }
        } else {
            p.wild.retain(|&(_, i)| i != index);
        }
    }

    pub(crate) fn get(&self, h: MdHandle) -> Option<&Md> {
        if h.shard != self.shard {
            return None;
        }
        let s = self.slots.get(h.index as usize)?;
        if s.generation != h.generation {
            return None;
        }
        s.md.as_ref()
    }

    fn get_mut(&mut self, h: MdHandle) -> Option<&mut Md> {
        if h.shard != self.shard {
            return None;
        }
        let s = self.slots.get_mut(h.index as usize)?;
        if s.generation != h.generation {
            return None;
        }
        s.md.as_mut()
    }

    pub(crate) fn by_index(&self, index: u32) -> Option<&Md> {
        self.slots.get(index as usize)?.md.as_ref()
    }

    /// Matches an incoming PUT or GET against the portal's MEs, in list order
    /// (`lnet_try_match_md`), and commits to the MD that takes it.
    pub(crate) fn match_md(&mut self, info: &MatchInfo) -> MatchResult {
        let (mut a, mut b) = (0usize, 0usize);
        loop {
            let index = {
                let Some(p) = self.portals.get(info.portal as usize) else {
                    return MatchResult::None;
                };
                let ka = p.exact.get(&info.match_bits).and_then(|l| l.get(a)).copied();
                let kb = p.wild.get(b).copied();
                match (ka, kb) {
                    (None, None) => return MatchResult::None,
                    (Some(x), None) => {
                        a += 1;
                        x.1
                    }
                    (None, Some(y)) => {
                        b += 1;
                        y.1
                    }
                    (Some(x), Some(y)) => {
                        if x.0 <= y.0 {
                            a += 1;
                            x.1
                        } else {
                            b += 1;
                            y.1
                        }
                    }
                }
            };
            match self.try_match(index, info) {
                MatchResult::None => continue,
                r => return r,
            }
        }
    }

    fn try_match(&mut self, index: u32, info: &MatchInfo) -> MatchResult {
        let shard = self.shard;
        let Some(slot) = self.slots.get_mut(index as usize) else { return MatchResult::None };
        let generation = slot.generation;
        let Some(md) = slot.md.as_mut() else { return MatchResult::None };
        let Some(me) = md.me else { return MatchResult::None };
        if md.unlinking || md.exhausted() {
            return MatchResult::None;
        }
        let op_ok = if info.put { md.opts.op_put } else { md.opts.op_get };
        if !op_ok {
            return MatchResult::None;
        }
        if (me.entry.match_bits ^ info.match_bits) & !me.entry.ignore_bits != 0 {
            return MatchResult::None;
        }
        if me.entry.source.pid != ProcessId::PID_ANY && me.entry.source.pid != info.source.pid {
            return MatchResult::None;
        }
        if !me.entry.source.nid.is_any() && me.entry.source.nid != info.source.nid {
            return MatchResult::None;
        }
        let offset = if md.opts.manage_remote { info.roffset } else { md.offset };
        let room = match md.opts.max_size {
            Some(m) => m as usize,
            None => md.length.saturating_sub(offset),
        };
        let mlength = if info.rlength <= room {
            info.rlength
        } else if md.opts.truncate {
            room
        } else {
            return MatchResult::Drop;
        };
        if offset + mlength > md.length {
            return MatchResult::Drop;
        }
        if let Some(t) = md.threshold.as_mut() {
            *t -= 1;
        }
        md.offset = offset + mlength;
        md.pending += 1;
        if md.exhausted() && md.opts.auto_unlink {
            md.unlinking = true;
            self.unlink_me(index, me);
        }
        MatchResult::Ok(Matched {
            index,
            handle: MdHandle { shard, index, generation },
            offset,
            mlength,
        })
    }

    /// Takes a reference for an operation we start from the MD (PUT or GET source/sink) or a
    /// REPLY/ACK arriving for it. Fails on a stale, inactive or attached MD.
    pub(crate) fn begin_op(&mut self, h: MdHandle, attached_ok: bool) -> Result<()> {
        let md = self.get_mut(h).ok_or(LnetError::BadHandle)?;
        if md.unlinking || md.threshold == Some(0) || (!attached_ok && md.me.is_some()) {
            return Err(LnetError::BadHandle);
        }
        if let Some(t) = md.threshold.as_mut() {
            *t -= 1;
        }
        md.pending += 1;
        if md.threshold == Some(0) && md.opts.auto_unlink {
            md.unlinking = true;
        }
        Ok(())
    }

    /// Drops a reference. Returns the event sink, user value, and the MD's buffers when this
    /// was the last reference of an MD being unlinked (the caller reports `unlinked`).
    pub(crate) fn end_op(&mut self, h: MdHandle) -> Option<(Sink, u64, Option<MdBuffers>)> {
        let md = self.get_mut(h)?;
        md.pending = md.pending.saturating_sub(1);
        if md.exhausted() && md.opts.auto_unlink {
            md.unlinking = true;
        }
        let sink = md.sink.clone();
        let user = md.user;
        if md.unlinking && md.pending == 0 {
            let bufs = self.remove(h);
            return Some((sink, user, bufs));
        }
        Some((sink, user, None))
    }

    /// Unlinks an MD (`LNetMDUnlink`). With nothing in flight its buffers come back now;
    /// otherwise the last in-flight event reports `unlinked` with them.
    pub(crate) fn unlink(&mut self, h: MdHandle) -> Result<Option<(Sink, u64, MdBuffers)>> {
        let md = self.get_mut(h).ok_or(LnetError::BadHandle)?;
        md.unlinking = true;
        let me = md.me;
        let (sink, user, pending) = (md.sink.clone(), md.user, md.pending);
        if let Some(mi) = me {
            self.unlink_me(h.index, mi);
        }
        if pending == 0 {
            let bufs = self.remove(h).unwrap_or_default();
            return Ok(Some((sink, user, bufs)));
        }
        Ok(None)
    }

    fn remove(&mut self, h: MdHandle) -> Option<MdBuffers> {
        let slot = self.slots.get_mut(h.index as usize)?;
        let md = slot.md.take()?;
        slot.generation = match slot.generation.wrapping_add(1) {
            0 | u32::MAX => 1,
            g => g,
        };
        if let Some(mi) = md.me {
            // Already unlinked from the portal when it was marked; harmless if repeated.
            let _ = mi;
        }
        self.free.push(h.index);
        self.live -= 1;
        Some(MdBuffers(md.segs))
    }

    /// The MD's region, for a send or a REPLY.
    pub(crate) fn region(&self, h: MdHandle, offset: usize, len: usize) -> Vec<(*mut u8, usize)> {
        self.get(h).map(|m| m.region(offset, len)).unwrap_or_default()
    }

    /// The MD as a REPLY/ACK target: length and whether it accepts `rlength` bytes.
    pub(crate) fn reply_target(&self, h: MdHandle, rlength: usize) -> Option<(usize, bool)> {
        let md = self.get(h)?;
        if md.unlinking && md.pending == 0 {
            return None;
        }
        if md.me.is_some() {
            return None;
        }
        let mlength = rlength.min(md.length);
        Some((mlength, mlength == rlength || md.opts.truncate))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> MdTable {
        MdTable::new(3, 100)
    }

    fn put_info(bits: u64, rlength: usize) -> MatchInfo {
        MatchInfo {
            source: ProcessId::lustre(Nid::tcp([10, 0, 0, 1])),
            put: true,
            portal: 4,
            match_bits: bits,
            roffset: 0,
            rlength,
        }
    }

    fn put_md(threshold: Option<u32>) -> MdOptions {
        MdOptions { op_put: true, threshold, ..MdOptions::default() }
    }

    #[test]
    fn cookie_round_trip() {
        let h = MdHandle { shard: 7, index: 0x12_3456, generation: 0xdead_beef };
        assert_eq!(MdHandle::from_wire_cookie(h.wire_cookie()), h);
        assert_ne!(h.wire_cookie(), u64::MAX);
    }

    #[test]
    fn match_order_bits_and_ignore() {
        let mut t = table();
        let sink = Sink::Internal(Internal::PingTarget);
        let a = t
            .insert(
                vec![Box::new(vec![0u8; 64])],
                put_md(Some(1)),
                1,
                sink.clone(),
                Some((4, MatchEntry::any())),
            )
            .unwrap();
        let b = t
            .insert(
                vec![Box::new(vec![0u8; 64])],
                put_md(Some(1)),
                2,
                sink.clone(),
                Some((4, MatchEntry { pos: InsertPos::Before, ..MatchEntry::bits(7) })),
            )
            .unwrap();
        // b was inserted before a: exact match wins by position.
        match t.match_md(&put_info(7, 10)) {
            MatchResult::Ok(m) => assert_eq!(m.handle, b),
            r => panic!("{r:?}"),
        }
        // b exhausted and unlinked from the portal; a takes the next.
        match t.match_md(&put_info(7, 10)) {
            MatchResult::Ok(m) => assert_eq!(m.handle, a),
            r => panic!("{r:?}"),
        }
        assert_eq!(t.match_md(&put_info(7, 10)), MatchResult::None);
        // Wrong op: a GET does not match a PUT-only MD.
        let _c = t
            .insert(
                vec![Box::new(vec![0u8; 8])],
                put_md(None),
                3,
                sink,
                Some((4, MatchEntry::bits(9))),
            )
            .unwrap();
        let mut g = put_info(9, 1);
        g.put = false;
        assert_eq!(t.match_md(&g), MatchResult::None);
        assert!(matches!(t.match_md(&put_info(9, 100)), MatchResult::Drop));
    }

    #[test]
    fn offsets_max_size_and_unlink() {
        let mut t = table();
        let opts = MdOptions { max_size: Some(100), threshold: None, ..put_md(None) };
        let h = t
            .insert(
                vec![Box::new(vec![0u8; 230])],
                opts,
                0,
                Sink::Internal(Internal::PingTarget),
                Some((4, MatchEntry::any())),
            )
            .unwrap();
        let m1 = match t.match_md(&put_info(1, 40)) {
            MatchResult::Ok(m) => m,
            r => panic!("{r:?}"),
        };
        assert_eq!((m1.offset, m1.mlength), (0, 40));
        let m2 = match t.match_md(&put_info(2, 100)) {
            MatchResult::Ok(m) => m,
            r => panic!("{r:?}"),
        };
        assert_eq!(m2.offset, 40);
        // 140 + 100 > 230: exhausted, auto-unlinked, but two messages still in flight.
        assert_eq!(t.match_md(&put_info(3, 1)), MatchResult::None);
        assert!(t.end_op(h).unwrap().2.is_none());
        let (_, _, bufs) = t.end_op(h).unwrap();
        assert_eq!(bufs.unwrap().into_vec().unwrap().len(), 230);
        assert!(t.get(h).is_none());
        assert_eq!(t.live(), 0);
    }

    #[test]
    fn region_spans_segments() {
        let mut t = table();
        let h = t
            .insert(
                vec![Box::new(vec![0u8; 10]), Box::new(vec![0u8; 10]), Box::new([0u8; 5])],
                put_md(None),
                0,
                Sink::Internal(Internal::PingTarget),
                None,
            )
            .unwrap();
        let r = t.region(h, 8, 14);
        assert_eq!(r.iter().map(|x| x.1).collect::<Vec<_>>(), vec![2, 10, 2]);
        let (_, _, b) = t.unlink(h).unwrap().unwrap();
        assert_eq!(b.0.len(), 3);
    }
}
