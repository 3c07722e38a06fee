// Flags internal document ids, `CONFIDENTIAL-` followed by six digits: the JavaScript twin
// of examples/plugins/rust-guardrail (same patterns, same findings on every input).
//
// * `confidential-id`: the plain form. The host finds candidates with the declared regex;
//   `check` drops the documentation placeholder `CONFIDENTIAL-000000` and ids glued to
//   more digits, and redacts the rest as `CONFIDENTIAL-######`.
// * `confidential-id-obfuscated`: the same id disguised with separators, zero-width
//   characters or Cyrillic/Greek look-alike letters. A regex cannot express "this word,
//   after Unicode folding, ignoring separators between any two letters", so `scan` does it.
//
// Spans are byte offsets into the UTF-8 text (the WIT contract), while JavaScript strings
// are UTF-16. StarlingMonkey interprets JavaScript, so a loop over every character of the
// text costs milliseconds on a few kilobytes: the work proportional to the text's length is
// left to the runtime's native code (a RegExp finds where an id may start, TextEncoder gives
// bytes and byte offsets), and JavaScript only looks at the few characters after each
// candidate start. Byte offsets are computed only for findings.

const PLAIN = "confidential-id";
const OBFUSCATED = "confidential-id-obfuscated";
const PLACEHOLDER = "CONFIDENTIAL-000000";
const PREFIX = "CONFIDENTIAL-";
const WORD = "CONFIDENTIAL";
const DIGITS = 6;
const PLAIN_LEN = 19;
const MAX_SPAN = 160;

// ------------------------------------------------------------------ UTF-8

const ENCODER = new TextEncoder();

/** The length in UTF-8 bytes of `text` from string index `from` to `to` (native code). */
function utf8Length(text, from, to) {
  return from === to ? 0 : ENCODER.encode(text.slice(from, to)).length;
}

const PLACEHOLDER_BYTES = ENCODER.encode(PLACEHOLDER);

function bytesEqual(s, at, bytes) {
  if (at + bytes.length > s.length) return false;
  for (let k = 0; k < bytes.length; k++) {
    if (s[at + k] !== bytes[k]) return false;
  }
  return true;
}

// ------------------------------------------------------------------ folding

const SEPARATORS = new Set([0x20, 0x2d, 0x5f, 0x2e, 0x200b, 0x200c, 0x200d, 0x2060, 0xfeff]);

// Cyrillic and Greek capitals and lowercase that look like Latin letters.
const LOOKALIKES = new Map([
  [0x0410, "A"], [0x0430, "A"], [0x0391, "A"],
  [0x0421, "C"], [0x0441, "C"], [0x03f9, "C"],
  [0x0415, "E"], [0x0435, "E"], [0x0395, "E"],
  [0x0406, "I"], [0x0456, "I"], [0x0399, "I"],
  [0x041e, "O"], [0x043e, "O"], [0x039f, "O"], [0x03bf, "O"],
  [0x0422, "T"], [0x03a4, "T"],
  [0x041d, "N"], [0x039d, "N"],
  [0x216c, "L"],
]);

// fold() of the ASCII characters, computed once (at build time: componentize-js snapshots
// the initialised module).
const ASCII_FOLD = Array.from({ length: 0x80 }, (_, cp) => {
  if (cp >= 0x61 && cp <= 0x7a) return String.fromCharCode(cp - 0x20);
  if ((cp >= 0x41 && cp <= 0x5a) || (cp >= 0x30 && cp <= 0x39)) return String.fromCharCode(cp);
  return SEPARATORS.has(cp) ? "" : null;
});

/** "" for a separator to skip, the ASCII letter or digit a reader sees, or null (ends a match). */
function fold(cp) {
  if (cp < 0x80) return ASCII_FOLD[cp];
  if (SEPARATORS.has(cp)) return "";
  return LOOKALIKES.get(cp) ?? null;
}

const isDigit = (c) => c >= "0" && c <= "9";

// Where an id may start, found by the RegExp engine in native code. Every character a reader
// would take for a `C` (fold() gives "C") may start one; the lookahead keeps those followed
// by the rest of the id as fold() reads it (each letter as itself, its lower case or a
// look-alike, then six digits, separators anywhere between). It is only a filter: it cannot
// count the 160 bytes, so matchAt() still decides. All C-likes are one UTF-16 unit, so after
// a failed candidate the search goes on at the next index.
function foldsTo(letter) {
  const chars = [letter.charCodeAt(0), letter.toLowerCase().charCodeAt(0)];
  for (const [cp, to] of LOOKALIKES) if (to === letter) chars.push(cp);
  return chars;
}
const charClass = (cps) => `[${cps.map((cp) => `\\u{${cp.toString(16)}}`).join("")}]`;
const SEP = `${charClass([...SEPARATORS])}*`;
const C_LIKE = new RegExp(
  `${charClass(foldsTo(WORD[0]))}(?=${[...WORD.slice(1)]
    .map((letter) => SEP + charClass(foldsTo(letter)))
    .join("")}(?:${SEP}[0-9]){${DIGITS}})`,
  "gu",
);

/**
 * The id starting at string index `start`, within 160 bytes: `{ end, bytes }` (its end as a
 * string index, and its length in UTF-8 bytes), or null.
 */
function matchAt(text, start) {
  let matched = 0;
  let bytes = 0; // UTF-8 bytes from `start` to `i`
  for (let i = start; i < text.length; i++) {
    if (bytes > MAX_SPAN) return null;
    // UTF-16 units: every character fold() accepts is in the BMP; half of a surrogate pair
    // (a character beyond it) folds to null and ends the match, as the character would.
    const cp = text.charCodeAt(i);
    const b = fold(cp);
    if (b === null) return null;
    bytes += cp < 0x80 ? 1 : cp < 0x800 ? 2 : 3;
    if (b !== "") {
      const ok = matched < WORD.length ? b === WORD[matched] : isDigit(b);
      if (!ok) return null;
      matched += 1;
      if (matched === WORD.length + DIGITS) return { end: i + 1, bytes };
    }
  }
  return null;
}

// ------------------------------------------------------------------ the contract

const BOTH = { request: true, response: true };

export const guard = {
  configure(_config) {
    // Nothing to configure: returning is `ok`, throwing a string would be `err`.
  },

  describe() {
    return [
      {
        id: PLAIN,
        directions: BOTH,
        defaultAction: "redact",
        description: "Internal document id (CONFIDENTIAL-NNNNNN)",
        regex: "CONFIDENTIAL-\\d{6}",
        maxMatchLen: PLAIN_LEN,
      },
      {
        id: OBFUSCATED,
        directions: BOTH,
        defaultAction: "block",
        description: "Internal document id disguised with separators or look-alike letters",
        regex: undefined,
        maxMatchLen: MAX_SPAN,
      },
    ];
  },

  check(_pattern, text, candidates) {
    if (candidates.length === 0) return [];
    // Spans are UTF-8 byte offsets: the text's bytes, encoded once by native code.
    const s = ENCODER.encode(text);
    const findings = [];
    for (const span of candidates) {
      const placeholder =
        span.end - span.start === PLAIN_LEN && bytesEqual(s, span.start, PLACEHOLDER_BYTES);
      const next = s[span.end];
      const glued = next !== undefined && next >= 0x30 && next <= 0x39;
      if (!placeholder && !glued) {
        findings.push({
          pattern: PLAIN,
          span: { start: span.start, end: span.end },
          replacement: "CONFIDENTIAL-######",
        });
      }
    }
    return findings;
  },

  scan(_direction, text) {
    const findings = [];
    // A string index and its UTF-8 offset, moved forward to each finding's end: the bytes
    // between are counted (natively) only when there is a finding.
    let from = 0;
    let fromByte = 0;
    C_LIKE.lastIndex = 0;
    for (let m; (m = C_LIKE.exec(text)) !== null; ) {
      const start = m.index;
      const found = matchAt(text, start);
      // No id here: the search goes on at the next character (C_LIKE.lastIndex).
      if (found === null) continue;
      const startByte = fromByte + utf8Length(text, from, start);
      const endByte = startByte + found.bytes;
      // The plain form is the regex pattern's job.
      const plain = found.bytes === PLAIN_LEN && text.startsWith(PREFIX, start);
      if (!plain) {
        findings.push({
          pattern: OBFUSCATED,
          span: { start: startByte, end: endByte },
          replacement: undefined,
        });
      }
      // Continue after the match.
      from = found.end;
      fromByte = endByte;
      C_LIKE.lastIndex = found.end;
    }
    return findings;
  },
};
