"""Which text encoding a delimited file is in, and what to tell the user about it.

A BOM wins (UTF-8, UTF-16, UTF-32); else UTF-32 or UTF-16 recognised by where its NUL bytes
fall; else UTF-8 when it decodes, or when its valid multi-byte characters outnumber its bad
bytes (a UTF-8 file with one pasted Windows line: read as UTF-8, the bad bytes shown as
U+FFFD and their lines named). Other text goes to charset-normalizer, on a bounded sample
taken where the first non-UTF-8 byte is: Cyrillic, Greek, CJK... take its answer; Latin
text stays Windows-1252, what Excel writes on Western Windows (charset-normalizer cannot
tell 1252 from 1250 or Latin-1 on a few accents), or Latin-1 when a byte is undefined in 1252.
"""

from __future__ import annotations

import codecs
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from .sniff import wide_text_encoding
from .textnotes import numbered

_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
_CP1252_UNDEFINED = bytes([0x81, 0x8D, 0x8F, 0x90, 0x9D])
_CHUNK = 1 << 20
_SAMPLE = 1 << 16  # bytes charset-normalizer judges: enough for any script, fast on any file
_FEWEST_LETTERS = 8  # below this, any code page fits a few accents: keep Windows-1252
_KEPT_OFFSETS = 10_000  # bad UTF-8 sequences whose lines are named or counted

# What the user reads: the script, and the name Windows and editors give the encoding.
_NAMES = {
    "cp1252": ("Western European", "windows-1252"), "latin-1": ("Western European", "Latin-1"),
    "cp1250": ("Central European", "windows-1250"), "cp1251": ("Cyrillic", "windows-1251"),
    "koi8_r": ("Cyrillic", "KOI8-R"), "koi8_u": ("Cyrillic", "KOI8-U"), "cp866": ("Cyrillic", "DOS 866"),
    "mac_cyrillic": ("Cyrillic", "Mac Cyrillic"), "iso8859_5": ("Cyrillic", "ISO-8859-5"),
    "cp1253": ("Greek", "windows-1253"), "iso8859_7": ("Greek", "ISO-8859-7"),
    "cp1254": ("Turkish", "windows-1254"), "cp1255": ("Hebrew", "windows-1255"),
    "iso8859_8": ("Hebrew", "ISO-8859-8"), "cp1256": ("Arabic", "windows-1256"),
    "iso8859_6": ("Arabic", "ISO-8859-6"), "cp1257": ("Baltic", "windows-1257"),
    "cp1258": ("Vietnamese", "windows-1258"), "cp874": ("Thai", "windows-874"), "tis_620": ("Thai", "TIS-620"),
    "cp932": ("Japanese", "Shift-JIS"), "euc_jp": ("Japanese", "EUC-JP"), "iso2022_jp": ("Japanese", "ISO-2022-JP"),
    "gb18030": ("Simplified Chinese", "GBK/GB18030"), "big5": ("Traditional Chinese", "Big5"),
    "cp950": ("Traditional Chinese", "Big5"), "big5hkscs": ("Traditional Chinese", "Big5-HKSCS"),
    "cp949": ("Korean", "EUC-KR/CP949"), "johab": ("Korean", "Johab"),
}
# charset-normalizer's answer -> the Windows superset that decodes the same text and more.
_SUPERSETS = {"shift_jis": "cp932", "shift_jis_2004": "cp932", "shift_jisx0213": "cp932",
              "gb2312": "gb18030", "gbk": "gb18030", "hz": "gb18030", "euc_kr": "cp949"}


@dataclass
class Encoding:
    """How to decode a text file, and one-line notes for the user about it."""

    name: str
    notes: list[str] = field(default_factory=list)


def detect(path: Path, max_bytes: int | None = None) -> Encoding:
    """The text encoding of `path`, judged from all of it (or its first `max_bytes`)."""
    with open(path, "rb") as f:
        head = f.read(4096)
    for bom, name in _BOMS:
        if head.startswith(bom):
            return Encoding(name)
    wide = wide_text_encoding(head)
    if wide:
        return Encoding(wide)
    scan = _Utf8Scan()
    with open(path, "rb") as f:
        while (max_bytes is None or scan.seen < max_bytes) and not scan.hopeless():
            chunk = f.read(_CHUNK)
            if not chunk:
                break
            scan.feed(chunk, final=False)
        if not scan.hopeless():
            scan.feed(b"", final=max_bytes is None or scan.seen < max_bytes)
    if not scan.bad:
        return Encoding("utf-8")
    if scan.multibyte >= scan.bad:
        lines = _line_numbers(path, scan.offsets)
        more = scan.bad > len(scan.offsets)
        what = numbered(lines, "line", more=more)
        verb = "has" if len(lines) == 1 and not more else "have"
        return Encoding("utf-8", [f"{what} {verb} bytes that are not valid UTF-8, shown as \ufffd"])
    name = _legacy_encoding(path, scan.offsets[0], max_bytes)
    script, label = _NAMES.get(name, ("", name))
    read_as = f"{script} text ({label})" if script else f"text in {label}"
    return Encoding(name, [f"read as {read_as}; if letters look wrong, save the file as UTF-8"])


class _Utf8Scan:
    """Counts bad UTF-8 sequences (keeping their offsets) and valid multi-byte characters."""

    def __init__(self) -> None:
        self.seen = 0
        self.bad = 0
        self.multibyte = 0  # bytes saved by multi-byte characters: at least their number
        self.offsets: list[int] = []
        self._carry = b""

    def hopeless(self) -> bool:
        """Clearly not UTF-8 (a Windows file full of accents): stop counting."""
        return self.bad > 100 and self.bad > 10 * self.multibyte

    def feed(self, chunk: bytes, final: bool) -> None:
        base = self.seen - len(self._carry)
        self.seen += len(chunk)
        data = self._carry + chunk
        if data.isascii():
            self._carry = b""
            return
        view = memoryview(data)
        start = 0
        while True:
            try:
                text, used = codecs.utf_8_decode(view[start:], "strict", final)
            except UnicodeDecodeError as exc:
                good, _ = codecs.utf_8_decode(view[start:start + exc.start], "strict", True)
                self.multibyte += exc.start - len(good)
                self.bad += 1
                if len(self.offsets) < _KEPT_OFFSETS:
                    self.offsets.append(base + start + exc.start)
                start += exc.end
                if self.hopeless():
                    return
                continue
            self.multibyte += used - len(text)
            self._carry = bytes(view[start + used:])
            return


def _line_numbers(path: Path, offsets: list[int]) -> list[int]:
    """The 1-based line of each byte offset (sorted, distinct); lines end in LF, or CR alone."""
    lines: list[int] = []
    with open(path, "rb") as f:
        head = f.read(_CHUNK)
        newline = b"\n" if b"\n" in head or b"\r" not in head else b"\r"
        f.seek(0)
        pos, count = 0, 0
        for offset in offsets:
            while pos < offset:
                chunk = f.read(min(_CHUNK, offset - pos))
                if not chunk:
                    break
                count += chunk.count(newline)
                pos += len(chunk)
            if not lines or lines[-1] != count + 1:
                lines.append(count + 1)
    return lines


def _legacy_encoding(path: Path, first_bad: int, max_bytes: int | None) -> str:
    """A non-UTF-8 file: charset-normalizer on a sample from the line of its first non-ASCII byte."""
    from charset_normalizer import from_bytes  # imported here: only non-UTF-8 files need it

    with open(path, "rb") as f:
        start = max(0, first_bad - 4096)
        f.seek(start)
        sample = f.read(first_bad - start + _SAMPLE)
    cut = sample.rfind(b"\n", 0, first_bad - start)
    sample = sample[cut + 1:]
    if len(sample) > _SAMPLE // 2 and b"\n" in sample[1:]:
        sample = sample[: sample.rindex(b"\n") + 1]  # whole lines: no character cut in two
    name = _likeliest(from_bytes(sample))
    if name in _NAMES:  # a legacy encoding we can name (not UTF-16 guessed from a few bytes, say)
        try:
            if _mostly_non_latin(sample.decode(name)):
                return name
        except UnicodeDecodeError:
            pass
    return "latin-1" if _has_undefined_1252(path, max_bytes) else "cp1252"


def _likeliest(matches) -> str:
    """charset-normalizer's best guess, or a Windows code page nearly as good (what files come in:
    it may rank Mac Cyrillic a hair above windows-1251 on a short sample)."""
    best = matches.best()
    if best is None:
        return ""
    close = [m.encoding for m in matches if m.chaos <= best.chaos + 0.1]
    name = next((e for e in close if e.startswith("cp") and e[2:].isdigit()), best.encoding)
    return _SUPERSETS.get(name, name)


def _mostly_non_latin(text: str) -> bool:
    """Most letters beyond ASCII belong to another script (Cyrillic, Greek, CJK...), and there are enough to tell."""
    letters = [c for c in text if ord(c) > 127 and c.isalpha()]
    other = sum(not unicodedata.name(c, "LATIN").startswith("LATIN") for c in letters)
    return len(letters) >= _FEWEST_LETTERS and other * 2 > len(letters)


def _has_undefined_1252(path: Path, max_bytes: int | None) -> bool:
    seen = 0
    with open(path, "rb") as f:
        while max_bytes is None or seen < max_bytes:
            chunk = f.read(_CHUNK)
            if not chunk:
                return False
            seen += len(chunk)
            if any(b in chunk for b in _CP1252_UNDEFINED):
                return True
    return False
