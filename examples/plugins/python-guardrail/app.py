"""Flags internal document ids, ``CONFIDENTIAL-`` followed by six digits: the Python twin
of examples/plugins/rust-guardrail (same patterns, same findings on every input).

* ``confidential-id``: the plain form. The host finds candidates with the declared regex;
  ``check`` drops the documentation placeholder ``CONFIDENTIAL-000000`` and ids glued to
  more digits, and redacts the rest as ``CONFIDENTIAL-######``.
* ``confidential-id-obfuscated``: the same id disguised with separators, zero-width
  characters or Cyrillic/Greek look-alike letters. A regex cannot express "this word,
  after Unicode folding, ignoring separators between any two letters", so ``scan`` does it.

Spans are byte offsets into the UTF-8 text (the WIT contract), while Python strings index
code points: ``check`` works on the UTF-8 bytes, ``scan`` keeps each character's byte offset.
"""

from typing import List, Optional

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


def match_at(text: str, offsets: List[int], k: int) -> int:
    """The end (a byte offset) of an id starting at character ``k``, within 160 bytes, or -1."""
    start = offsets[k]
    matched = 0
    for j in range(k, len(text)):
        if offsets[j] - start > MAX_SPAN:
            return -1
        b = fold(text[j])
        if b is None:
            return -1
        if b == "":
            continue
        ok = b == WORD[matched] if matched < len(WORD) else "0" <= b <= "9"
        if not ok:
            return -1
        matched += 1
        if matched == len(WORD) + DIGITS:
            return offsets[j + 1]
    return -1


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
        # offsets[k]: the byte offset of character k; offsets[len(text)]: the text's length.
        offsets = [0] * (len(text) + 1)
        for k, ch in enumerate(text):
            offsets[k + 1] = offsets[k] + utf8_len(ch)
        findings = []
        k = 0
        while k < len(text):
            # Every character a reader would take for a `C` may start an id.
            if fold(text[k]) != "C":
                k += 1
                continue
            end = match_at(text, offsets, k)
            if end < 0:
                k += 1
                continue
            start = offsets[k]
            # The plain form is the regex pattern's job.
            plain = end - start == PLAIN_LEN and text[k : k + len(PREFIX)] == PREFIX
            if not plain:
                findings.append(Finding(OBFUSCATED, Span(start, end), None))
            # Continue after the match: the character whose byte offset is `end`.
            while k < len(text) and offsets[k] < end:
                k += 1
        return findings
