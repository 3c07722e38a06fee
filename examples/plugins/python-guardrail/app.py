"""Flags internal document ids, ``CONFIDENTIAL-`` followed by six digits: the Python twin
of examples/plugins/rust-guardrail (same patterns, same findings on every input).

* ``confidential-id``: the plain form. The host finds candidates with the declared regex;
  ``check`` drops the documentation placeholder ``CONFIDENTIAL-000000`` and ids glued to
  more digits, and redacts the rest as ``CONFIDENTIAL-######``.
* ``confidential-id-obfuscated``: the same id disguised with separators, zero-width
  characters or Cyrillic/Greek look-alike letters. A regex cannot express "this word,
  after Unicode folding, ignoring separators between any two letters", so ``scan`` does it.

Spans are byte offsets into the UTF-8 text (the WIT contract), while Python strings index
code points. CPython interprets Python, so a loop over every character of the text costs
milliseconds on a few kilobytes: the work proportional to the text's length is left to native
code (``re`` finds where an id may start, ``str.encode`` gives bytes and byte offsets), and
Python only looks at the few characters after each candidate start. ``check`` works on the
UTF-8 bytes; ``scan`` computes byte offsets only for findings.
"""

import re
from typing import List, Optional, Tuple

from wit_world import exports
from wit_world.imports.types import Action, Direction, Directions, Finding, Pattern, Span

PLAIN = "confidential-id"
OBFUSCATED = "confidential-id-obfuscated"
PLACEHOLDER = b"CONFIDENTIAL-000000"
PREFIX = "CONFIDENTIAL-"
WORD = "CONFIDENTIAL"
DIGITS = 6
PLAIN_LEN = 19
MAX_SPAN = 160

SEPARATORS = {" ", "-", "_", ".", "\u200b", "\u200c", "\u200d", "\u2060", "\ufeff"}

# Cyrillic and Greek capitals and lowercase that look like Latin letters.
LOOKALIKES = {
    "\u0410": "A", "\u0430": "A", "\u0391": "A",
    "\u0421": "C", "\u0441": "C", "\u03f9": "C",
    "\u0415": "E", "\u0435": "E", "\u0395": "E",
    "\u0406": "I", "\u0456": "I", "\u0399": "I",
    "\u041e": "O", "\u043e": "O", "\u039f": "O", "\u03bf": "O",
    "\u0422": "T", "\u03a4": "T",
    "\u041d": "N", "\u039d": "N",
    "\u216c": "L",
}  # fmt: skip


def fold(ch: str) -> Optional[str]:
    """What a reader sees: "" for a separator to skip, an ASCII letter or digit, or None
    for anything else (ends a match)."""
    if ("a" <= ch <= "z") or ("A" <= ch <= "Z") or ("0" <= ch <= "9"):
        return ch.upper()
    if ch in SEPARATORS:
        return ""
    return LOOKALIKES.get(ch)


def utf8_len(ch: str) -> int:
    cp = ord(ch)
    return 1 if cp < 0x80 else 2 if cp < 0x800 else 3 if cp < 0x10000 else 4


def folds_to(letter: str) -> str:
    """The characters fold() reads as ``letter``: itself, its lower case, its look-alikes."""
    return letter + letter.lower() + "".join(ch for ch, to in LOOKALIKES.items() if to == letter)


def char_class(chars: str) -> str:
    return "[" + "".join(f"\\u{ord(ch):04x}" for ch in chars) + "]"


# Where an id may start, found by the regex engine in native code. Every character a reader
# would take for a `C` (fold() gives "C") may start one; the lookahead keeps those followed by
# the rest of the id as fold() reads it (each letter as itself, its lower case or a look-alike,
# then six digits, separators anywhere between). It is only a filter: it cannot count the 160
# bytes, so match_at() still decides.
SEP = char_class("".join(sorted(SEPARATORS))) + "*"
C_LIKE = re.compile(
    char_class(folds_to(WORD[0]))
    + "(?="
    + "".join(SEP + char_class(folds_to(letter)) for letter in WORD[1:])
    + f"(?:{SEP}[0-9]){{{DIGITS}}})"
)


def match_at(text: str, k: int) -> Optional[Tuple[int, int]]:
    """The id starting at character ``k``, within 160 bytes: its end (a character index) and
    its length in UTF-8 bytes, or None."""
    matched = 0
    size = 0  # UTF-8 bytes from character k to character j
    for j in range(k, len(text)):
        if size > MAX_SPAN:
            return None
        ch = text[j]
        b = fold(ch)
        if b is None:
            return None
        size += utf8_len(ch)
        if b == "":
            continue
        ok = b == WORD[matched] if matched < len(WORD) else "0" <= b <= "9"
        if not ok:
            return None
        matched += 1
        if matched == len(WORD) + DIGITS:
            return j + 1, size
    return None


class Guard(exports.Guard):
    def configure(self, config: str) -> None:
        # Nothing to configure; raising componentize_py_types.Err(message) would refuse it.
        pass

    def describe(self) -> List[Pattern]:
        both = Directions.REQUEST | Directions.RESPONSE
        return [
            Pattern(
                id=PLAIN,
                directions=both,
                default_action=Action.REDACT,
                description="Internal document id (CONFIDENTIAL-NNNNNN)",
                regex=r"CONFIDENTIAL-\d{6}",
                max_match_len=PLAIN_LEN,
            ),
            Pattern(
                id=OBFUSCATED,
                directions=both,
                default_action=Action.BLOCK,
                description="Internal document id disguised with separators or look-alike letters",
                regex=None,
                max_match_len=MAX_SPAN,
            ),
        ]

    def check(self, pattern: str, text: str, candidates: List[Span]) -> List[Finding]:
        if not candidates:
            return []
        s = text.encode("utf-8")
        findings = []
        for span in candidates:
            placeholder = s[span.start : span.end] == PLACEHOLDER
            glued = s[span.end : span.end + 1].isdigit()
            if not placeholder and not glued:
                findings.append(
                    Finding(PLAIN, Span(span.start, span.end), "CONFIDENTIAL-######")
                )
        return findings

    def scan(self, direction: Direction, text: str) -> List[Finding]:
        findings = []
        resume = 0  # the character to continue from, after a match
        # A character index and its byte offset, moved forward to each finding's end: the
        # bytes between are counted (natively) only when there is a finding.
        at = 0
        at_byte = 0
        for m in C_LIKE.finditer(text):
            k = m.start()
            if k < resume:
                continue
            found = match_at(text, k)
            if found is None:
                continue
            end_k, size = found
            start = at_byte + len(text[at:k].encode("utf-8"))
            end = start + size
            # The plain form is the regex pattern's job.
            plain = size == PLAIN_LEN and text.startswith(PREFIX, k)
            if not plain:
                findings.append(Finding(OBFUSCATED, Span(start, end), None))
            # Continue after the match.
            at, at_byte = end_k, end
            resume = end_k
        return findings
