//! The parameter tree (`lctl get_param`, `set_param`, `list_param`): Lustre's names, gathered
//! from every shard and merged.
//!
//! A name is a list of components (`obdfilter`, `rustre-OST0000`, `exports`,
//! `192.168.1.2@tcp`, `stats`); shown joined with dots. Patterns are lctl's: each dotted part
//! a glob (`*`, `?`, `[...]`, `{a,b}`), and a part may match a component that itself holds
//! dots (a NID).

use crate::lprocfs::{BrwSnap, JobsSnap, StatsSnap};
use serde::Serialize;
use std::collections::BTreeMap;

/// A parameter's value, as gathered from one shard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Value {
    /// Text that is the same on every shard (the first shard's wins).
    Text(String),
    /// A number each shard holds a share of: shown as the sum.
    Sum(u64),
    /// A stats file.
    Stats(StatsSnap),
    /// A job_stats file.
    Jobs(JobsSnap),
    /// A brw_stats file.
    Brw(BrwSnap),
    /// One line per item, merged across shards (export UUIDs).
    Lines(Vec<String>),
}

impl Value {
    fn merge(&mut self, o: &Value) {
        match (self, o) {
            (Value::Sum(a), Value::Sum(b)) => *a = a.saturating_add(*b),
            (Value::Stats(a), Value::Stats(b)) => a.merge(b),
            (Value::Jobs(a), Value::Jobs(b)) => a.merge(b),
            (Value::Brw(a), Value::Brw(b)) => a.merge(b),
            (Value::Lines(a), Value::Lines(b)) => {
                a.extend(b.iter().cloned());
                a.sort();
                a.dedup();
            }
            _ => {}
        }
    }

    /// The file's content at `now` (ns since the epoch), with its final newline.
    #[must_use]
    pub fn render(&self, now: u64) -> String {
        match self {
            Value::Text(t) => format!("{t}\n"),
            Value::Sum(n) => format!("{n}\n"),
            Value::Stats(s) => s.render(now),
            Value::Jobs(j) => j.render(),
            Value::Brw(b) => b.render(now),
            Value::Lines(l) => l.iter().map(|x| format!("{x}\n")).collect(),
        }
    }

    /// A single number, when the value is one.
    #[must_use]
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Value::Sum(n) => Some(*n),
            Value::Text(t) => t.trim().parse().ok(),
            _ => None,
        }
    }
}

/// One parameter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Param {
    /// Name components.
    pub path: Vec<String>,
    /// Value.
    pub value: Value,
    /// Whether set_param may change it.
    pub writable: bool,
}

impl Param {
    /// A parameter named by dotted components.
    #[must_use]
    pub fn new(path: &[&str], value: Value) -> Param {
        Param { path: path.iter().map(|s| (*s).to_string()).collect(), value, writable: false }
    }
    /// The same, writable.
    #[must_use]
    pub fn rw(mut self) -> Param {
        self.writable = true;
        self
    }
    /// The dotted name.
    #[must_use]
    pub fn name(&self) -> String {
        self.path.join(".")
    }
}

/// Parameters by name: a snapshot of the appliance's state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Tree {
    /// By path.
    pub params: BTreeMap<Vec<String>, Param>,
}

impl Tree {
    /// Adds a parameter (merged with one of the same name).
    pub fn insert(&mut self, p: Param) {
        match self.params.get_mut(&p.path) {
            Some(x) => x.value.merge(&p.value),
            None => {
                self.params.insert(p.path.clone(), p);
            }
        }
    }
    /// Adds another shard's tree.
    pub fn merge(&mut self, o: Tree) {
        for (_, p) in o.params {
            self.insert(p);
        }
    }
    /// Parameters matching `pat`, in name order.
    pub fn matching<'a>(&'a self, pat: &'a Pattern) -> impl Iterator<Item = &'a Param> + 'a {
        self.params.values().filter(move |p| pat.matches(&p.path))
    }
    /// A parameter by dotted name.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&Param> {
        let pat = Pattern::parse(name);
        self.params.values().find(|p| pat.matches(&p.path))
    }
    /// Keeps only the parameters matching one of `pats`.
    pub fn retain(&mut self, pats: &[Pattern]) {
        self.params.retain(|k, _| pats.iter().any(|p| p.matches(k)));
    }
}

/// A parameter pattern (`obdfilter.*.stats`, `ldlm.namespaces.{mdt-,filter-}*.lru_size`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    parts: Vec<String>,
}

impl Pattern {
    /// Parses lctl's syntax (`/` may stand for `.`, as lctl accepts paths).
    #[must_use]
    pub fn parse(s: &str) -> Pattern {
        let s = s.trim().trim_matches('/');
        // Dots inside braces do not separate parts.
        let mut parts = Vec::new();
        let mut cur = String::new();
        let mut depth = 0u32;
        for c in s.chars() {
            match c {
                '{' => {
                    depth += 1;
                    cur.push(c);
                }
                '}' => {
                    depth = depth.saturating_sub(1);
                    cur.push(c);
                }
                '.' | '/' if depth == 0 => parts.push(std::mem::take(&mut cur)),
                _ => cur.push(c),
            }
        }
        parts.push(cur);
        Pattern { parts }
    }

    /// Whether a parameter of components `path` matches.
    #[must_use]
    pub fn matches(&self, path: &[String]) -> bool {
        match_parts(&self.parts, path)
    }

    /// Whether `path` is a directory this pattern names or lies under (for `list_param`):
    /// the pattern matches a prefix of `path`. Returns the matched prefix length.
    #[must_use]
    pub fn prefix_len(&self, path: &[String]) -> Option<usize> {
        (1..=path.len()).find(|&n| match_parts(&self.parts, &path[..n]))
    }
}

fn match_parts(pat: &[String], path: &[String]) -> bool {
    let Some((first, rest)) = path.split_first() else { return pat.is_empty() };
    // A component may hold dots (NIDs): try joining 1..k pattern parts for it.
    for k in 1..=pat.len() {
        let joined = pat[..k].join(".");
        if glob(&joined, first) && match_parts(&pat[k..], rest) {
            return true;
        }
    }
    false
}

/// Shell glob of one component: `*`, `?`, `[abc]`, `[a-z]`, `[!x]`, `{a,b}`.
#[must_use]
pub fn glob(pat: &str, s: &str) -> bool {
    if let Some(open) = pat.find('{')
        && let Some(close) = pat[open..].find('}').map(|c| c + open)
    {
        let (pre, alts, post) = (&pat[..open], &pat[open + 1..close], &pat[close + 1..]);
        return alts.split(',').any(|a| glob(&format!("{pre}{a}{post}"), s));
    }
    let p: Vec<char> = pat.chars().collect();
    let t: Vec<char> = s.chars().collect();
    glob_chars(&p, &t)
}

fn glob_chars(p: &[char], t: &[char]) -> bool {
    match p.first() {
        None => t.is_empty(),
        Some('*') => (0..=t.len()).any(|i| glob_chars(&p[1..], &t[i..])),
        Some('?') => !t.is_empty() && glob_chars(&p[1..], &t[1..]),
        Some('[') => {
            let Some(end) = p.iter().skip(1).position(|&c| c == ']').map(|e| e + 1) else {
                return t.first() == Some(&'[') && glob_chars(&p[1..], &t[1..]);
            };
            let Some(&c) = t.first() else { return false };
            let set = &p[1..end];
            let (neg, set) = match set.first() {
                Some('!' | '^') => (true, &set[1..]),
                _ => (false, set),
            };
            let mut hit = false;
            let mut i = 0;
            while i < set.len() {
                if i + 2 < set.len() && set[i + 1] == '-' {
                    hit |= set[i] <= c && c <= set[i + 2];
                    i += 3;
                } else {
                    hit |= set[i] == c;
                    i += 1;
                }
            }
            hit != neg && glob_chars(&p[end + 1..], &t[1..])
        }
        Some(&c) => t.first() == Some(&c) && glob_chars(&p[1..], &t[1..]),
    }
}

/// `lctl get_param` output of one parameter: `name=value` on one line when short and single
/// line, otherwise `name=` and the value on the lines after (lctl's `read_param`). Empty
/// values print nothing. `-n` prints the value alone.
#[must_use]
pub fn show(name: &str, text: &str, with_name: bool) -> String {
    if text.is_empty() {
        return String::new();
    }
    if !with_name {
        return text.to_string();
    }
    let body = text.strip_suffix('\n').unwrap_or(text);
    let long = body.contains('\n') || text.len() + name.len() >= 80;
    format!("{name}={}{text}", if long { "\n" } else { "" })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Vec<String> {
        s.split('|').map(String::from).collect()
    }

    #[test]
    fn patterns() {
        let stats = p("obdfilter|rustre-OST0000|exports|127.0.0.1@tcp|stats");
        assert!(Pattern::parse("obdfilter.*.exports.*.stats").matches(&stats));
        assert!(Pattern::parse("obdfilter.*OST*.exports.127.0.0.1@tcp.stats").matches(&stats));
        assert!(!Pattern::parse("obdfilter.*.stats").matches(&stats));
        assert!(Pattern::parse("obdfilter/rustre-OST0000/exports/*/stats").matches(&stats));
        let ns = p("ldlm|namespaces|mdt-rustre-MDT0000_UUID|lru_size");
        assert!(Pattern::parse("ldlm.namespaces.{mdt-,filter-}*.lru_size").matches(&ns));
        assert!(!Pattern::parse("ldlm.namespaces.filter-*.lru_size").matches(&ns));
        assert!(Pattern::parse("*.*.*.lru_size").matches(&ns));
        assert!(glob("OST000[0-3]", "OST0002"));
        assert!(!glob("OST000[!2]", "OST0002"));
        assert_eq!(Pattern::parse("ldlm.namespaces").prefix_len(&ns), Some(2));
    }

    #[test]
    fn show_like_lctl() {
        assert_eq!(show("version", "2.15.8\n", true), "version=2.15.8\n");
        assert_eq!(show("a.stats", "x\ny\n", true), "a.stats=\nx\ny\n");
        assert_eq!(show("a", "x\ny\n", false), "x\ny\n");
        assert_eq!(show("a", "", true), "");
    }

    #[test]
    fn merge_sums() {
        let mut t = Tree::default();
        t.insert(Param::new(&["a", "n"], Value::Sum(2)));
        t.insert(Param::new(&["a", "n"], Value::Sum(3)));
        t.insert(Param::new(&["a", "u"], Value::Lines(vec!["y".into()])));
        t.insert(Param::new(&["a", "u"], Value::Lines(vec!["x".into(), "y".into()])));
        assert_eq!(t.get("a.n").unwrap().value, Value::Sum(5));
        assert_eq!(t.get("a.u").unwrap().value.render(0), "x\ny\n");
    }
}
