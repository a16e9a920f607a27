//! The HTTP front end on a glommio executor: a REST API over the command language, Prometheus
//! metrics and the status page.
//!
//! One request per connection (`Connection: close`), everything bounded: concurrent
//! connections, header and body sizes, and the time a client has to send its request. Off
//! loopback the configuration must hold tokens (checked before the server starts); with
//! tokens set every request needs one: the read-only token reads, the admin token also
//! changes. Failed authentication is logged, rate-limited.

use crate::console::{Access, Backend, Console, Reply, needs_admin};
use crate::params::{Pattern, show};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use serde::Deserialize;
use std::cell::Cell;
use std::future::Future;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

/// Limits and tokens of the HTTP server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSettings {
    /// Token that reads.
    pub read_token: Option<String>,
    /// Token that also changes.
    pub admin_token: Option<String>,
    /// Connections served at once; more are answered 503 and closed.
    pub max_conns: usize,
    /// Bytes of request line and headers.
    pub max_header: usize,
    /// Bytes of request body.
    pub max_body: usize,
    /// Time a client has to send its whole request.
    pub request_timeout: Duration,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            read_token: None,
            admin_token: None,
            max_conns: 16,
            max_header: 8 << 10,
            max_body: 64 << 10,
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// Whether an HTTP bind address needs tokens: anything but loopback does.
#[must_use]
pub fn is_loopback(addr: &str) -> bool {
    match addr.parse::<SocketAddr>() {
        Ok(a) => a.ip().is_loopback(),
        Err(_) => addr.starts_with("localhost:"),
    }
}

/// Checks a listen address against the tokens configured: off loopback both tokens are
/// required, and they must differ.
pub fn check_bind(listen: &str, read: Option<&str>, admin: Option<&str>) -> Result<(), String> {
    if listen.is_empty() || is_loopback(listen) {
        return Ok(());
    }
    match (read, admin) {
        (Some(r), Some(a)) if !r.is_empty() && !a.is_empty() && r != a => Ok(()),
        (Some(r), Some(a)) if r == a => Err("http: read_token and admin_token must differ".into()),
        _ => Err(format!(
            "http.listen {listen} is not loopback: set http.read_token and http.admin_token"
        )),
    }
}

/// Compares without an early exit, so timing does not leak how much of a token matched.
fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut d = u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        d |= a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0xff);
    }
    d == 0
}

impl HttpSettings {
    /// The rights a request's token gives; `None` when it gives none.
    #[must_use]
    pub fn access(&self, token: Option<&str>) -> Option<Access> {
        if self.read_token.is_none() && self.admin_token.is_none() {
            return Some(Access::Admin);
        }
        let t = token?;
        if self.admin_token.as_deref().is_some_and(|a| same(a, t)) {
            Some(Access::Admin)
        } else if self.read_token.as_deref().is_some_and(|r| same(r, t)) {
            Some(Access::ReadOnly)
        } else {
            None
        }
    }
}

/// Rate-limited warnings: the first few per window, then a count.
#[derive(Debug)]
pub struct RateLog {
    window: Cell<Option<std::time::Instant>>,
    shown: Cell<u32>,
    suppressed: Cell<u64>,
}

/// Lines of one kind shown per second before the rest are counted.
pub const LOG_BURST: u32 = 5;

impl Default for RateLog {
    fn default() -> Self {
        RateLog { window: Cell::new(None), shown: Cell::new(0), suppressed: Cell::new(0) }
    }
}

impl RateLog {
    /// Logs `msg` unless this second's burst is spent.
    pub fn warn(&self, msg: &str) {
        let now = std::time::Instant::now();
        let fresh =
            self.window.get().is_none_or(|w| now.duration_since(w) >= Duration::from_secs(1));
        if fresh {
            if self.suppressed.get() > 0 {
                log::warn!(
                    "http: {} more failed authentications suppressed",
                    self.suppressed.get()
                );
            }
            self.window.set(Some(now));
            self.shown.set(0);
            self.suppressed.set(0);
        }
        if self.shown.get() < LOG_BURST {
            self.shown.set(self.shown.get() + 1);
            log::warn!("{msg}");
        } else {
            self.suppressed.set(self.suppressed.get() + 1);
        }
    }
}

struct Server<B> {
    console: Rc<Console<B>>,
    settings: HttpSettings,
    active: Cell<usize>,
    auth_log: RateLog,
}

/// A response.
#[derive(Debug)]
struct Resp {
    code: u16,
    ctype: &'static str,
    body: Vec<u8>,
}

impl Resp {
    fn text(code: u16, s: impl Into<String>) -> Resp {
        Resp { code, ctype: "text/plain; charset=utf-8", body: s.into().into_bytes() }
    }
    fn json(code: u16, v: &impl serde::Serialize) -> Resp {
        Resp {
            code,
            ctype: "application/json",
            body: serde_json::to_vec(v).unwrap_or_else(|_| b"{}".to_vec()),
        }
    }
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

async fn send(s: &mut TcpStream, r: &Resp) {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\
         Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n",
        r.code,
        reason(r.code),
        r.ctype,
        r.body.len()
    );
    if r.code == 401 {
        head.push_str("WWW-Authenticate: Bearer realm=\"rustre\"\r\n");
    }
    head.push_str("\r\n");
    let _ = s.write_all(head.as_bytes()).await;
    let _ = s.write_all(&r.body).await;
    let _ = s.flush().await;
    let _ = s.close().await;
}

/// Percent-decoding of a query value (`+` is a space).
#[must_use]
pub fn url_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let h = std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|x| u8::from_str_radix(x, 16).ok());
                match h {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query(target: &str) -> (String, Vec<(String, String)>) {
    let (path, q) = target.split_once('?').unwrap_or((target, ""));
    let kv = q
        .split('&')
        .filter(|x| !x.is_empty())
        .map(|x| {
            let (k, v) = x.split_once('=').unwrap_or((x, ""));
            (url_decode(k), url_decode(v))
        })
        .collect();
    (path.to_string(), kv)
}

struct Request {
    method: String,
    path: String,
    query: Vec<(String, String)>,
    token: Option<String>,
    body: Vec<u8>,
}

enum ReadErr {
    Closed,
    Status(u16, &'static str),
}

async fn read_request(s: &mut TcpStream, st: &HttpSettings) -> Result<Request, ReadErr> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        if buf.len() > st.max_header {
            return Err(ReadErr::Status(431, "request headers too large\n"));
        }
        let n = s.read(&mut chunk).await.map_err(|_| ReadErr::Closed)?;
        if n == 0 {
            return Err(ReadErr::Closed);
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    if head_end > st.max_header {
        return Err(ReadErr::Status(431, "request headers too large\n"));
    }
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(&buf[..head_end]) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Err(ReadErr::Status(400, "malformed request\n")),
    }
    let method = req.method.unwrap_or("").to_string();
    let (path, query) = query(req.path.unwrap_or("/"));
    let mut len = 0usize;
    let mut token = None;
    for h in req.headers.iter() {
        let v = std::str::from_utf8(h.value).unwrap_or("").trim();
        if h.name.eq_ignore_ascii_case("content-length") {
            len = v.parse().map_err(|_| ReadErr::Status(400, "bad Content-Length\n"))?;
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(ReadErr::Status(
                411,
                "chunked bodies are not accepted; send Content-Length\n",
            ));
        } else if h.name.eq_ignore_ascii_case("authorization") {
            token = v.strip_prefix("Bearer ").map(|t| t.trim().to_string());
        }
    }
    if token.is_none() {
        token = query.iter().find(|(k, _)| k == "token").map(|(_, v)| v.clone());
    }
    if len > st.max_body {
        return Err(ReadErr::Status(413, "request body too large\n"));
    }
    let mut body = buf.split_off(head_end);
    while body.len() < len {
        let n = s.read(&mut chunk).await.map_err(|_| ReadErr::Closed)?;
        if n == 0 {
            return Err(ReadErr::Closed);
        }
        body.extend_from_slice(&chunk[..n]);
        if body.len() > st.max_body {
            return Err(ReadErr::Status(413, "request body too large\n"));
        }
    }
    body.truncate(len);
    Ok(Request { method, path, query, token, body })
}

#[derive(Deserialize)]
struct CommandBody {
    command: String,
}

#[derive(Deserialize)]
struct SetBody {
    name: String,
    value: String,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum SetBodies {
    One(SetBody),
    Many(Vec<SetBody>),
}

impl<B: Backend> Server<B> {
    async fn route(&self, r: Request, peer: Option<SocketAddr>) -> Resp {
        let Some(access) = self.settings.access(r.token.as_deref()) else {
            let who = peer.map_or_else(|| "?".into(), |p| p.to_string());
            self.auth_log.warn(&format!(
                "http: failed authentication from {who}: {} {} ({})",
                r.method,
                r.path,
                if r.token.is_some() { "wrong token" } else { "no token" }
            ));
            return Resp::text(401, "authentication required\n");
        };
        let c = &self.console;
        match (r.method.as_str(), r.path.as_str()) {
            ("GET", "/") | ("GET", "/index.html") => {
                let s = c.backend.status().await;
                Resp {
                    code: 200,
                    ctype: "text/html; charset=utf-8",
                    body: crate::page::render(&s).into_bytes(),
                }
            }
            ("GET", "/metrics") => {
                let tree = c.backend.params(&[]).await;
                let s = c.backend.status().await;
                Resp {
                    code: 200,
                    ctype: "text/plain; version=0.0.4; charset=utf-8",
                    body: crate::metrics::render(&tree, &s).into_bytes(),
                }
            }
            ("GET", "/api/status") => Resp::json(200, &c.backend.status().await),
            ("GET", "/api/history") => Resp::json(200, &c.history()),
            ("GET", "/api/params") => {
                let pats: Vec<Pattern> = r
                    .query
                    .iter()
                    .filter(|(k, _)| k == "pattern")
                    .flat_map(|(_, v)| v.split_whitespace().map(Pattern::parse).collect::<Vec<_>>())
                    .collect();
                if pats.is_empty() {
                    return Resp::text(400, "give ?pattern=NAME (lctl glob)\n");
                }
                let tree = c.backend.params(&pats).await;
                let now = crate::lprocfs::now_ns();
                let v: Vec<serde_json::Value> = tree
                    .params
                    .values()
                    .map(|p| {
                        serde_json::json!({
                            "name": p.name(),
                            "value": p.value.render(now),
                            "writable": p.writable,
                        })
                    })
                    .collect();
                Resp::json(200, &serde_json::json!({ "params": v }))
            }
            ("PUT", "/api/params") => {
                if access < Access::Admin {
                    return Resp::json(
                        403,
                        &Reply { ok: false, output: "set_param needs the admin token\n".into() },
                    );
                }
                let sets = match serde_json::from_slice::<SetBodies>(&r.body) {
                    Ok(SetBodies::One(s)) => vec![s],
                    Ok(SetBodies::Many(v)) => v,
                    Err(e) => {
                        return Resp::text(
                            400,
                            format!("body: {{\"name\":..,\"value\":..}}: {e}\n"),
                        );
                    }
                };
                let mut out = String::new();
                let mut ok = true;
                for s in sets {
                    if s.name.contains(char::is_whitespace) || s.value.contains('\n') {
                        return Resp::text(400, "bad parameter name or value\n");
                    }
                    let rep = c
                        .execute(
                            &format!("set_param '{}={}'", s.name, s.value.replace('\'', "")),
                            access,
                        )
                        .await;
                    ok &= rep.ok;
                    out.push_str(&rep.output);
                }
                Resp::json(if ok { 200 } else { 400 }, &Reply { ok, output: out })
            }
            ("POST", "/api/command") => {
                let cmd = match serde_json::from_slice::<CommandBody>(&r.body) {
                    Ok(b) => b.command,
                    Err(e) => {
                        return Resp::text(400, format!("body: {{\"command\": \"...\"}}: {e}\n"));
                    }
                };
                if needs_admin(&cmd) && access < Access::Admin {
                    return Resp::json(
                        403,
                        &Reply {
                            ok: false,
                            output: "permission denied: needs the admin token\n".into(),
                        },
                    );
                }
                Resp::json(200, &c.execute(&cmd, access).await)
            }
            (
                _,
                "/" | "/metrics" | "/api/status" | "/api/history" | "/api/params" | "/api/command",
            ) => Resp::text(405, "method not allowed\n"),
            _ => Resp::text(404, "not found\n"),
        }
    }

    async fn conn(self: Rc<Self>, mut s: TcpStream) {
        let peer = s.peer_addr().ok();
        let deadline = self.settings.request_timeout;
        let r = futures_lite::future::or(
            async { Some(read_request(&mut s, &self.settings).await) },
            async {
                glommio::timer::sleep(deadline).await;
                None
            },
        )
        .await;
        let resp = match r {
            None => Resp::text(408, "request timeout\n"),
            Some(Err(ReadErr::Closed)) => return,
            Some(Err(ReadErr::Status(code, msg))) => Resp::text(code, msg),
            Some(Ok(req)) => self.route(req, peer).await,
        };
        send(&mut s, &resp).await;
    }
}

/// Serves HTTP on `listener` until `stopped` completes.
pub async fn serve<B: Backend + 'static>(
    console: Rc<Console<B>>,
    listener: TcpListener,
    settings: HttpSettings,
    stopped: impl Future<Output = ()>,
) {
    let srv =
        Rc::new(Server { console, settings, active: Cell::new(0), auth_log: RateLog::default() });
    let accept = async {
        loop {
            let mut s = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    log::warn!("http: accept: {e}");
                    glommio::timer::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            if srv.active.get() >= srv.settings.max_conns {
                glommio::spawn_local(async move {
                    send(&mut s, &Resp::text(503, "too many connections\n")).await;
                })
                .detach();
                continue;
            }
            srv.active.set(srv.active.get() + 1);
            let srv2 = srv.clone();
            glommio::spawn_local(async move {
                srv2.clone().conn(s).await;
                srv2.active.set(srv2.active.get().saturating_sub(1));
            })
            .detach();
        }
    };
    futures_lite::future::or(accept, stopped).await;
}

/// The text `get_param` prints for the parameters of a tree (used by the metrics tests).
#[must_use]
pub fn get_param_text(tree: &crate::params::Tree) -> String {
    let now = crate::lprocfs::now_ns();
    tree.params.values().map(|p| show(&p.name(), &p.value.render(now), true)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_rules() {
        assert!(check_bind("127.0.0.1:8080", None, None).is_ok());
        assert!(check_bind("[::1]:8080", None, None).is_ok());
        assert!(check_bind("0.0.0.0:8080", None, None).is_err());
        assert!(check_bind("0.0.0.0:8080", Some("r"), None).is_err());
        assert!(check_bind("0.0.0.0:8080", Some("r"), Some("r")).is_err());
        assert!(check_bind("0.0.0.0:8080", Some("r"), Some("a")).is_ok());
    }

    #[test]
    fn tokens() {
        let open = HttpSettings::default();
        assert_eq!(open.access(None), Some(Access::Admin));
        let t =
            HttpSettings { read_token: Some("r".into()), admin_token: Some("a".into()), ..open };
        assert_eq!(t.access(None), None);
        assert_eq!(t.access(Some("x")), None);
        assert_eq!(t.access(Some("r")), Some(Access::ReadOnly));
        assert_eq!(t.access(Some("a")), Some(Access::Admin));
        assert_eq!(t.access(Some("ab")), None);
    }

    #[test]
    fn decoding() {
        assert_eq!(url_decode("obdfilter.%2A.stats+x"), "obdfilter.*.stats x");
        assert_eq!(url_decode("%zz%"), "%zz%");
        let (p, q) = query("/api/params?pattern=a.*&pattern=b");
        assert_eq!(p, "/api/params");
        assert_eq!(q.len(), 2);
    }
}
