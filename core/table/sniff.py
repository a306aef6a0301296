"""What kind of file is this? Decided by content, not by the name.

Analysts get `.xlsx` files that are really CSV, CSV files with no extension, and `.xls`
files that are web pages. The extension only breaks ties (csv vs tsv); everything else
comes from the first bytes and, for zip and OLE2 containers, from what is inside.
"""

from __future__ import annotations

import io
import zipfile
import zlib
from pathlib import Path

from batchgrid.core.util.errors import InputError

# Kinds this package reads.
XLSX, XLSB, XLS, ODS, CSV, PARQUET = "xlsx", "xlsb", "xls", "ods", "csv", "parquet"
XML2003, HTML = "xml2003", "html"  # Excel 2003 XML and HTML tables (often named .xls): markup.py
EXCEL_KINDS = (XLSX, XLSB, XLS, ODS)  # read through calamine
XLS_OLD = "xls-old"  # Excel 2.x-4.0 worksheets (BIFF2-4, no OLE2 container): biff.py (xlrd)
ENCRYPTED = "encrypted"  # an encrypted Office file (OLE2 EncryptedPackage): password.py decrypts it
MARKUP_KINDS = (XML2003, HTML)

OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")

# First bytes of files people mistake for spreadsheets -> how to name them in a message.
NOT_SPREADSHEETS = (
    (b"%PDF", "a PDF document"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"RIFF", "a media file"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"Rar!", "a RAR archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"{\\rtf", "an RTF document"),
    (b"SQLite format 3\x00", "an SQLite database"),
    (b"\x7fELF", "a program"),
)

# Streams whose name (UTF-16 in an OLE2 directory) marks an encrypted Office file.
_ENCRYPTED_MARKERS = ("EncryptionInfo".encode("utf-16-le"), "EncryptedPackage".encode("utf-16-le"))
_WORD_MARKER = "WordDocument".encode("utf-16-le")
_POWERPOINT_MARKER = "PowerPoint Document".encode("utf-16-le")
_OLE2_SCAN_LIMIT = 64 << 20  # bytes searched for stream names; directories sit well inside this


def detect(path: Path) -> str:
    """The kind of spreadsheet at `path`, or InputError naming what it is instead."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(4096)
    except IsADirectoryError:
        raise InputError(f"{path.name} is a folder, not a file") from None
    except PermissionError:
        raise InputError(f"{path.name}: permission denied (is it open in another program?)") from None
    except OSError as exc:
        raise InputError(f"{path.name} cannot be opened: {exc.strerror or exc}") from None
    if size == 0 or not head.strip(b"\x00 \t\r\n"):
        raise InputError(f"{path.name} is empty")
    if head.startswith(ZIP_MAGICS):
        return _zip_kind(path)
    if head.startswith(OLE2_MAGIC):
        return _ole2_kind(path)
    if head.startswith(b"PAR1"):
        return PARQUET
    if head.startswith((b"\x09\x00\x04\x00", b"\x09\x02\x06\x00", b"\x09\x04\x06\x00")):
        return XLS_OLD  # the BOF record of an Excel 2.x, 3.0 or 4.0 file
    for magic, what in NOT_SPREADSHEETS:
        if head.startswith(magic):
            raise InputError(f"{path.name} is not a spreadsheet (it looks like {what})")
    text_kind = _text_kind(head)
    if text_kind in MARKUP_KINDS:
        return text_kind
    if text_kind:
        raise InputError(f"{path.name} is not a spreadsheet Batchgrid can read (it looks like {text_kind}); "
                         "open it in Excel and save it as .xlsx or .csv")
    if _looks_binary(head):
        raise InputError(f"{path.name} is not a spreadsheet (it is a binary file of an unknown kind)")
    return CSV


def _zip_kind(path: Path) -> str:
    try:
        with zipfile.ZipFile(path) as z:
            names = {n.replace("\\", "/").lower(): n for n in z.namelist()}
            types = z.read(names["[content_types].xml"])[:100_000] if "[content_types].xml" in names else b""
            mimetype = z.read(names["mimetype"])[:100] if "mimetype" in names else b""
    except RuntimeError:  # zipfile: "File ... is encrypted" (zip encryption, which Office never uses)
        raise InputError(f"{path.name} cannot be read: its parts are encrypted as a zip archive; "
                         "Excel never does that, so the file is damaged or not a workbook") from None
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError, zlib.error):
        raise InputError(f"{path.name} is damaged or incomplete (it is not a readable zip/xlsx file)") from None
    if "xl/workbook.bin" in names or b"sheet.binary" in types:
        return XLSB
    if b"spreadsheetml" in types or b"ms-excel" in types or any(n.startswith("xl/") for n in names):
        return XLSX
    if b"opendocument.spreadsheet" in mimetype or ("content.xml" in names and not mimetype):
        return ODS
    if b"opendocument.text" in mimetype:
        what = "a text document (ODT)"
    elif b"opendocument" in mimetype:
        what = "an OpenDocument file that is not a spreadsheet"
    elif b"wordprocessingml" in types or any(n.startswith("word/") for n in names):
        what = "a Word document"
    elif b"presentationml" in types or any(n.startswith("ppt/") for n in names):
        what = "a PowerPoint presentation"
    else:
        what = "a zip archive"
    raise InputError(f"{path.name} is not a spreadsheet (it looks like {what})")


def _ole2_kind(path: Path) -> str:
    """Old binary Office files share one container: xls, doc, ppt, and encrypted xlsx."""
    found = _scan_for(path, (*_ENCRYPTED_MARKERS, _WORD_MARKER, _POWERPOINT_MARKER))
    if found & set(_ENCRYPTED_MARKERS):
        return ENCRYPTED
    if _WORD_MARKER in found:
        raise InputError(f"{path.name} is not a spreadsheet (it looks like a Word document)")
    if _POWERPOINT_MARKER in found:
        raise InputError(f"{path.name} is not a spreadsheet (it looks like a PowerPoint presentation)")
    return XLS


def decrypted_kind(data: bytes) -> str:
    """The kind of workbook a decrypted file holds."""
    if data.startswith(OLE2_MAGIC):
        return XLS
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            names = {n.replace("\\", "/").lower() for n in z.namelist()}
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        return XLSX  # calamine says what is wrong
    return XLSB if "xl/workbook.bin" in names else XLSX


def password_protected(path: Path) -> InputError:
    return InputError(f"{path.name}: the workbook is password-protected; "
                      "remove the password in Excel (File > Info > Protect Workbook) and try again")


def _scan_for(path: Path, needles: tuple[bytes, ...]) -> set[bytes]:
    """Which of `needles` occur in the first _OLE2_SCAN_LIMIT bytes (read in chunks)."""
    found: set[bytes] = set()
    overlap = max(len(n) for n in needles)
    tail = b""
    read = 0
    with open(path, "rb") as f:
        while read < _OLE2_SCAN_LIMIT:
            chunk = f.read(1 << 20)
            if not chunk:
                break
            read += len(chunk)
            window = tail + chunk
            found.update(n for n in needles if n in window)
            tail = window[-overlap:]
    return found


def _text_kind(head: bytes) -> str | None:
    """Text formats that are not delimited tables: Excel 2003 XML (XML2003), HTML pages (HTML:
    an HTML table saved as .xls is the commonest "Excel export" of web apps), other XML."""
    start = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if not start.startswith(b"<"):
        return None
    if b"urn:schemas-microsoft-com:office:spreadsheet" in head and b"<workbook" in start:
        return XML2003
    if b"<html" in start[:2000] or b"<table" in start[:2000] or start.startswith(b"<!doctype html"):
        return HTML
    if start.startswith(b"<?xml"):
        return "an XML file"
    return None


_CONTROL = bytes(b for b in range(32) if b not in b"\t\n\r\f\v\x1a\x1b")


def _looks_binary(head: bytes) -> bool:
    """Many control bytes mean binary, unless the text is UTF-16/32 (which the CSV reader decodes).
    A stray NUL in a CSV (a database export's padding) does not make it binary."""
    if head.startswith((b"\xff\xfe", b"\xfe\xff", b"\xef\xbb\xbf")):
        return False
    if wide_text_encoding(head) is not None:
        return False
    controls = len(head) - len(head.translate(None, _CONTROL))
    return controls > max(2, len(head) // 50)


def wide_text_encoding(head: bytes) -> str | None:
    """'utf-32-le'/'utf-32-be'/'utf-16-le'/'utf-16-be' when NUL bytes fall where ASCII text in
    that encoding has them (text without a BOM), else None."""
    sample = head[: len(head) - len(head) % 4][:4000]
    if len(sample) >= 8:
        quarter = len(sample) // 4
        nuls = [sample[i::4].count(0) for i in range(4)]
        if min(nuls[1:]) > 0.7 * quarter and nuls[0] < 0.1 * quarter:
            return "utf-32-le"
        if min(nuls[:3]) > 0.7 * quarter and nuls[3] < 0.1 * quarter:
            return "utf-32-be"
    return utf16_without_bom(head)


def utf16_without_bom(head: bytes) -> str | None:
    """'utf-16-le'/'utf-16-be' when every other byte is NUL (ASCII text in UTF-16), else None."""
    sample = head[: len(head) - len(head) % 2][:2000]
    if len(sample) < 4:
        return None
    even_nuls = sample[0::2].count(0)
    odd_nuls = sample[1::2].count(0)
    half = len(sample) // 2
    if odd_nuls > 0.7 * half and even_nuls < 0.1 * half:
        return "utf-16-le"
    if even_nuls > 0.7 * half and odd_nuls < 0.1 * half:
        return "utf-16-be"
    return None
