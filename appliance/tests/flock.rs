//! fcntl record locks and flock(2) locks on FUSE mounts, as root: two `rlfs mount` processes
//! of the embedded file system, and on each a locking process (python3's fcntl module, and
//! flock(1)) driven line by line. The locks are the MDT's FLOCK locks, so what one mount's
//! process holds the other mount's processes see: EAGAIN, F_GETLK's holder, F_SETLKW waiting
//! until it goes, ranges split by unlocks, locks going with a close or the holder's exit,
//! deadlocks refused, an interrupted wait giving up its place.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test: a failure is a test failure")]

mod common;

use common::mount::{Mount, can_mount};
use common::{Server, TempDir, free_port};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::Duration;

/// A process that opens a file and takes, tests and drops locks on it as told, one command
/// per line, one answer per line: `ok`, `err ERRNO-NAME`, or for `getlk` `U` / `R|W START
/// LEN PID`. `setlkw_alarm` arms a 1 s alarm whose handler raises, to interrupt the wait.
const LOCKER: &str = r#"
import errno, fcntl, os, signal, struct, sys
path = sys.argv[1]
fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
class Alarm(Exception):
    pass
def on_alarm(sig, frame):
    raise Alarm()
signal.signal(signal.SIGALRM, on_alarm)
TYPES = {"R": fcntl.F_RDLCK, "W": fcntl.F_WRLCK, "U": fcntl.F_UNLCK}
NAMES = {fcntl.F_RDLCK: "R", fcntl.F_WRLCK: "W"}
def flk(t, start, length):
    return struct.pack("hhqqi4x", TYPES[t], os.SEEK_SET, int(start), int(length), 0)
print("ready", os.getpid(), flush=True)
for line in sys.stdin:
    w = line.split()
    if not w:
        continue
    try:
        c = w[0]
        if c == "setlk":
            fcntl.fcntl(fd, fcntl.F_SETLK, flk(*w[1:4]))
        elif c == "setlkw":
            fcntl.fcntl(fd, fcntl.F_SETLKW, flk(*w[1:4]))
        elif c == "setlkw_alarm":
            signal.alarm(1)
            try:
                fcntl.fcntl(fd, fcntl.F_SETLKW, flk(*w[1:4]))
            except Alarm:
                print("interrupted", flush=True)
                continue
            finally:
                signal.alarm(0)
        elif c == "ofd_setlk":
            fcntl.fcntl(fd, fcntl.F_OFD_SETLK, flk(*w[1:4]))
        elif c == "getlk":
            r = fcntl.fcntl(fd, fcntl.F_GETLK, flk(*w[1:4]))
            t, _, s, l, p = struct.unpack("hhqqi4x", r)
            print("U" if t == fcntl.F_UNLCK else "%s %d %d %d" % (NAMES[t], s, l, p), flush=True)
            continue
        elif c == "flock":
            op = {"EX": fcntl.LOCK_EX, "SH": fcntl.LOCK_SH, "UN": fcntl.LOCK_UN}[w[1]]
            if len(w) > 2 and w[2] == "NB":
                op |= fcntl.LOCK_NB
            fcntl.flock(fd, op)
        elif c == "close":
            os.close(fd)
        elif c == "open":
            fd = os.open(path, os.O_RDWR)
        elif c == "exit":
            os._exit(0)
        print("ok", flush=True)
    except OSError as e:
        print("err", errno.errorcode.get(e.errno, str(e.errno)), flush=True)
"#;

struct Locker {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    pid: u32,
}

/// How long an answer that must come may take (lock RPCs on a loaded machine).
const ANSWER: Duration = Duration::from_secs(60);
/// How long a request that must wait is watched for not being answered.
const STILL_WAITING: Duration = Duration::from_millis(1500);

impl Locker {
    fn new(file: &Path) -> Locker {
        let mut child = Command::new("python3")
            .arg("-c")
            .arg(LOCKER)
            .arg(file)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3");
        let stdin = child.stdin.take().unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines() {
                let Ok(l) = l else { return };
                if tx.send(l).is_err() {
                    return;
                }
            }
        });
        let ready = lines.recv_timeout(ANSWER).expect("locker did not start");
        let pid = ready.strip_prefix("ready ").unwrap().parse().unwrap();
        Locker { child, stdin, lines, pid }
    }

    fn send(&mut self, cmd: &str) {
        writeln!(self.stdin, "{cmd}").unwrap();
        self.stdin.flush().unwrap();
    }

    fn answer(&self) -> String {
        self.lines.recv_timeout(ANSWER).expect("no answer from the locker")
    }

    /// Sends a command and returns its answer.
    fn run(&mut self, cmd: &str) -> String {
        self.send(cmd);
        self.answer()
    }

    /// Asserts that the last command is still waiting.
    fn still_waiting(&self) {
        match self.lines.recv_timeout(STILL_WAITING) {
            Err(RecvTimeoutError::Timeout) => {}
            other => panic!("expected the request to wait, got {other:?}"),
        }
    }

    /// Ends the process (its descriptors close as a process's do).
    fn exit(mut self) {
        self.send("exit");
        self.child.wait().unwrap();
    }

    /// SIGKILLs the process and reaps it.
    fn kill(&mut self) -> std::process::ExitStatus {
        self.child.kill().unwrap();
        self.child.wait().unwrap()
    }
}

/// Runs `cmd` until it answers `want` (a release of an open file reaches the file system
/// after close(2) has returned), at most [`ANSWER`].
fn eventually(l: &mut Locker, cmd: &str, want: &str) {
    let t = std::time::Instant::now();
    loop {
        let got = l.run(cmd);
        if got == want {
            return;
        }
        assert!(t.elapsed() < ANSWER, "{cmd}: {got}, never {want}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Drop for Locker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Setup {
    a: Mount,
    b: Mount,
    _srv: Server,
    _dir: TempDir,
}

fn setup(tag: &str) -> Setup {
    let dir = TempDir::new(tag);
    let port = free_port();
    let srv = Server::all_in_one(dir.path(), port);
    let a = Mount::new(port, &dir.path().join("a"), "");
    let b = Mount::new(port, &dir.path().join("b"), "");
    std::fs::write(a.path("f"), vec![b'x'; 200]).unwrap();
    Setup { a, b, _srv: srv, _dir: dir }
}

#[test]
fn fcntl_locks_are_seen_across_mounts_and_split_by_unlocks() {
    if !can_mount() {
        return;
    }
    let s = setup("flockpx");
    let mut a = Locker::new(&s.a.path("f"));
    let mut b = Locker::new(&s.b.path("f"));

    // A write-locks bytes 0-99: B can take neither a write nor a read lock there.
    assert_eq!(a.run("setlk W 0 100"), "ok");
    assert_eq!(b.run("setlk W 50 10"), "err EAGAIN");
    assert_eq!(b.run("setlk R 0 10"), "err EAGAIN");
    assert_eq!(b.run("setlk W 100 50"), "ok", "past A's range");
    // F_GETLK names the holder: its type, range and pid.
    assert_eq!(b.run("getlk W 10 5"), format!("W 0 100 {}", a.pid));
    assert_eq!(b.run("getlk R 150 10"), "U");
    assert_eq!(a.run("getlk R 100 1"), format!("W 100 50 {}", b.pid));
    assert_eq!(b.run("setlk U 100 50"), "ok");

    // A unlocks 40-59 out of the middle: B may lock that hole, not the rest.
    assert_eq!(a.run("setlk U 40 20"), "ok");
    assert_eq!(b.run("setlk W 40 20"), "ok");
    assert_eq!(b.run("setlk W 0 10"), "err EAGAIN");
    assert_eq!(b.run("setlk R 60 1"), "err EAGAIN");
    assert_eq!(b.run("getlk W 0 10"), format!("W 0 40 {}", a.pid));
    assert_eq!(b.run("getlk W 61 100"), format!("W 60 40 {}", a.pid));
    assert_eq!(b.run("setlk U 40 20"), "ok");

    // A downgrades to a read lock: B reads beside it but still cannot write.
    assert_eq!(a.run("setlk R 0 100"), "ok");
    assert_eq!(b.run("setlk R 0 10"), "ok");
    assert_eq!(b.run("setlk W 20 1"), "err EAGAIN");
    assert_eq!(b.run("setlk U 0 0"), "ok");

    // F_SETLKW waits until A lets go.
    b.send("setlkw W 0 10");
    b.still_waiting();
    assert_eq!(a.run("setlk U 0 0"), "ok");
    assert_eq!(b.answer(), "ok");
    assert_eq!(a.run("setlk R 5 1"), "err EAGAIN", "now B holds it");
}

#[test]
fn flock_excludes_across_mounts() {
    if !can_mount() {
        return;
    }
    let s = setup("flockbsd");
    let mut a = Locker::new(&s.a.path("f"));
    let mut b = Locker::new(&s.b.path("f"));
    assert_eq!(a.run("flock EX"), "ok");
    assert_eq!(b.run("flock EX NB"), "err EAGAIN", "EWOULDBLOCK");
    assert_eq!(b.run("flock SH NB"), "err EAGAIN");
    // flock(1) on the other mount agrees.
    let busy = Command::new("flock").args(["-n", "-x"]).arg(s.b.path("f")).arg("true").status();
    assert_eq!(busy.unwrap().code(), Some(1), "flock -n fails while A holds the lock");
    // A blocking LOCK_EX waits for LOCK_UN.
    b.send("flock EX");
    b.still_waiting();
    assert_eq!(a.run("flock UN"), "ok");
    assert_eq!(b.answer(), "ok");
    assert_eq!(a.run("flock SH NB"), "err EAGAIN");
    // Shared locks share.
    assert_eq!(b.run("flock SH"), "ok", "a conversion to shared");
    assert_eq!(a.run("flock SH NB"), "ok");
    let shared = Command::new("flock").args(["-n", "-s"]).arg(s.a.path("f")).arg("true").status();
    assert_eq!(shared.unwrap().code(), Some(0));
    // Closing the descriptor drops the flock lock (when the open file is released).
    assert_eq!(a.run("close"), "ok");
    let mut c = Locker::new(&s.a.path("f"));
    assert_eq!(c.run("flock EX NB"), "err EAGAIN", "B still holds its shared lock");
    assert_eq!(b.run("close"), "ok");
    eventually(&mut c, "flock EX NB", "ok");
}

#[test]
fn locks_go_with_close_exit_and_kill() {
    if !can_mount() {
        return;
    }
    let s = setup("flockexit");
    let mut b = Locker::new(&s.b.path("f"));

    // The holder exits without unlocking.
    let mut a = Locker::new(&s.a.path("f"));
    assert_eq!(a.run("setlk W 0 0"), "ok");
    assert_eq!(b.run("setlk W 7 1"), "err EAGAIN");
    a.exit();
    assert_eq!(b.run("setlk W 7 1"), "ok");
    assert_eq!(b.run("setlk U 0 0"), "ok");

    // The holder is killed.
    let mut a = Locker::new(&s.a.path("f"));
    assert_eq!(a.run("setlk R 0 0"), "ok");
    assert_eq!(b.run("setlk W 0 1"), "err EAGAIN");
    drop(a);
    assert_eq!(b.run("setlk W 0 1"), "ok");
    assert_eq!(b.run("setlk U 0 0"), "ok");

    // A close of the file drops the process's POSIX locks; OFD locks go with their open file.
    let mut a = Locker::new(&s.a.path("f"));
    assert_eq!(a.run("setlk W 0 10"), "ok");
    assert_eq!(a.run("close"), "ok");
    assert_eq!(b.run("setlk W 0 10"), "ok");
    assert_eq!(b.run("setlk U 0 0"), "ok");
    assert_eq!(a.run("open"), "ok");
    assert_eq!(a.run("ofd_setlk W 0 10"), "ok");
    assert_eq!(b.run("setlk W 5 1"), "err EAGAIN");
    assert_eq!(a.run("close"), "ok");
    eventually(&mut b, "setlk W 5 1", "ok");
}

#[test]
fn interrupted_and_deadlocked_waits_end() {
    if !can_mount() {
        return;
    }
    let s = setup("flockintr");
    let mut a = Locker::new(&s.a.path("f"));
    let mut b = Locker::new(&s.b.path("f"));

    // A signal ends B's wait, and B's request does not stay queued behind A.
    assert_eq!(a.run("setlk W 0 0"), "ok");
    assert_eq!(b.run("setlkw_alarm W 0 10"), "interrupted");
    assert_eq!(a.run("setlk U 0 0"), "ok");
    assert_eq!(a.run("setlk W 0 0"), "ok", "nobody was granted A's range meanwhile");

    // A waiter killed by SIGKILL goes (it is not stuck in the kernel), and so does its request.
    let mut c = Locker::new(&s.b.path("f"));
    c.send("setlkw W 0 1");
    c.still_waiting();
    let t = std::time::Instant::now();
    assert!(!c.kill().success());
    assert!(t.elapsed() < ANSWER, "the killed waiter took {:?} to go", t.elapsed());
    drop(c);
    assert_eq!(a.run("setlk U 0 0"), "ok");
    assert_eq!(a.run("setlk W 0 1"), "ok", "the killed waiter's request is gone");
    assert_eq!(a.run("setlk U 0 0"), "ok");

    // A waits for B's byte 1 while holding byte 0; B asking for byte 0 would wait forever.
    assert_eq!(a.run("setlk W 0 1"), "ok");
    assert_eq!(b.run("setlk W 1 1"), "ok");
    a.send("setlkw W 1 1");
    a.still_waiting();
    let dead = b.run("setlkw W 0 1");
    assert!(matches!(dead.as_str(), "err EDEADLK" | "err EDEADLOCK"), "{dead}");
    assert_eq!(b.run("setlk U 0 0"), "ok");
    assert_eq!(a.answer(), "ok");
}

/// The client library's API without FUSE: a waiting request is granted by completion AST
/// when the holder's client unmounts (its export's locks go with the disconnect).
#[test]
fn a_disconnect_drops_the_clients_locks_and_grants_the_waiter() {
    use client::{Cred, FlockKind, FlockReq};
    let dir = TempDir::new("flockapi");
    let port = free_port();
    let srv = Server::all_in_one(dir.path(), port);
    let (c1, c2) = (srv.mount(), srv.mount());
    let fid = c1.create("/f", 0o644, Vec::new(), Cred::root()).unwrap();
    let req = |owner, kind| FlockReq { owner, pid: 7, start: 0, end: 99, kind };
    let r = req(1, FlockKind::Write);
    c1.run(move |fs| async move { fs.flock_set(fid, r, false).await }).unwrap();
    let r = req(2, FlockKind::Read);
    let e = c2.run(move |fs| async move { fs.flock_set(fid, r, false).await }).unwrap_err();
    assert_eq!(e.errno, libc::EAGAIN);
    let h = c2.run(move |fs| async move { fs.flock_test(fid, r).await }).unwrap().unwrap();
    assert_eq!((h.kind, h.start, h.end, h.pid), (FlockKind::Write, 0, 99, 7));
    let waiter = std::thread::spawn(move || {
        c2.run(move |fs| async move { fs.flock_set(fid, r, true).await }).map(|()| c2)
    });
    std::thread::sleep(STILL_WAITING);
    assert!(!waiter.is_finished(), "the reader waits for the writer");
    c1.umount().unwrap();
    let c2 = waiter.join().unwrap().expect("granted once the holder's client left");
    let w = req(2, FlockKind::Write);
    let got = c2.run(move |fs| async move { fs.flock_test(fid, w).await }).unwrap();
    assert_eq!(got, None, "nobody else holds anything");
    drop(c2);
    drop(srv);
}
