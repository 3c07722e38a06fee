//! `suspicious_commands`: destructive shell commands in model output (default action: block).
//!
//! Detected (each alternative of the regex starts with a literal, `check` parses the
//! command's words):
//! * `rm` (also as `/bin/rm`, `/usr/bin/rm`, and as an argv list `["rm", "-rf", "/"]`) with a
//!   recursive flag (`-r`, `-R`, `-rf`, `-fr`, `--recursive`, in any order, with
//!   or without `--no-preserve-root`, `sudo` before it) on `/`, `/*`, `~`, `~/`, `~/*`,
//!   `$HOME`, `${HOME}`, quoted or JSON-escaped (`"/"`, `\"/\"`), or a top-level system
//!   directory (`/etc`, `/usr`, `/var`, `/home`, `/bin`, `/boot`, `/lib`, `/root`, …) as a whole: `rm -rf /tmp/build`,
//!   `rm -rf /var/lib/apt/lists/*` and `rm -rf ~/.cache` are not flagged;
//! * a download piped into a shell: `curl … | sh`, `wget -qO- … | sudo bash`, `| zsh`, …;
//!   and a shell running a download: `bash <(curl …)`, `sh -c "$(curl …)"`,
//!   `source <(curl …)`, `. <(curl …)` (found from the `<(`, so a sentence's final `.` in a
//!   stream is not held back as a possible start);
//! * fork bombs: `:(){ :|:& };:` and the same with any function name and spacing
//!   (`bomb(){ bomb|bomb& };bomb`), Perl's `fork while fork`;
//! * `mkfs` / `mkfs.<fs>` on a device under `/dev/`; `dd … of=/dev/sd…` (and hd, vd, xvd,
//!   nvme, mmcblk, disk, md, dm-, mapper); `shred` of such a device; a redirection into a raw
//!   disk (`> /dev/sda`, `>> /dev/nvme0n1`);
//! * `chmod` with a recursive flag and mode `777` / `a+rwx` on `/`, `/*` or a top-level system
//!   directory.
//!
//! Precision rules in `check`: the command name must start a word (`farm -rf /`, `bash`
//! inside `rehash`, `add of=/dev/sda` are not commands); the target must end where the regex
//! ended (`/tmp/x` is not `/tmp`); between `mkfs`/`shred` and the device only options and
//! their arguments may appear, between `dd` and `of=` only `key=value` operands, so prose
//! ("mkfs creates a file system on /dev/sdb") is not a command; `curl … | shasum` is not a
//! shell; `/dev/null`, `/dev/zero` are not disks; fork-bomb names must all be the same.
//!
//! A response that *warns* about `rm -rf /` still contains the command and is flagged: the
//! pattern reports what is in the text, the action decides. Deliberately not detected:
//! `rm -rf *` or `.` (relative, context-dependent), `chown -R`, `find / -delete`,
//! PowerShell (`iwr … | iex`, `Remove-Item -Recurse C:\`), `curl … | python`, obfuscated
//! commands (base64-decoded, variables), commands whose arguments contain non-ASCII text.

use bitrouter_plugin::guardrail::*;

const ID: &str = "suspicious_commands";

/// Gaps between a command and its target are printable ASCII classes (not `[^\n|]`), so
/// every bound is in bytes and the automaton has no multi-byte UTF-8 states.
const REGEX: &str = concat!(
    // `rm …`; or the `rm` of an argv list (`["rm", "-rf", "/"]`: `subprocess.run`, JSON tool
    // arguments), which `check` widens back to its `[`. One alternative led by `rm`: each
    // alternative is a prefiltered pass over the text, and a pass led by `[` cost 10 µs more
    // on the 394 KB near-miss corpus.
    r#"rm(?:(?:[ \t]{1,8}-{1,2}[A-Za-z-]{1,24}){1,4}[ \t]{1,8}(?:\\?["'])?(?:/[A-Za-z0-9]{0,8}|~|\$\{?HOME\}?)(?:\\?["'])?/?\*?(?:\\?["'])?(?:[ \t]{1,8}--no-preserve-root)?"#,
    r#"|["'](?:[ \t]{0,4},[ \t]{0,4}["']-{1,2}[A-Za-z-]{1,24}["']){1,4}[ \t]{0,4},[ \t]{0,4}["'](?:/[A-Za-z0-9]{0,8}|~)/?\*?["'][ \t]{0,4}\])"#,
    r"|(?:curl|wget)[ \t][\t\x20-\x7B\x7D\x7E]{1,160}\|[ \t]{0,4}(?:sudo(?:[ \t]{1,4}-{1,2}[A-Za-z]{1,12}){0,3}[ \t]{1,4})?(?:/usr)?(?:/bin/)?(?:ba|z|da|k|fi)?sh",
    // a shell running a download; or the `<(curl …)` that `source` or `.` runs, which `check`
    // widens back to that word (an alternative led by `.` kept every sentence's last `. ` of
    // a streamed answer held back, as a possible start); in one alternative (one pass)
    r#"|(?:(?:ba|z|da|k)?sh[ \t]{1,4}(?:-[A-Za-z]{1,4}[ \t]{1,4})?(?:\\?["'])?(?:<\(|\$\()[ \t]{0,2}|<\( ?)(?:curl|wget)[ \t][\t\x20-\x28\x2A-\x7E]{1,160}\)"#,
    r"|\(\)[ \t]{0,4}\{[ \t]{0,4}[A-Za-z0-9_:.]{1,16}[ \t]{0,4}\|[ \t]{0,4}[A-Za-z0-9_:.]{1,16}[ \t]{0,4}&",
    r"|fork[ \t]{1,4}while[ \t]{1,4}fork",
    r"|mkfs(?:\.[A-Za-z0-9]{1,10})?[ \t][\t\x20-\x25\x27-\x3A\x3C-\x7B\x7D\x7E]{0,64}/dev/[A-Za-z][A-Za-z0-9/_-]{0,32}",
    r"|dd[ \t][\t\x20-\x25\x27-\x3A\x3C-\x7B\x7D\x7E]{0,128}of=/dev/(?:sd|hd|vd|xvd|nvme|mmcblk|r?disk|md|dm-|mapper/)[A-Za-z0-9/_-]{0,32}",
    r#"|chmod(?:[ \t]{1,4}(?:-{1,2}[A-Za-z]{1,12}|0?777|[ugoa]{1,3}[+=]rwx)){2,4}[ \t]{1,8}["']?/[A-Za-z0-9]{0,8}/?\*?["']?"#,
    r"|>[ \t]{0,4}/dev/(?:sd[a-z]|hd[a-z]|vd[a-z]|xvd[a-z]|nvme[0-9]|mmcblk[0-9]|r?disk[0-9])[A-Za-z0-9]{0,8}",
    r"|shred[ \t][\t\x20-\x25\x27-\x3A\x3C-\x7B\x7D\x7E]{0,64}/dev/(?:sd|hd|vd|xvd|nvme|mmcblk|r?disk|md)[A-Za-z0-9/_-]{0,32}",
);
/// The longest alternative (`curl … | sudo … bash`, 160 bytes of arguments) is at most 245
/// bytes; a raw-disk redirection is widened back to its command, at most 185 bytes in all.
/// 256 keeps the host's streaming window (4 × the longest) at its default of 1 KiB.
const MAX_LEN: u32 = 256;

struct SuspiciousCommands;

impl Guardrail for SuspiciousCommands {
    fn describe() -> Vec<Pattern> {
        vec![
            Pattern::new(
                ID,
                "Destructive shell commands: rm -rf /, curl | sh, fork bombs, mkfs, dd to a \
                 disk, chmod -R 777 /, writes to raw disks, shred",
            )
            .directions(Directions::RESPONSE)
            .action(Action::Block)
            .regex(REGEX)
            .max_match_len(MAX_LEN),
        ]
    }

    fn check(_pattern: &str, text: &str, candidates: Vec<Span>) -> Vec<Finding> {
        candidates
            .into_iter()
            .filter_map(|span| command(text, span.range()))
            .map(|r| Finding::new(ID, Span::new(r.start, r.end)))
            .collect()
    }
}

type Range = core::ops::Range<usize>;

const SYSTEM_DIRS: &[&[u8]] = &[
    b"bin", b"boot", b"dev", b"etc", b"home", b"lib", b"lib32", b"lib64", b"opt", b"proc", b"root",
    b"sbin", b"srv", b"sys", b"usr", b"var",
];
const NOT_DISKS: &[&[u8]] = &[
    b"null", b"zero", b"random", b"urandom", b"stdin", b"stdout", b"stderr", b"tty", b"full",
];

fn command(text: &str, m: Range) -> Option<Range> {
    let bytes = text.as_bytes();
    let s = &bytes[m.clone()];
    match s[0] {
        b'(' => return fork_bomb(bytes, m),
        b'>' => return raw_disk_write(bytes, m),
        b'<' => return sourced_download(bytes, m),
        _ => {}
    }
    // Every other alternative starts with a command name, which must start a word, or end
    // a path to a system binary directory (`/bin/rm -rf /`, `/usr/bin/curl … | sh`), which
    // the finding then includes.
    if s.starts_with(b"rm\"") || s.starts_with(b"rm'") {
        return argv_rm(bytes, m);
    }
    let start = command_start(bytes, m.start)?;
    // A quote the target did not open closes the text around the command (a JSON string:
    // `"rm -rf \"/\""`): not part of the finding.
    let m = if s.starts_with(b"rm") && unopened_quote(s) {
        m.start..m.end - 1
    } else {
        m
    };
    let s = &bytes[m.clone()];
    let ok = if s.starts_with(b"rm") {
        rm(s) && target_ends(bytes, m.end)
    } else if s.starts_with(b"curl") || s.starts_with(b"wget") {
        // `| shasum`, `| sh2`: not a shell.
        !bytes.get(m.end).copied().is_some_and(is_word)
    } else if s.starts_with(b"fork") {
        !bytes.get(m.end).copied().is_some_and(is_word)
    } else if s.starts_with(b"mkfs") || s.starts_with(b"shred") {
        options_then_device(s) && !bytes.get(m.end).copied().is_some_and(is_path)
    } else if s.starts_with(b"dd") {
        operands_then_device(s) && !bytes.get(m.end).copied().is_some_and(is_path)
    } else if s.starts_with(b"chmod") {
        chmod(s) && target_ends(bytes, m.end)
    } else {
        // `bash <(curl …)`, `sh -c "$(curl …)"`
        true
    };
    ok.then_some(start..m.end)
}

/// Whether `s` ends with a quote that makes its count of that quote odd.
fn unopened_quote(s: &[u8]) -> bool {
    match s.last() {
        Some(&q @ (b'"' | b'\'')) => s.iter().filter(|&&b| b == q).count() % 2 == 1,
        _ => false,
    }
}

/// `source <(curl …)`, `. <(curl …)`: the match starts at `<(`; the word before it (after
/// blanks) must be `source` or `.`, starting a word. Other commands reading a download
/// (`diff <(curl …) <(curl …)`) are not running it.
fn sourced_download(bytes: &[u8], m: Range) -> Option<Range> {
    let mut end = m.start;
    while end > 0 && matches!(bytes[end - 1], b' ' | b'\t') {
        end -= 1;
    }
    if end == m.start {
        return None;
    }
    let start = [&b"source"[..], b"."]
        .iter()
        .find_map(|w| bytes[..end].ends_with(w).then(|| end - w.len()))?;
    (start == 0 || !is_word(bytes[start - 1])).then_some(start..m.end)
}

/// Where the command whose name starts at `at` starts: `at` when the name starts a word,
/// the start of a system binary directory before it ([`bin_dir_before`]) when that starts a
/// word; `None` otherwise.
fn command_start(bytes: &[u8], at: usize) -> Option<usize> {
    if at == 0 || !is_word(bytes[at - 1]) {
        return Some(at);
    }
    let start = bin_dir_before(bytes, at);
    (start < at && (start == 0 || !is_word(bytes[start - 1]))).then_some(start)
}

/// The start of `/bin/`, `/sbin/`, `/usr/bin/`, `/usr/sbin/`, `/usr/local/bin/` or
/// `/usr/local/sbin/` if one ends at `at`, else `at`.
fn bin_dir_before(bytes: &[u8], at: usize) -> usize {
    const DIRS: &[&[u8]] = &[
        b"/usr/local/bin/",
        b"/usr/local/sbin/",
        b"/usr/bin/",
        b"/usr/sbin/",
        b"/bin/",
        b"/sbin/",
    ];
    DIRS.iter()
        .find(|d| bytes[..at].ends_with(d))
        .map_or(at, |d| at - d.len())
}

/// `["rm", "-rf", "/"]`, `['/bin/rm', …]`: the match starts at the `rm`; the list starts at
/// the `[` before its quote (and a `/bin/` or `/usr/bin/`). Its words, read as the command
/// line they make, must be a dangerous `rm`.
fn argv_rm(bytes: &[u8], m: Range) -> Option<Range> {
    let mut start = bin_dir_before(bytes, m.start);
    let quote = bytes[m.start + 2];
    start = start.checked_sub(1).filter(|&i| bytes[i] == quote)?;
    if start > 0 && bytes[start - 1] == b' ' {
        start -= 1;
    }
    start = start.checked_sub(1).filter(|&i| bytes[i] == b'[')?;
    let line: Vec<u8> = bytes[m.start..m.end]
        .split(|&b| b == b',')
        .map(|w| {
            w.iter()
                .copied()
                .filter(|&b| !matches!(b, b']' | b'"' | b'\'' | b' ' | b'\t'))
                .collect::<Vec<u8>>()
        })
        .collect::<Vec<_>>()
        .join(&b' ');
    rm(&line).then_some(start..m.end)
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'/')
}

fn is_path(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'/' | b'~' | b'*' | b'$')
}

/// The target the regex took is the whole argument, not the start of a longer path.
fn target_ends(bytes: &[u8], end: usize) -> bool {
    !bytes.get(end).copied().is_some_and(is_path)
}

fn words(s: &[u8]) -> impl Iterator<Item = &[u8]> {
    s.split(|b| *b == b' ' || *b == b'\t')
        .filter(|w| !w.is_empty())
}

/// `/`, `/*`, a top-level system directory (with `/` or `/*`), or (when `home`) the home
/// directory.
fn dangerous_target(w: &[u8], home: bool) -> bool {
    let w: Vec<u8> = w
        .iter()
        .copied()
        .filter(|&b| !matches!(b, b'"' | b'\'' | b'\\'))
        .collect();
    let w = w.as_slice();
    let w = w.strip_suffix(b"*").unwrap_or(w);
    let w = w.strip_suffix(b"/").unwrap_or(w);
    if w.is_empty() {
        return true; // `/`, `/*`
    }
    if home && matches!(w, b"~" | b"$HOME" | b"${HOME}") {
        return true;
    }
    w.strip_prefix(b"/")
        .is_some_and(|d| SYSTEM_DIRS.contains(&d))
}

fn rm(s: &[u8]) -> bool {
    let mut recursive = false;
    let mut target = None;
    for w in words(&s[2..]) {
        if w == b"--recursive" {
            recursive = true;
        } else if w.starts_with(b"--") {
            // --force, --no-preserve-root, --verbose, `--`
        } else if let Some(flags) = w.strip_prefix(b"-") {
            recursive |= flags.iter().any(|&b| b == b'r' || b == b'R');
        } else if target.is_none() {
            target = Some(w);
        } else {
            return false;
        }
    }
    recursive && target.is_some_and(|t| dangerous_target(t, true))
}

fn chmod(s: &[u8]) -> bool {
    let (mut recursive, mut mode, mut target) = (false, false, None);
    for w in words(&s[5..]) {
        if w == b"--recursive" {
            recursive = true;
        } else if let Some(flags) = w.strip_prefix(b"-").filter(|f| !f.starts_with(b"-")) {
            recursive |= flags.contains(&b'R');
        } else if matches!(w, b"777" | b"0777") || w.ends_with(b"+rwx") || w.ends_with(b"=rwx") {
            mode = true;
        } else if !w.starts_with(b"--") {
            target = Some(w);
        }
    }
    recursive && mode && target.is_some_and(|t| dangerous_target(t, false))
}

/// `mkfs[.fs] [options] /dev/…`, `shred [options] /dev/…`: each word before the device is an
/// option or the one argument of the option before it.
fn options_then_device(s: &[u8]) -> bool {
    let mut after_option = false;
    let mut words = words(s).skip(1).peekable();
    while let Some(w) = words.next() {
        if words.peek().is_none() {
            let device = w.strip_prefix(b"/dev/").unwrap_or(b"");
            return !device.is_empty() && !NOT_DISKS.contains(&device);
        }
        if w.starts_with(b"-") {
            after_option = !w.contains(&b'=');
        } else if after_option {
            after_option = false;
        } else {
            return false;
        }
    }
    false
}

/// `dd if=… bs=… of=/dev/sdX`: only `key=value` operands before `of=`.
fn operands_then_device(s: &[u8]) -> bool {
    words(&s[2..]).all(|w| w.contains(&b'=') && w[0].is_ascii_alphabetic())
}

/// `NAME(){ NAME|NAME& };NAME` — the match starts at `()`.
fn fork_bomb(bytes: &[u8], m: Range) -> Option<Range> {
    let name_ok = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b':' | b'.');
    // `: () { : | : & } ; :`: blanks between the name and `()`.
    let mut name_end = m.start;
    while name_end > 0 && matches!(bytes[name_end - 1], b' ' | b'\t') && m.start - name_end < 4 {
        name_end -= 1;
    }
    let mut start = name_end;
    while start > 0 && name_ok(bytes[start - 1]) && name_end - start < 16 {
        start -= 1;
    }
    let name = &bytes[start..name_end];
    if name.is_empty() || (start > 0 && name_ok(bytes[start - 1])) {
        return None;
    }
    let inner = &bytes[m.clone()];
    let body = &inner[inner.iter().position(|&b| b == b'{')? + 1..inner.len() - 1];
    let mut parts = body.split(|&b| b == b'|').map(|p| p.trim_ascii());
    if parts.next()? != name || parts.next()? != name {
        return None;
    }
    // Widen over `};NAME` when it follows.
    let mut end = m.end;
    let rest = &bytes[end..bytes.len().min(end + 40)];
    let mut i = rest
        .iter()
        .take_while(|b| **b == b' ' || **b == b'\t')
        .count();
    if rest.get(i) == Some(&b'}') {
        i += 1;
        end = m.end + i;
        i += rest[i..]
            .iter()
            .take_while(|b| **b == b' ' || **b == b'\t')
            .count();
        if rest.get(i) == Some(&b';') {
            i += 1;
            i += rest[i..]
                .iter()
                .take_while(|b| **b == b' ' || **b == b'\t')
                .count();
            if rest[i..].starts_with(name)
                && !rest.get(i + name.len()).copied().is_some_and(name_ok)
            {
                end = m.end + i + name.len();
            }
        }
    }
    Some(start..end)
}

/// `… > /dev/sdX`: widened back to the start of the command (after a newline, `;`, `&`,
/// `|`, a backtick or `$(`), at most 160 bytes.
fn raw_disk_write(bytes: &[u8], m: Range) -> Option<Range> {
    if bytes.get(m.end).copied().is_some_and(is_word) {
        return None;
    }
    // `=>` and `->` are arrows, not redirections.
    if m.start > 0 && matches!(bytes[m.start - 1], b'=' | b'-') {
        return None;
    }
    let floor = m.start.saturating_sub(160);
    let mut start = m.start;
    while start > floor && !matches!(bytes[start - 1], b'\n' | b';' | b'&' | b'|' | b'`' | b'(') {
        start -= 1;
    }
    // Indentation and a shell prompt (`$ `, `# `).
    let skip_blanks = |mut i: usize| {
        while i < m.start && matches!(bytes[i], b' ' | b'\t') {
            i += 1;
        }
        i
    };
    start = skip_blanks(start);
    if matches!(bytes.get(start..start + 2), Some(b"$ " | b"# ")) {
        start = skip_blanks(start + 2);
    }
    Some(start..m.end)
}

bitrouter_plugin::export_guardrail!(SuspiciousCommands);
