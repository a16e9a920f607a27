//! `rustre console --http HOST:PORT [--token T] [COMMAND...]`: the command language over the
//! HTTP API, from another machine (or a script on this one).

use crate::console::Reply;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Largest reply read (get_param of everything on a large node stays well under).
pub const MAX_REPLY: u64 = 64 << 20;

/// One HTTP exchange: method, path, optional JSON body. Returns (status, body).
pub fn request(
    addr: &str,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<(u16, String), String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("{addr}: {e}"))?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(120)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(30)));
    let b = body.unwrap_or("");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    if body.is_some() {
        req.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", b.len()));
    }
    req.push_str("\r\n");
    req.push_str(b);
    s.write_all(req.as_bytes()).map_err(|e| format!("{addr}: {e}"))?;
    let mut v = Vec::new();
    s.take(MAX_REPLY).read_to_end(&mut v).map_err(|e| format!("{addr}: {e}"))?;
    let text = String::from_utf8_lossy(&v);
    let (head, body) = text.split_once("\r\n\r\n").ok_or("malformed HTTP reply")?;
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or("malformed HTTP status line")?;
    Ok((code, body.to_string()))
}

/// Runs one command remotely.
pub fn command(addr: &str, token: Option<&str>, line: &str) -> Result<Reply, String> {
    let body = serde_json::json!({ "command": line }).to_string();
    let (code, text) = request(addr, token, "POST", "/api/command", Some(&body))?;
    match code {
        200 | 403 => serde_json::from_str(&text).map_err(|e| format!("bad reply ({e}): {text}")),
        401 => Err("authentication failed: give --token".into()),
        c => Err(format!("HTTP {c}: {}", text.trim())),
    }
}

/// `rustre console`: runs `cmd` (exit status from its success), or an interactive loop.
pub fn main(addr: &str, token: Option<&str>, cmd: &[String]) -> Result<bool, String> {
    if !cmd.is_empty() {
        let line = cmd
            .iter()
            .map(|w| if w.contains(char::is_whitespace) { format!("'{w}'") } else { w.clone() })
            .collect::<Vec<_>>()
            .join(" ");
        let r = command(addr, token, &line)?;
        print!("{}", r.output);
        return Ok(r.ok);
    }
    let mut failed = None;
    crate::repl::run_loop(&format!("rustre {addr}> "), |line| match command(addr, token, line) {
        Ok(r) => Some(r),
        Err(e) => {
            failed = Some(e);
            None
        }
    });
    failed.map_or(Ok(true), Err)
}
