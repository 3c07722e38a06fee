//! The keyword (`password`, `passwd`, `passphrase`) followed by a space, or used in a
//! sentence: the candidate is the keyword alone and its surroundings decide.
//!
//! * a command-line flag: `--password X`, `--db-password 'X'`, `-password X` (the value is
//!   the next word; another flag, a `$VAR` or `"$(cat file)"` is not a value);
//! * `echo X | docker login … --password-stdin` (also `printf '%s' X |` and `<<< X`): the
//!   literal piped into the flag;
//! * `.netrc`: `password X` with a `login` word before it (same line or the entry's lines);
//! * SQL: `PASSWORD 'X'` in a statement about a user or role (`WITH`, `USER`, `ROLE`);
//!   hashed forms (`'md5…'`, `'SCRAM-SHA-256$…'`) are not passwords;
//! * prose: "the admin password for staging is X", "Password for the VPN: X", "my password
//!   was X", "use X as the password". An unquoted value must look like a password: a digit,
//!   a symbol or inner upper case (`Plum-Tree-42`, `hunter2`, `tr0ub4dor`), or six or more
//!   digits; a lower-case word (`stored`, `required`, `sunshine`) is a sentence. A quoted
//!   value (`"…"`, `'…'`, `` `…` ``) counts as given.
//!
//! Anything else — `password hunter2` with no context, `passwords`, `password_hash` — is
//! not a finding.

use crate::Range;
use crate::text::{
    Word, contains, contains_ci, line_end, line_start, path_or_url, placeholder, unquote, word,
};

pub fn secrets(text: &str, m: Range) -> Vec<Range> {
    let bytes = text.as_bytes();
    // Most mentions of the keyword are code (`password)`, `password.encode()`): each check
    // below first looks at the bytes right around it, the clean corpus's 733 mentions cost
    // the upgoing scan 1.3 ms of 3.1 before that order.
    let before = m.start.checked_sub(1).map(|i| bytes[i]);
    let after = bytes.get(m.end).copied();
    // A `.pgpass` file's customary first line: `# hostname:port:database:username:password`.
    if before == Some(b':') {
        let line = &bytes[line_start(bytes, m.start)..line_end(bytes, m.end)];
        let heading = line.trim_ascii();
        let heading = heading.strip_prefix(b"#").unwrap_or(heading).trim_ascii();
        if heading.eq_ignore_ascii_case(b"hostname:port:database:username:password") {
            return crate::connection::pgpass_lines(bytes, line_end(bytes, m.end));
        }
    }
    let csv_sep =
        |b: Option<u8>| b.is_none_or(|b| matches!(b, b',' | b';' | b'\t' | b'\r' | b'\n'));
    if csv_sep(before) && csv_sep(after) {
        if let Some(column) = csv_column(bytes, m.clone()) {
            return column;
        }
    }
    secret(bytes, m).into_iter().collect()
}

fn secret(bytes: &[u8], m: Range) -> Option<Range> {
    let next = bytes.get(m.end).copied();
    if next.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return None; // `passwords`, `passwordless`, `password_hash`
    }
    let end = line_end(bytes, m.end);
    if bytes[m.end..end].starts_with(b"-stdin") {
        return password_stdin(bytes, m);
    }
    // The identifier the keyword ends: `--db-password`, `DB_PASSWORD`, `the password`.
    let ident_start = bytes[..m.start]
        .iter()
        .rposition(|b| !(b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-'))
        .map_or(0, |i| i + 1);
    let flag = bytes[ident_start] == b'-';
    if flag {
        return flag_value(bytes, m.end, end);
    }
    let spaced = matches!(next, Some(b' ' | b'\t'));
    let word_start = m.start == 0 || bytes[m.start - 1].is_ascii_whitespace();
    if spaced && word_start {
        if let Some(found) = netrc(bytes, m.clone(), end) {
            return Some(found);
        }
    }
    if spaced {
        if let Some(found) = sql(bytes, m.clone(), end) {
            return Some(found);
        }
    }
    let after = if spaced || next == Some(b':') {
        prose_after(bytes, m.clone(), end)
    } else {
        None
    };
    // "use X as the password": ` as ` shortly before.
    after.or_else(|| {
        contains(&bytes[m.start.saturating_sub(24)..m.start], b" as ")
            .then(|| prose_before(bytes, m))
            .flatten()
    })
}

/// `--password X`: the next word, when it is a literal.
fn flag_value(bytes: &[u8], from: usize, end: usize) -> Option<Range> {
    if !matches!(bytes.get(from), Some(b' ' | b'\t')) {
        return None; // `--password=` is an assignment; `--password-file` another flag
    }
    let w = word(bytes, from, end)?;
    let v = &bytes[w.range.clone()];
    if v.len() < 3 || placeholder(v) || path_or_url(v) {
        return None;
    }
    if !w.quoted && matches!(v[0], b'-' | b'|' | b'>' | b'&' | b'\\' | b'(') {
        return None; // another flag, a pipe, a redirection, a line continuation
    }
    // A sentence about the flag: `Using --password via the CLI is insecure`.
    if !w.quoted && v.iter().all(u8::is_ascii_lowercase) {
        let after = word(bytes, w.next, end);
        if after.is_some_and(|a| bytes[a.range].iter().all(u8::is_ascii_alphabetic)) {
            return None;
        }
    }
    Some(w.range)
}

/// `echo X | … --password-stdin`, `printf '%s' X | …`, `… --password-stdin <<< X`.
fn password_stdin(bytes: &[u8], m: Range) -> Option<Range> {
    let start = line_start(bytes, m.start);
    let end = line_end(bytes, m.end);
    // A here-string after the flag.
    if let Some(i) = crate::text::find(&bytes[m.end..end], b"<<<") {
        let w = word(bytes, m.end + i + 3, end)?;
        return literal_piped(bytes, w);
    }
    // The `echo`/`printf` before the last `|` that precedes the flag.
    let pipe = start + bytes[start..m.start].iter().rposition(|&b| b == b'|')?;
    let command_at = [&b"echo "[..], b"printf "]
        .iter()
        .filter_map(|c| {
            let line = &bytes[start..pipe];
            (0..line.len().saturating_sub(c.len() - 1))
                .rev()
                .find(|&i| {
                    line[i..].starts_with(c)
                        && (i == 0 || matches!(line[i - 1], b' ' | b'\t' | b'(' | b';' | b'&'))
                })
        })
        .max()?;
    let mut w = word(bytes, start + command_at, pipe)?;
    let command = &bytes[w.range.clone()];
    match command {
        b"echo" => {
            w = word(bytes, w.next, pipe)?;
            while !w.quoted && bytes[w.range.start] == b'-' {
                w = word(bytes, w.next, pipe)?; // `echo -n`
            }
        }
        b"printf" => {
            w = word(bytes, w.next, pipe)?;
            if contains(&bytes[w.range.clone()], b"%s") {
                w = word(bytes, w.next, pipe)?;
            }
        }
        _ => return None,
    }
    literal_piped(bytes, w)
}

fn literal_piped(bytes: &[u8], w: Word) -> Option<Range> {
    let v = &bytes[w.range.clone()];
    if v.len() < 3 || placeholder(v) || path_or_url(v) {
        return None;
    }
    Some(w.range)
}

/// `.netrc`: `machine h login u password X`, one entry per line or spread over lines (in
/// any order: a `machine` or `default` entry within 300 bytes before the keyword).
fn netrc(bytes: &[u8], m: Range, end: usize) -> Option<Range> {
    // Where `.netrc` puts the keyword: first on its line, or after `login <user>`. Checked
    // first: the search for `machine` below is what a sentence's "password" would pay.
    let start = line_start(bytes, m.start);
    let words = words_before(bytes, start, m.start);
    let placed = words.is_empty()
        || (words.len() >= 2 && bytes[words[words.len() - 2].clone()] == *b"login");
    if !placed {
        return None;
    }
    let from = m.start.saturating_sub(300);
    let before = &bytes[from..m.start];
    let word_at = |w: &[u8]| {
        before.windows(w.len() + 1).enumerate().any(|(i, win)| {
            win[..w.len()] == *w
                && matches!(win[w.len()], b' ' | b'\t')
                && (from + i == 0 || matches!(bytes[from + i - 1], b' ' | b'\t' | b'\n' | b'\r'))
        })
    };
    if !(word_at(b"machine") || (word_at(b"default") && word_at(b"login"))) {
        return None;
    }
    let w = word(bytes, m.end, end)?;
    let v = &bytes[w.range.clone()];
    if v.len() < 3 || placeholder(v) {
        return None;
    }
    Some(w.range)
}

/// SQL: `CREATE USER app WITH PASSWORD 'x'`, `ALTER ROLE app PASSWORD 'x'`.
fn sql(bytes: &[u8], m: Range, end: usize) -> Option<Range> {
    let w = word(bytes, m.end, end)?;
    if !(w.quoted && bytes[w.range.start - 1] == b'\'') {
        return None;
    }
    let statement = &bytes[m.start.saturating_sub(200)..m.start];
    if !(contains_ci(statement, b"user")
        || contains_ci(statement, b"role")
        || contains_ci(statement, b"with"))
    {
        return None;
    }
    let v = &bytes[w.range.clone()];
    let lower = v.to_ascii_lowercase();
    let md5 = lower.len() == 35 && lower.starts_with(b"md5");
    if v.len() < 3 || placeholder(v) || md5 || lower.starts_with(b"scram-sha-256$") {
        return None;
    }
    Some(w.range)
}

/// A CSV export (a password manager's, a user list): the keyword (or `secret`, `pass`,
/// `pwd`, `passcode`) is a whole field of a header line separated by `,`, `;` or tabs; the same field of each following row (up to
/// 200 rows) is a password, unless empty or a placeholder.
pub fn csv_column(bytes: &[u8], m: Range) -> Option<Vec<Range>> {
    let start = line_start(bytes, m.start);
    let end = line_end(bytes, m.end);
    let header = &bytes[start..end];
    let sep = [b',', b';', b'\t']
        .into_iter()
        .max_by_key(|&c| header.iter().filter(|&&b| b == c).count())?;
    let fields = csv_fields(bytes, start..end, sep);
    if fields.len() < 2 {
        return None;
    }
    let index = fields
        .iter()
        .position(|f| f.start == m.start && f.end == m.end)?;
    let mut found = Vec::new();
    for line in crate::text::lines_after(bytes, end).take(200) {
        let row = csv_fields(bytes, line, sep);
        if row.len() != fields.len() {
            break; // the table ended
        }
        let v = &bytes[row[index].clone()];
        if v.len() >= 3 && !placeholder(v) {
            found.push(row[index].clone());
        }
    }
    Some(found)
}

/// The fields of one CSV line (inside their quotes when quoted).
fn csv_fields(bytes: &[u8], line: Range, sep: u8) -> Vec<Range> {
    let mut out = Vec::new();
    let mut pos = line.start;
    loop {
        if bytes.get(pos) == Some(&b'"') {
            let close = bytes[pos + 1..line.end]
                .iter()
                .position(|&b| b == b'"')
                .map_or(line.end, |i| pos + 1 + i);
            out.push(pos + 1..close);
            pos = (close + 1).min(line.end);
            while pos < line.end && bytes[pos] != sep {
                pos += 1;
            }
        } else {
            let field_end = bytes[pos..line.end]
                .iter()
                .position(|&b| b == sep)
                .map_or(line.end, |i| pos + i);
            out.push(pos..field_end);
            pos = field_end;
        }
        if pos >= line.end {
            return out;
        }
        pos += 1; // the separator
        if out.len() > 64 {
            return out;
        }
    }
}

/// "the admin password for staging is X", "Password for the VPN: X", "password was X".
fn prose_after(bytes: &[u8], m: Range, end: usize) -> Option<Range> {
    let mut pos = m.end;
    // Up to six words before `is`/`was`/`remains` or a word ending in `:`; the keyword may
    // carry the colon itself (`Password: X` is an assignment, unless its value failed).
    if bytes.get(pos) == Some(&b':') {
        pos += 1;
    } else {
        let mut found = false;
        for _ in 0..7 {
            let w = word(bytes, pos, end)?;
            if w.quoted {
                return None;
            }
            let s = &bytes[w.range.clone()];
            pos = w.next;
            if matches!(
                s.to_ascii_lowercase().as_slice(),
                b"is" | b"was" | b"remains"
            ) {
                found = true;
                break;
            }
            let (name, colon) = match s.strip_suffix(b":") {
                Some(name) => (name, true),
                None => (s, false),
            };
            // Words of a sentence: letters, digits, `'`, `-`, `_`, `(staging)`. Anything
            // else (`}`, `=`) is code.
            // A host name inside (`on maria.prod.internal is`) is a word; a final `.` ends
            // the sentence.
            let wordish = |b: &u8| {
                b.is_ascii_alphanumeric() || matches!(b, b'\'' | b'-' | b'_' | b'(' | b')' | b'.')
            };
            if name.is_empty() || !name.iter().all(wordish) || name.ends_with(b".") {
                return None;
            }
            if colon {
                found = true;
                break;
            }
        }
        if !found {
            return None;
        }
    }
    let w = word(bytes, pos, end)?;
    prose_value(bytes, w)
}

/// "use X as the password", "try X as your passphrase".
fn prose_before(bytes: &[u8], m: Range) -> Option<Range> {
    let start = line_start(bytes, m.start);
    let words: Vec<Range> = words_before(bytes, start, m.start);
    let mut i = words.len();
    // Skip up to two articles or adjectives: `the`, `your`, `new`, `admin`.
    let mut skipped = 0;
    while i > 0 && skipped < 2 {
        let w = bytes[words[i - 1].clone()].to_ascii_lowercase();
        if w == b"as" {
            break;
        }
        if !w.iter().all(u8::is_ascii_lowercase) {
            return None;
        }
        i -= 1;
        skipped += 1;
    }
    if i < 3 || !bytes[words[i - 1].clone()].eq_ignore_ascii_case(b"as") {
        return None;
    }
    let verb = bytes[words[i - 3].clone()].to_ascii_lowercase();
    if !matches!(
        verb.as_slice(),
        b"use" | b"set" | b"try" | b"enter" | b"type" | b"with" | b"using" | b"chose" | b"picked"
    ) {
        return None;
    }
    let value = unquote(bytes, words[i - 2].clone());
    let quoted = value.start != words[i - 2].start;
    // Followed by `as`, the value has no sentence punctuation to strip: `Summer2024!`.
    prose_value(
        bytes,
        Word {
            range: value.clone(),
            quoted: true,
            next: value.end,
        },
    )
    .filter(|_| quoted || looks_like_password(&bytes[value.clone()]))
}

fn words_before(bytes: &[u8], start: usize, end: usize) -> Vec<Range> {
    let mut out = Vec::new();
    let mut pos = start;
    while pos < end {
        while pos < end && matches!(bytes[pos], b' ' | b'\t') {
            pos += 1;
        }
        let len = bytes[pos..end]
            .iter()
            .take_while(|b| !matches!(b, b' ' | b'\t'))
            .count();
        if len > 0 {
            out.push(pos..pos + len);
        }
        pos += len;
    }
    out
}

/// A value named in a sentence.
fn prose_value(bytes: &[u8], w: Word) -> Option<Range> {
    let mut r = w.range.clone();
    if w.quoted {
        let v = &bytes[r.clone()];
        return (v.len() >= 3 && !placeholder(v) && !path_or_url(v)).then_some(r);
    }
    // Sentence punctuation after the value is not part of it.
    while r.end > r.start && matches!(bytes[r.end - 1], b'.' | b',' | b';' | b'!' | b'?' | b')') {
        r.end -= 1;
    }
    looks_like_password(&bytes[r.clone()]).then_some(r)
}

/// An unquoted word in a sentence that is a password, not a word or code.
fn looks_like_password(v: &[u8]) -> bool {
    // The character classes first: they reject a sentence's next word (`never`, `stored`)
    // without the placeholder lists.
    let digits = v.iter().filter(|b| b.is_ascii_digit()).count();
    let symbol = v.iter().any(|b| !b.is_ascii_alphanumeric());
    let inner_upper = v.len() > 1
        && v[1..].iter().any(u8::is_ascii_uppercase)
        && v.iter().any(u8::is_ascii_lowercase);
    if !(digits > 0 || symbol || inner_upper) {
        return false;
    }
    if v.len() < 5 || placeholder(v) || path_or_url(v) || contains(v, b"@") {
        return false;
    }
    // Code: `req.body`, `config.db_password`, `getpass()`.
    if v.contains(&b'(') || (v.contains(&b'.') && v.split(|&b| b == b'.').all(crate::text::ident)) {
        return false;
    }
    digits < v.len() || v.len() >= 6
}
