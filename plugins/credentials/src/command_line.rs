//! Command lines whose short flags carry a password. The candidate is the tool's name and
//! the blank after it; the rest of the line (to a `|`, `;`, `&&` or the line's end) is
//! read as shell words:
//!
//! | tool | flag | secret |
//! |---|---|---|
//! | `curl` | `-u`, `--user`, `-U`, `--proxy-user` (`user:X`, also glued `-uuser:X`) | after the first `:` |
//! | `sshpass` | `-p X`, `-pX` (before the command it runs: `ssh -p 22` is a port) | the word |
//! | `redis-cli` | `-a X`, `--pass X` | the word |
//! | `mysql`, `mysqldump`, `mysqladmin`, `mariadb`, `mariadb-dump` | `-pX`, `-p'X'` (glued: `-p X` prompts and names a database) | the word |
//! | `htpasswd` | `-b` (with `-c`, `-B`, …): `file user X`, with `-n`: `user X` | the last word |
//! | `ldapsearch` and friends | `-w X` | the word |
//! | `sqlcmd` | `-P X` | the word |
//! | `docker login` (podman, nerdctl, buildah, skopeo, oras, `helm registry`) | `-p X` | the word |
//! | `sqlplus`, `rman`, `expdp`, `impdp`, `sqlldr`, `dgmgrl` | `user/X[@alias]`, `userid=user/X@db` | `X` |
//!
//! `--password X` and `--password=X` are read by the keyword's own rules (the
//! `spaced` and `assignment` modules). A value that is a variable (`$PW`, `"$(cat f)"`), a
//! placeholder or missing (`mysql -p`, `redis-cli -a` at the line's end) is not a finding.

use crate::Range;
use crate::text::{placeholder, word};

const TOOLS: &[&[u8]] = &[
    b"curl",
    b"sshpass",
    b"redis-cli",
    b"mysql",
    b"mysqldump",
    b"mysqladmin",
    b"mariadb",
    b"mariadb-dump",
    b"htpasswd",
    b"sqlcmd",
    b"ldapsearch",
    b"ldapmodify",
    b"ldapadd",
    b"ldapdelete",
    b"ldapwhoami",
    b"ldappasswd",
    b"sqlplus",
    b"rman",
    b"expdp",
    b"impdp",
    b"sqlldr",
    b"dgmgrl",
];

/// Oracle tools: a word `user/secret[@alias]` is a login.
const ORACLE: &[&[u8]] = &[
    b"sqlplus", b"rman", b"expdp", b"impdp", b"sqlldr", b"dgmgrl",
];

/// Registries' `login` commands (`helm registry login`: `registry`).
const LOGIN: &[&[u8]] = &[
    b"docker",
    b"podman",
    b"nerdctl",
    b"buildah",
    b"skopeo",
    b"oras",
    b"registry",
];

/// Whether the candidate is a tool name (or ` login`) and a blank.
pub fn is_tool(s: &[u8]) -> bool {
    let name = &s[..s.len() - 1];
    matches!(s.last(), Some(b' ' | b'\t')) && (TOOLS.contains(&name) || name == b" login")
}

pub fn secrets(text: &str, m: Range) -> Vec<Range> {
    let bytes = text.as_bytes();
    let mut m = m;
    if bytes[m.start] == b' ' {
        // ` login`: the word before must be a registry client.
        let end = m.start;
        let start = bytes[..end]
            .iter()
            .rposition(|b| b.is_ascii_whitespace() || matches!(b, b'/' | b';' | b'|' | b'&'))
            .map_or(0, |i| i + 1);
        if !LOGIN.contains(&&bytes[start..end]) {
            return Vec::new();
        }
        m = start..m.end;
    }
    // The tool must be a word of its own: `libcurl `, `my-mysql ` are not it.
    if m.start > 0 {
        let b = bytes[m.start - 1];
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.') {
            return Vec::new();
        }
    }
    let name = &bytes[m.start..m.end - 1];
    let end = command_end(bytes, m.end);
    let mut words = Vec::new();
    let mut pos = m.end;
    while let Some(w) = word(bytes, pos, end) {
        pos = w.next;
        words.push(w);
        if words.len() > 64 {
            break;
        }
    }
    let arg = |i: usize| -> Option<(&[u8], Range, bool)> {
        words
            .get(i)
            .map(|w| (&bytes[w.range.clone()], w.range.clone(), w.quoted))
    };
    let mut found = Vec::new();
    let mut i = 0;
    let mut positional = Vec::new();
    let mut htpasswd_b = false;
    let mut htpasswd_n = false;
    while let Some((a, r, quoted)) = arg(i) {
        i += 1;
        if ORACLE.contains(&name) {
            // `sqlplus scott/tiger@orcl`, `rman target sys/pw@prod`, `userid=u/p@db`.
            let at = a
                .iter()
                .position(|&b| b == b'@')
                .map_or(r.end, |i| r.start + i);
            if let Some(v) =
                crate::connection::oracle_secret(bytes, at).filter(|v| v.start >= r.start)
            {
                found.push(v);
            }
            continue;
        }
        if quoted || a.first() != Some(&b'-') || a == b"-" {
            if name == b"sshpass" {
                break; // the command sshpass runs: its flags are its own
            }
            positional.push(r);
            continue;
        }
        let flag_with_value = |short: &[u8], long: &[&[u8]]| short == a || long.contains(&a);
        let value: Option<Range> = match name {
            b"curl" => {
                if flag_with_value(b"-u", &[b"--user", b"-U", b"--proxy-user"]) {
                    arg(i).and_then(|(_, r, _)| user_password(bytes, r))
                } else if let Some(v) = a.strip_prefix(b"--user=") {
                    user_password(bytes, r.end - v.len()..r.end)
                } else if a.starts_with(b"-u") && a.len() > 2 && a[2] != b'-' {
                    user_password(bytes, r.start + 2..r.end)
                } else {
                    None
                }
            }
            b"sshpass" => glued_or_next(bytes, a, &r, b"-p", arg(i).map(|x| x.1)),
            b"redis-cli" => {
                if flag_with_value(b"-a", &[b"--pass"]) {
                    arg(i).map(|x| x.1)
                } else {
                    None
                }
            }
            b"mysql" | b"mysqldump" | b"mysqladmin" | b"mariadb" | b"mariadb-dump" => {
                (a.starts_with(b"-p") && a.len() > 2).then(|| {
                    let v = r.start + 2..r.end;
                    crate::text::unquote(bytes, v)
                })
            }
            b"htpasswd" => {
                if a == b"-C" {
                    i += 1; // the bcrypt cost takes a value
                } else if a[1..].iter().all(u8::is_ascii_alphabetic) && a.len() > 1 {
                    htpasswd_b |= a.contains(&b'b');
                    htpasswd_n |= a.contains(&b'n');
                }
                None
            }
            b"sqlcmd" => flag_with_value(b"-P", &[])
                .then(|| arg(i).map(|x| x.1))
                .flatten(),
            _ if name.starts_with(b"ldap") => {
                glued_or_next(bytes, a, &r, b"-w", arg(i).map(|x| x.1))
            }
            _ => glued_or_next(bytes, a, &r, b"-p", arg(i).map(|x| x.1)), // `… login`
        };
        if let Some(v) = value.filter(|v| literal(&bytes[v.clone()])) {
            found.push(v);
        }
    }
    if name == b"htpasswd" && htpasswd_b {
        // `htpasswd -b file user X`, `htpasswd -nb user X`.
        let want = if htpasswd_n { 2 } else { 3 };
        if positional.len() == want {
            let v = positional[want - 1].clone();
            if literal(&bytes[v.clone()]) {
                found.push(v);
            }
        }
    }
    found
}

/// `-pX` or `-p X`.
fn glued_or_next(
    bytes: &[u8],
    a: &[u8],
    r: &Range,
    flag: &[u8],
    next: Option<Range>,
) -> Option<Range> {
    if a == flag {
        return next;
    }
    (a.starts_with(flag) && a.len() > flag.len())
        .then(|| crate::text::unquote(bytes, r.start + flag.len()..r.end))
}

/// `user:secret` → the secret.
fn user_password(bytes: &[u8], r: Range) -> Option<Range> {
    let colon = bytes[r.clone()].iter().position(|&b| b == b':')?;
    (colon > 0).then_some(r.start + colon + 1..r.end)
}

fn literal(v: &[u8]) -> bool {
    v.len() >= 3
        && !placeholder(v)
        && !matches!(v[0], b'-' | b'|' | b'>' | b'&' | b'\\' | b'(' | b'/')
}

/// Where the command ends: a pipe, `;`, `&&`, a comment or the line's end.
fn command_end(bytes: &[u8], from: usize) -> usize {
    let end = crate::text::line_end(bytes, from);
    let mut quote = None;
    for (i, &b) in bytes[from..end].iter().enumerate() {
        match (quote, b) {
            (None, b'"' | b'\'') => quote = Some(b),
            (Some(q), _) if q == b => quote = None,
            (None, b'|' | b';' | b'&') => return from + i,
            _ => {}
        }
    }
    end
}
