//! Byte-level helpers every shape family uses: keywords, placeholders, lines and tokens.

use crate::Range;

/// The length of the password keyword `s` starts with (`password`, `passwd`, `passphrase`,
/// `pass`, `pwd`, any case), or 0.
pub fn keyword_len(s: &[u8]) -> usize {
    for k in [&b"passphrase"[..], b"password", b"passwd", b"pass", b"pwd"] {
        if s.len() >= k.len() && s[..k.len()].eq_ignore_ascii_case(k) {
            return k.len();
        }
    }
    0
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    find(haystack, needle).is_some()
}

pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

pub fn contains_ci(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.len() >= needle.len()
        && haystack
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle))
}

/// The start of the line holding `pos`.
pub fn line_start(bytes: &[u8], pos: usize) -> usize {
    bytes[..pos]
        .iter()
        .rposition(|&b| b == b'\n' || b == b'\r')
        .map_or(0, |i| i + 1)
}

/// The end of the line holding `pos` (the index of its `\r`/`\n`, or the text's end).
pub fn line_end(bytes: &[u8], pos: usize) -> usize {
    bytes[pos..]
        .iter()
        .position(|&b| b == b'\n' || b == b'\r')
        .map_or(bytes.len(), |i| pos + i)
}

/// The lines after `pos` (which is in or at the end of a line), without their line breaks:
/// the rows of a table or the entries of a file that follow its heading.
pub fn lines_after(bytes: &[u8], pos: usize) -> impl Iterator<Item = Range> + '_ {
    let mut pos = line_end(bytes, pos);
    core::iter::from_fn(move || {
        while pos < bytes.len() && matches!(bytes[pos], b'\r' | b'\n') {
            pos += 1;
        }
        if pos >= bytes.len() {
            return None;
        }
        let line = pos..line_end(bytes, pos);
        pos = line.end;
        Some(line)
    })
}

/// One shell-like word from `pos` (after skipping blanks): a quoted string (the range is
/// inside the quotes) or a run of non-blank characters. `None` at the line's end.
pub fn word(bytes: &[u8], mut pos: usize, end: usize) -> Option<Word> {
    while pos < end && matches!(bytes[pos], b' ' | b'\t') {
        pos += 1;
    }
    if pos >= end {
        return None;
    }
    let q = bytes[pos];
    if q == b'"' || q == b'\'' || q == b'`' {
        let close = bytes[pos + 1..end].iter().position(|&b| b == q)?;
        let inner = pos + 1..pos + 1 + close;
        return Some(Word {
            range: inner.clone(),
            quoted: true,
            next: inner.end + 1,
        });
    }
    // An unquoted word runs to a blank; a quoted part inside it (`-p'two words'`) is one.
    let mut i = pos;
    while i < end && !matches!(bytes[i], b' ' | b'\t') {
        if matches!(bytes[i], b'"' | b'\'') {
            if let Some(close) = bytes[i + 1..end].iter().position(|&b| b == bytes[i]) {
                i += close + 1;
            }
        }
        i += 1;
    }
    let len = i - pos;
    Some(Word {
        range: pos..pos + len,
        quoted: false,
        next: pos + len,
    })
}

/// A word of a command line or a sentence.
#[derive(Clone, Debug)]
pub struct Word {
    /// The word, inside its quotes when quoted.
    pub range: Range,
    pub quoted: bool,
    /// Where the next word may start.
    pub next: usize,
}

/// A value that a flag, a prose sentence or a file gives as a password: `-p'secret'` and
/// `'secret'` lose their quotes; a trailing `;` or `,` of an unquoted word is punctuation.
pub fn unquote(bytes: &[u8], r: Range) -> Range {
    let s = &bytes[r.clone()];
    if s.len() >= 2 && matches!(s[0], b'"' | b'\'') && s[s.len() - 1] == s[0] {
        return r.start + 1..r.end - 1;
    }
    r
}

/// Masks, templates, references and well-known placeholder words.
pub fn placeholder(v: &[u8]) -> bool {
    if v.is_empty() {
        return true;
    }
    if v.iter().all(|b| {
        matches!(
            b,
            b'*' | b'x'
                | b'X'
                | b'.'
                | b'#'
                | b'-'
                | b'_'
                | b'?'
                | b'0'
                | b'\xE2'
                | b'\x80'
                | b'\xA2'
        )
    }) {
        return true; // masks: `***`, `xxxx`, `••••` (U+2022 is E2 80 A2)
    }
    if matches!(v[0], b'$' | b'%' | b'{' | b'<' | b'[' | b'@' | b'#') {
        return true; // `$VAR`, `${VAR}`, `%VAR%`, `{{ x }}`, `<password>`, `[REDACTED]`
    }
    // YAML tags: `!vault |` (Ansible Vault), `!secret db_pw` (Home Assistant), `!Ref x`.
    if v[0] == b'!' && v.len() > 1 && v[1..].iter().all(u8::is_ascii_alphabetic) {
        return true;
    }
    if contains(v, b"{{") || contains(v, b"${") || contains(v, b"***") || contains(v, b"...") {
        return true;
    }
    if contains(v, b"$(") || contains(v, b"ANSIBLE_VAULT") {
        return true;
    }
    let lower = v.to_ascii_lowercase();
    const WORDS: &[&[u8]] = &[
        b"password",
        b"passwd",
        b"pass",
        b"pwd",
        b"passphrase",
        b"secret",
        b"redacted",
        b"hidden",
        b"masked",
        b"removed",
        b"filtered",
        b"null",
        b"none",
        b"nil",
        b"undefined",
        b"true",
        b"false",
        b"required",
        b"optional",
        b"string",
        b"str",
        b"&str",
        b"bool",
        b"int",
        b"number",
        b"text",
        b"any",
        b"bytes",
        b"secretstr",
        b"secretstring",
        b"char",
        b"varchar",
        b"object",
        b"env",
        b"todo",
        b"tbd",
        b"example",
        b"sample",
        b"placeholder",
        b"mypassword",
        b"my_password",
        b"my-password",
        b"new_password",
        b"old_password",
        b"user_password",
        b"db_password",
        b"enter",
        b"empty",
        b"blank",
        b"value",
        b"stdin",
        b"prompt",
    ];
    if WORDS.contains(&lower.as_slice()) {
        return true;
    }
    // `changeme`, `CHANGE_ME`, `change-me-please`, `replace-me`, `REPLACE_WITH_REAL`,
    // `changeit` (the JDK keystore's published default): words that ask to be replaced.
    let letters: Vec<u8> = lower
        .iter()
        .copied()
        .filter(u8::is_ascii_alphanumeric)
        .collect();
    const ASKS: &[&[u8]] = &[
        b"changeme",
        b"changeit",
        b"changethis",
        b"replaceme",
        b"replacewith",
        b"replacethis",
        b"setme",
        b"fillme",
        b"fillin",
        b"putyour",
        b"enteryour",
        b"yourpassword",
        b"notarealpassword",
        b"dummy",
    ];
    if ASKS.iter().any(|w| letters.starts_with(w)) {
        return true;
    }
    lower.starts_with(b"your") || lower.starts_with(b"<your") || lower.starts_with(b"insert")
}

/// A word that is an identifier (letters, digits, `_`, starting with a letter or `_`).
pub fn ident(w: &[u8]) -> bool {
    !w.is_empty()
        && (w[0].is_ascii_alphabetic() || w[0] == b'_')
        && w.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_')
}

/// Paths and URLs are not passwords.
pub fn path_or_url(v: &[u8]) -> bool {
    v[0] == b'/' || v.starts_with(b"~/") || v.starts_with(b"./") || contains(v, b"://")
}
