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
// are UTF-16: this module works on the UTF-8 bytes, so offsets need no conversion.

const PLAIN = "confidential-id";
const OBFUSCATED = "confidential-id-obfuscated";
const PLACEHOLDER = "CONFIDENTIAL-000000";
const PREFIX = "CONFIDENTIAL-";
const WORD = "CONFIDENTIAL";
const DIGITS = 6;
const PLAIN_LEN = 19;
const MAX_SPAN = 160;

// ------------------------------------------------------------------ UTF-8

/** The UTF-8 bytes of `text` (valid UTF-16 in, as the host only passes valid strings). */
function utf8(text) {
  const out = [];
  for (const ch of text) {
    const cp = ch.codePointAt(0);
    if (cp < 0x80) {
      out.push(cp);
    } else if (cp < 0x800) {
      out.push(0xc0 | (cp >> 6), 0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
      out.push(0xe0 | (cp >> 12), 0x80 | ((cp >> 6) & 0x3f), 0x80 | (cp & 0x3f));
    } else {
      out.push(
        0xf0 | (cp >> 18),
        0x80 | ((cp >> 12) & 0x3f),
        0x80 | ((cp >> 6) & 0x3f),
        0x80 | (cp & 0x3f),
      );
    }
  }
  return out;
}

/** The character at byte `i` of `s` and its length in bytes. */
function decode(s, i) {
  const b = s[i];
  if (b < 0x80) return [b, 1];
  if (b < 0xe0) return [((b & 0x1f) << 6) | (s[i + 1] & 0x3f), 2];
  if (b < 0xf0) return [((b & 0x0f) << 12) | ((s[i + 1] & 0x3f) << 6) | (s[i + 2] & 0x3f), 3];
  return [
    ((b & 0x07) << 18) | ((s[i + 1] & 0x3f) << 12) | ((s[i + 2] & 0x3f) << 6) | (s[i + 3] & 0x3f),
    4,
  ];
}

function bytesEqual(s, at, ascii) {
  for (let k = 0; k < ascii.length; k++) {
    if (s[at + k] !== ascii.charCodeAt(k)) return false;
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

/** "" for a separator to skip, the ASCII letter or digit a reader sees, or null (ends a match). */
function fold(cp) {
  if (cp >= 0x61 && cp <= 0x7a) return String.fromCharCode(cp - 0x20);
  if ((cp >= 0x41 && cp <= 0x5a) || (cp >= 0x30 && cp <= 0x39)) return String.fromCharCode(cp);
  if (SEPARATORS.has(cp)) return "";
  return LOOKALIKES.get(cp) ?? null;
}

const isDigit = (c) => c >= "0" && c <= "9";

/** The end of an id starting at byte `start`, within 160 bytes, or -1. */
function matchAt(s, start) {
  let matched = 0;
  for (let i = start; i < s.length; ) {
    if (i - start > MAX_SPAN) return -1;
    const [cp, len] = decode(s, i);
    const b = fold(cp);
    if (b === null) return -1;
    if (b !== "") {
      const ok = matched < WORD.length ? b === WORD[matched] : isDigit(b);
      if (!ok) return -1;
      matched += 1;
      if (matched === WORD.length + DIGITS) return i + len;
    }
    i += len;
  }
  return -1;
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
    const s = utf8(text);
    const findings = [];
    for (const span of candidates) {
      const placeholder =
        span.end - span.start === PLAIN_LEN && bytesEqual(s, span.start, PLACEHOLDER);
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
    const s = utf8(text);
    const findings = [];
    let pos = 0;
    while (pos < s.length) {
      const [cp, len] = decode(s, pos);
      // Every character a reader would take for a `C` may start an id.
      if (fold(cp) !== "C") {
        pos += len;
        continue;
      }
      const end = matchAt(s, pos);
      if (end < 0) {
        pos += len;
        continue;
      }
      // The plain form is the regex pattern's job.
      const plain = end - pos === PLAIN_LEN && bytesEqual(s, pos, PREFIX);
      if (!plain) {
        findings.push({ pattern: OBFUSCATED, span: { start: pos, end }, replacement: undefined });
      }
      pos = end;
    }
    return findings;
  },
};
