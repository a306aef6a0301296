"""Hostile and odd spreadsheet files, built by the tests (never downloaded).

Each builder writes one file of a kind real analysts meet (or an attacker makes) and
returns its path: a stray far cell, shared-strings bombs, a looping xls sector chain,
1,024 empty sheets, huge headers, UTF-32 text, SpreadsheetML 2003, HTML saved as .xls,
a password-protected workbook. Bombs are written as repeated deflate blocks, so a file
that unzips to gigabytes takes a moment to make.
"""

from __future__ import annotations

import struct
import zipfile
import zlib
from pathlib import Path

NS = 'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'
REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
PASSWORD = "s3cret-Pa55"


def xlsx_parts(sheets: dict[str, str], shared_strings: str | None = None, *, sheet_types: dict[str, str] | None = None,
               rels_xml: str | None = None) -> dict[str, bytes]:
    """The parts of a minimal xlsx: sheet name -> the <sheetData> body of its worksheet.

    `sheet_types` gives a sheet another part type ("macrosheet": an Excel 4.0 macro sheet)."""
    sheet_types = sheet_types or {}
    types = ['<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
             '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
             '<Default Extension="xml" ContentType="application/xml"/>'
             '<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>']
    entries, rels, parts = [], [], {}
    for i, (name, body) in enumerate(sheets.items(), 1):
        kind = sheet_types.get(name, "worksheet")
        folder, root, content = (("macrosheets", "xm:macrosheet", "application/vnd.ms-excel.macrosheet+xml")
                                 if kind == "macrosheet" else
                                 ("worksheets", "worksheet", "application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"))
        rel_type = "http://schemas.microsoft.com/office/2006/relationships/xlMacrosheet" if kind == "macrosheet" \
            else f"{REL}/worksheet"
        member = f"xl/{folder}/sheet{i}.xml"
        extra = ' xmlns:xm="http://schemas.microsoft.com/office/excel/2006/main"' if kind == "macrosheet" else ""
        parts[member] = f'<?xml version="1.0" encoding="UTF-8"?><{root} {NS}{extra}><sheetData>{body}</sheetData></{root}>'.encode()
        types.append(f'<Override PartName="/{member}" ContentType="{content}"/>')
        entries.append(f'<sheet name="{name}" sheetId="{i}" r:id="rId{i}"/>')
        rels.append(f'<Relationship Id="rId{i}" Type="{rel_type}" Target="{folder}/sheet{i}.xml"/>')
    if shared_strings is not None:
        types.append('<Override PartName="/xl/sharedStrings.xml" '
                     'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/>')
        rels.append(f'<Relationship Id="rIdS" Type="{REL}/sharedStrings" Target="sharedStrings.xml"/>')
        parts["xl/sharedStrings.xml"] = shared_strings.encode()
    types.append("</Types>")
    relationships = '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    parts.update({
        "[Content_Types].xml": "".join(types).encode(),
        "_rels/.rels": (f'<?xml version="1.0" encoding="UTF-8"?>{relationships}<Relationship Id="rId1" '
                        f'Type="{REL}/officeDocument" Target="xl/workbook.xml"/></Relationships>').encode(),
        "xl/workbook.xml": (f'<?xml version="1.0" encoding="UTF-8"?><workbook {NS} xmlns:r="{REL}"><sheets>'
                            + "".join(entries) + "</sheets></workbook>").encode(),
        "xl/_rels/workbook.xml.rels": (rels_xml if rels_xml is not None else
                                       f'<?xml version="1.0" encoding="UTF-8"?>{relationships}' + "".join(rels)
                                       + "</Relationships>").encode(),
    })
    return parts


def write_zip(path: Path, parts: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in parts.items():
            z.writestr(name, data)
    return path


def cell(ref: str, value) -> str:
    if isinstance(value, str):
        return f'<c r="{ref}" t="inlineStr"><is><t>{value}</t></is></c>'
    return f'<c r="{ref}"><v>{value}</v></c>'


def small_rows(rows: int = 3) -> str:
    """A1:B3 style data: a header (id, name) and rows-1 data rows."""
    out = [f'<row r="1">{cell("A1", "id")}{cell("B1", "name")}</row>']
    out += [f'<row r="{r}">{cell(f"A{r}", r - 1)}{cell(f"B{r}", f"n{r - 1}")}</row>' for r in range(2, rows + 1)]
    return "".join(out)


# ---- crashes and memory ------------------------------------------------------------------

def sparse_far_cell(path: Path) -> Path:
    """A1:B3 and one stray cell at XFD1048576: a dense grid of it would be 17 billion cells."""
    body = small_rows(3) + f'<row r="1048576">{cell("XFD1048576", 1)}</row>'
    return write_zip(path, xlsx_parts({"Data": body}))


def _bomb_zip(path: Path, members: dict[str, bytes], bomb_name: str, prefix: bytes, unit: bytes, repeat: int,
              suffix: bytes) -> Path:
    """A zip whose `bomb_name` member is prefix + unit * repeat + suffix, deflated cheaply (a
    full-flush block repeated), beside ordinary members. Declared sizes and CRC are true."""
    chunk = unit * max(1, (1 << 20) // len(unit))
    times, rest = divmod(repeat * len(unit), len(chunk))
    head = zlib.compressobj(9, zlib.DEFLATED, -15)
    start = head.compress(prefix) + head.flush(zlib.Z_FULL_FLUSH)
    block_maker = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = block_maker.compress(chunk) + block_maker.flush(zlib.Z_FULL_FLUSH)
    tail = zlib.compressobj(9, zlib.DEFLATED, -15)
    end = tail.compress(chunk[:rest] + suffix) + tail.flush()
    crc = zlib.crc32(prefix)
    for _ in range(times):
        crc = zlib.crc32(chunk, crc)
    crc = zlib.crc32(chunk[:rest] + suffix, crc)
    size = len(prefix) + times * len(chunk) + rest + len(suffix)
    compressed = len(start) + times * len(block) + len(end)

    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    # Append the bomb member by hand (zipfile cannot write pre-compressed data), then a new directory.
    with zipfile.ZipFile(path) as z:
        infos = z.infolist()
        directory_at = z.start_dir  # type: ignore[attr-defined]
    with open(path, "r+b") as f:
        f.seek(directory_at)
        f.truncate()
        offset = directory_at
        name = bomb_name.encode()
        f.write(struct.pack("<4s5H3L2H", b"PK\x03\x04", 45, 0, 8, 0, 0, crc, 0xFFFFFFFF, 0xFFFFFFFF, len(name), 20))
        f.write(name + struct.pack("<2H2Q", 1, 16, size, compressed))
        f.write(start)
        for _ in range(times):
            f.write(block)
        f.write(end)
        central = bytearray()
        for info in infos:
            central += _central_entry(info.filename.encode(), info.CRC, info.compress_size, info.file_size,
                                      info.header_offset, info.compress_type)
        extra = struct.pack("<2H3Q", 1, 24, size, compressed, offset)
        central += struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 45, 45, 0, 8, 0, 0, crc, 0xFFFFFFFF, 0xFFFFFFFF,
                               len(name), len(extra), 0, 0, 0, 0, 0xFFFFFFFF) + name + extra
        directory = f.tell()
        f.write(central)
        end_of_central = f.tell()
        count = len(infos) + 1
        f.write(struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, count, count, len(central), directory))
        f.write(struct.pack("<4sLQL", b"PK\x06\x07", 0, end_of_central, 1))
        f.write(struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, count, count, len(central), 0xFFFFFFFF, 0))
    return path


def _central_entry(name: bytes, crc: int, compressed: int, size: int, offset: int, method: int) -> bytes:
    return struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, method, 0, 0, crc, compressed, size,
                       len(name), 0, 0, 0, 0, 0, offset) + name


def shared_strings_one_huge(path: Path, gib: float = 1.5) -> Path:
    """The shared-strings part unzips to one string of `gib` GiB."""
    parts = xlsx_parts({"Data": '<row r="1"><c r="A1" t="s"><v>0</v></c></row>'}, shared_strings="")
    del parts["xl/sharedStrings.xml"]
    return _bomb_zip(path, parts, "xl/sharedStrings.xml", f'<sst {NS}><si><t>'.encode(), b"a",
                     int(gib * (1 << 30)), b"</t></si></sst>")


def shared_strings_many(path: Path, count: int = 60_000_000) -> Path:
    """The shared-strings part holds `count` empty strings."""
    parts = xlsx_parts({"Data": '<row r="1"><c r="A1" t="s"><v>0</v></c></row>'}, shared_strings="")
    del parts["xl/sharedStrings.xml"]
    return _bomb_zip(path, parts, "xl/sharedStrings.xml", f'<sst {NS} count="{count}">'.encode(), b"<si><t>x</t></si>",
                     count, b"</sst>")


def empty_sheets(path: Path, count: int = 1024) -> Path:
    return write_zip(path, xlsx_parts({f"Sheet{i}": "" for i in range(1, count + 1)}))


def corrupt_deflate(path: Path) -> Path:
    """An xlsx whose workbook part's deflate stream is garbage (CRC and sizes as declared)."""
    write_zip(path, xlsx_parts({"Data": small_rows()}))
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        info = z.getinfo("[Content_Types].xml")
    start = info.header_offset + 30 + len(info.filename.encode())
    data[start:start + info.compress_size] = bytes([0xFF]) * info.compress_size
    path.write_bytes(bytes(data))
    return path


def encrypted_member(path: Path) -> Path:
    """An xlsx whose members are flagged as encrypted (zip's traditional encryption bit)."""
    write_zip(path, xlsx_parts({"Data": small_rows()}))
    data = bytearray(path.read_bytes())
    pos = 0
    while (pos := data.find(b"PK\x03\x04", pos)) >= 0:
        data[pos + 6] |= 1
        pos += 4
    pos = 0
    while (pos := data.find(b"PK\x01\x02", pos)) >= 0:
        data[pos + 8] |= 1
        pos += 4
    path.write_bytes(bytes(data))
    return path


def malformed_rels(path: Path) -> Path:
    return write_zip(path, xlsx_parts({"Data": small_rows()}, rels_xml="<Relationships><Relationship Id="))


def looping_xls(path: Path, source: Path) -> Path | None:
    """`source` (a real xls) with its first FAT chain pointed back at itself: a sector chain that
    never ends. None when `source` has no chain to bend."""
    data = bytearray(source.read_bytes())
    if data[:8] != b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1":
        return None
    sector = 1 << struct.unpack_from("<H", data, 30)[0]
    first_fat = struct.unpack_from("<L", data, 76)[0]
    directory = struct.unpack_from("<L", data, 48)[0]
    fat_at = (first_fat + 1) * sector
    # The directory's chain: make its first sector point to itself.
    struct.pack_into("<L", data, fat_at + 4 * directory, directory)
    path.write_bytes(bytes(data))
    return path


# ---- hangs -------------------------------------------------------------------------------

def repeated_header_csv(path: Path, times: int = 16_384) -> Path:
    path.write_text(",".join(["name"] * times) + "\n" + ",".join(map(str, range(times))) + "\n", encoding="utf-8")
    return path


def million_fields_csv(path: Path, fields: int = 1_000_000) -> Path:
    path.write_text(",".join("x" for _ in range(fields)) + "\n", encoding="utf-8")
    return path


# ---- valid files refused ------------------------------------------------------------------

TEXT = "id,name\n1,Zoë\n2,Ünal\n"


def utf32_csv(path: Path, *, bom: bool) -> Path:
    path.write_bytes(TEXT.encode("utf-32" if bom else "utf-32-le"))
    return path


def csv_with_nul(path: Path) -> Path:
    path.write_bytes(b"id,name\n1,a\x00b\n2,c\n")
    return path


def spreadsheetml_2003(path: Path) -> Path:
    path.write_text(
        '<?xml version="1.0"?>\n<?mso-application progid="Excel.Sheet"?>\n'
        '<Workbook xmlns="urn:schemas-microsoft-com:office:spreadsheet" xmlns:ss="urn:schemas-microsoft-com:office:spreadsheet">\n'
        ' <Worksheet ss:Name="Report"><Table>\n'
        '  <Row><Cell><Data ss:Type="String">id</Data></Cell><Cell><Data ss:Type="String">name</Data></Cell>'
        '<Cell><Data ss:Type="String">when</Data></Cell></Row>\n'
        '  <Row><Cell><Data ss:Type="Number">1</Data></Cell><Cell><Data ss:Type="String">Zoë</Data></Cell>'
        '<Cell><Data ss:Type="DateTime">2024-01-31T00:00:00.000</Data></Cell></Row>\n'
        '  <Row><Cell ss:Index="2"><Data ss:Type="String">no id</Data></Cell></Row>\n'
        ' </Table></Worksheet>\n'
        ' <Worksheet ss:Name="Other"><Table><Row><Cell><Data ss:Type="String">x</Data></Cell></Row>'
        '<Row><Cell><Data ss:Type="Boolean">1</Data></Cell></Row></Table></Worksheet>\n'
        '</Workbook>\n', encoding="utf-8")
    return path


def html_as_xls(path: Path) -> Path:
    path.write_text(
        '<html><head><meta http-equiv="Content-Type" content="text/html; charset=utf-8"></head><body>\n'
        '<table border="1"><tr><th>id</th><th>name</th><th>amount</th></tr>\n'
        '<tr><td>1</td><td>Zoë</td><td>2.5</td></tr>\n<tr><td>2</td><td>Bob</td><td>10</td></tr></table>\n'
        '</body></html>\n', encoding="utf-8")
    return path


def macrosheet_workbook(path: Path) -> Path:
    return write_zip(path, xlsx_parts({"Macro1": f'<row r="1">{cell("A1", "=HALT()")}</row>', "Data": small_rows()},
                                      sheet_types={"Macro1": "macrosheet"}))


def blank_rows_then_data(path: Path, blank: int = 400, rows: int = 60_000) -> Path:
    """Formatted blank rows (a style, no value) and then a big table under them."""
    body = [f'<row r="{r}" s="0" customFormat="1"><c r="A{r}" s="0"/></row>' for r in range(1, blank + 1)]
    top = blank + 1
    body.append(f'<row r="{top}">{cell(f"A{top}", "id")}{cell(f"B{top}", "name")}</row>')
    body += [f'<row r="{r}"><c r="A{r}"><v>{r}</v></c><c r="B{r}"><v>{r * 2}</v></c></row>'
             for r in range(top + 1, top + 1 + rows)]
    return write_zip(path, xlsx_parts({"Data": "".join(body)}))


def password_xlsx(path: Path, password: str = PASSWORD) -> Path:
    """An xlsx encrypted with `password` (ECMA-376 agile encryption, as Excel does it)."""
    import io

    import openpyxl
    from msoffcrypto.format.ooxml import OOXMLFile

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "Secret"
    for row in (["id", "name"], [1, "Zoë"], [2, "Bob"]):
        sheet.append(row)
    plain = io.BytesIO()
    book.save(plain)
    plain.seek(0)
    with open(path, "wb") as out:
        OOXMLFile(plain).encrypt(password, out)
    return path


def utf16_part_xlsx(path: Path) -> Path:
    """An xlsx whose worksheet part is UTF-16 with a BOM (calamine reads it as empty)."""
    parts = xlsx_parts({"Data": small_rows()})
    xml = parts["xl/worksheets/sheet1.xml"].decode().replace('encoding="UTF-8"', 'encoding="UTF-16"')
    parts["xl/worksheets/sheet1.xml"] = xml.encode("utf-16")
    return write_zip(path, parts)


_ODS_CONTENT = (
    '<?xml version="1.0" encoding="UTF-8"?><office:document-content '
    'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
    'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
    'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" office:version="1.2">'
    '<office:body><office:spreadsheet><table:table table:name="Sheet1">\n  <table:table-row>\n'
    '    <table:table-cell office:value-type="string"><text:p>id</text:p></table:table-cell>\n'
    '    <table:table-cell office:value-type="string"><text:p>name</text:p></table:table-cell>\n  </table:table-row>\n'
    '  <table:table-row>\n    <table:table-cell office:value-type="float" office:value="1"><text:p>1</text:p></table:table-cell>\n'
    '    <table:table-cell office:value-type="string"><text:p>a b</text:p></table:table-cell>\n  </table:table-row>\n'
    '</table:table></office:spreadsheet></office:body></office:document-content>')
_ODS_MANIFEST = (
    '<?xml version="1.0" encoding="UTF-8"?><manifest:manifest xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0">'
    '<manifest:file-entry manifest:full-path="/" manifest:media-type="application/vnd.oasis.opendocument.spreadsheet"/>'
    '<manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml"/></manifest:manifest>')


def ods_with_whitespace(path: Path) -> Path:
    """An ODS with whitespace (indentation) between its cells, as some tools write it."""
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("mimetype", "application/vnd.oasis.opendocument.spreadsheet")
        z.writestr("META-INF/manifest.xml", _ODS_MANIFEST)
        z.writestr("content.xml", _ODS_CONTENT)
    return path


def ods_without_mimetype(path: Path) -> Path:
    import re

    with zipfile.ZipFile(path, "w") as z:
        z.writestr("META-INF/manifest.xml", _ODS_MANIFEST)
        z.writestr("content.xml", re.sub(r">\s+<", "><", _ODS_CONTENT))
    return path


def biff4_xls(path: Path) -> Path:
    """An Excel 4.0 worksheet (BIFF4: a bare record stream, no OLE2 container): id, name; 1, a; 2, b."""
    def record(kind: int, data: bytes) -> bytes:
        return struct.pack("<HH", kind, len(data)) + data

    def label(row: int, col: int, text: str) -> bytes:
        raw = text.encode("latin-1")
        return record(0x0204, struct.pack("<HHHH", row, col, 0, len(raw)) + raw)

    def number(row: int, col: int, value: float) -> bytes:
        return record(0x0203, struct.pack("<HHHd", row, col, 0, value))

    body = [record(0x0409, struct.pack("<HHH", 0, 0x0010, 0)),  # BOF: BIFF4 worksheet
            record(0x0042, struct.pack("<H", 1252)),               # CODEPAGE
            record(0x0231, struct.pack("<HHHB", 200, 0, 0x7FFF, 5) + b"Arial"),  # FONT
            record(0x0443, bytes(12)),                             # XF 0: a cell style, General
            record(0x0000, struct.pack("<HHHH", 0, 3, 0, 2)),      # DIMENSIONS
            label(0, 0, "id"), label(0, 1, "name"),
            number(1, 0, 1.0), label(1, 1, "Zoë"), number(2, 0, 2.0), label(2, 1, "b"),
            record(0x000A, b"")]                                   # EOF
    path.write_bytes(b"".join(body))
    return path


# ---- an xls with Excel's old "protect workbook" XOR obfuscation ---------------------------

def _record(kind: int, data: bytes) -> bytes:
    return struct.pack("<HH", kind, len(data)) + data


def _biff8_label(row: int, col: int, text: str) -> bytes:
    raw = text.encode("latin-1")
    return _record(0x0204, struct.pack("<HHHHB", row, col, 0, len(raw), 0) + raw)


def _biff8_number(row: int, col: int, value: float) -> bytes:
    return _record(0x0203, struct.pack("<HHHd", row, col, 0, value))


def biff8_workbook_stream(*, filepass: bytes | None = None) -> tuple[bytes, list[tuple[int, int, int]]]:
    """A BIFF8 Workbook stream (one sheet, 'Data': id, name; 1, a; 2, b) and its records as
    (offset, type, size). `filepass`: a FILEPASS record's data, put after the first BOF."""
    def bof(kind: int) -> bytes:
        return _record(0x0809, struct.pack("<HHHHII", 0x0600, kind, 0x0DBB, 0x07CC, 0, 0x06))

    sheet = b"".join([bof(0x0010), _record(0x0200, struct.pack("<IIHHH", 0, 3, 0, 2, 0)),
                      _record(0x0899, bytes(4096)),  # an unknown record: the stream must exceed 4 KB (no mini stream)
                      _biff8_label(0, 0, "id"), _biff8_label(0, 1, "name"),
                      _biff8_number(1, 0, 1.0), _biff8_label(1, 1, "a"), _biff8_number(2, 0, 2.0), _biff8_label(2, 1, "b"),
                      _record(0x000A, b"")])
    name = b"Data"
    head = [bof(0x0005)] + ([_record(0x002F, filepass)] if filepass is not None else []) + \
        [_record(0x0042, struct.pack("<H", 1200))]
    boundsheet_size = 4 + 4 + 2 + 2 + len(name)
    sheet_at = sum(map(len, head)) + boundsheet_size + 4  # + the globals' EOF
    globals_ = b"".join(head) + _record(0x0085, struct.pack("<IBBBB", sheet_at, 0, 0, len(name), 0) + name) + \
        _record(0x000A, b"")
    stream = globals_ + sheet
    records, pos = [], 0
    while pos < len(stream):
        kind, size = struct.unpack_from("<HH", stream, pos)
        records.append((pos, kind, size))
        pos += 4 + size
    return stream, records


def _cfb(stream: bytes, name: str = "Workbook") -> bytes:
    """A compound file (OLE2, version 3) holding one stream of at least 4,096 bytes."""
    sector = 512
    data = stream + bytes(-len(stream) % sector)
    count = len(data) // sector
    free, end, fat_mark, none = 0xFFFFFFFF, 0xFFFFFFFE, 0xFFFFFFFD, 0xFFFFFFFF
    fat = [fat_mark, end] + [3 + i for i in range(count - 1)] + [end]
    fat += [free] * (sector // 4 - len(fat))

    def entry(entry_name: str, kind: int, child: int, start: int, size: int) -> bytes:
        raw = entry_name.encode("utf-16-le") + b"\x00\x00" if entry_name else b""
        return (raw.ljust(64, b"\x00") + struct.pack("<HBB3I", len(raw), kind, 1, none, none, child) + bytes(16)
                + struct.pack("<I", 0) + bytes(16) + struct.pack("<IQ", start, size))

    directory = (entry("Root Entry", 5, 1, end, 0) + entry(name, 2, none, 2, len(stream))
                 + entry("", 0, none, 0, 0) * 2)
    header = (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(16) + struct.pack("<HHHHH", 0x3E, 3, 0xFFFE, 9, 6)
              + bytes(6) + struct.pack("<IIIIIIIII", 0, 1, 1, 0, 4096, end, 0, end, 0)
              + struct.pack("<109I", 0, *([free] * 108)))
    return header + struct.pack(f"<{sector // 4}I", *fat) + directory + data


def plain_xls(path: Path) -> Path:
    path.write_bytes(_cfb(biff8_workbook_stream()[0]))
    return path


def xor_obfuscated_xls(path: Path, password: str = PASSWORD) -> Path:
    """The same workbook with Excel's XOR obfuscation ([MS-OFFCRYPTO] 2.3.7, "method 1"): what old
    Excel writes for "protect workbook" with a password."""
    from msoffcrypto.method.xor_obfuscation import DocumentXOR

    verifier = 0
    for byte in reversed([len(password), *map(ord, password)]):
        verifier = ((1 if verifier & 0x4000 else 0) ^ ((verifier * 2) & 0x7FFF)) ^ byte
    filepass = struct.pack("<HHH", 0, DocumentXOR.create_xor_key_method1(password), verifier ^ 0xCE4B)
    stream, records = biff8_workbook_stream(filepass=filepass)
    xor_array = DocumentXOR.create_xor_array_method1(password)
    out = bytearray(stream)
    exempt = {0x0809, 0x002F, 0x0194, 0x0195, 0x00E1, 0x0196, 0x0138}  # BOF, FILEPASS, UsrExcl, FileLock, ...
    for offset, kind, size in records:
        if kind in exempt or size == 0:
            continue
        start = offset + 4 + (4 if kind == 0x0085 else 0)  # a BoundSheet8's lbPlyPos stays plain
        count = offset + 4 + size - start
        index = (start + count + (4 if kind == 0x0085 else 0)) % 16
        for k in range(count):
            byte = out[start + k]
            rotated = ((byte << 5) | (byte >> 3)) & 0xFF  # rol 5: the inverse of the reader's ror 5
            out[start + k] = rotated ^ xor_array[(index + k) % 16]
    path.write_bytes(_cfb(bytes(out)))
    return path


def mac_central_european_xls(path: Path) -> Path:
    """An Excel 5.0/95 workbook (BIFF5, stream 'Book') in the Mac Central European codepage (10029)."""
    def bof(kind: int) -> bytes:
        return _record(0x0809, struct.pack("<HHHH", 0x0500, kind, 0x0DBB, 0x07CC))

    def label(row: int, col: int, text: str) -> bytes:
        raw = text.encode("mac-latin2")
        return _record(0x0204, struct.pack("<HHHH", row, col, 0, len(raw)) + raw)

    sheet = b"".join([bof(0x0010), _record(0x0200, struct.pack("<HHHHH", 0, 3, 0, 2, 0)),
                      _record(0x0899, bytes(4096)),
                      label(0, 0, "id"), label(0, 1, "město"), _biff8_number(1, 0, 1.0), label(1, 1, "Łódź"),
                      _biff8_number(2, 0, 2.0), label(2, 1, "Brno"), _record(0x000A, b"")])
    name = b"Data"
    head = bof(0x0005) + _record(0x0042, struct.pack("<H", 10029))
    sheet_at = len(head) + 4 + 4 + 2 + 1 + len(name) + 4
    globals_ = head + _record(0x0085, struct.pack("<IBBB", sheet_at, 0, 0, len(name)) + name) + _record(0x000A, b"")
    path.write_bytes(_cfb(globals_ + sheet, name="Book"))
    return path


# ---- values as Excel shows them (issue 11) ---------------------------------------------------

def title_rows_xlsx(path: Path) -> Path:
    """A report title and a blank row above the table (the header is row 3)."""
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["Sales report Q3"])
    sheet.append([])
    for row in (["id", "name", "amount"], [1, "Zoë", 2.5], [2, "Bob", 10]):
        sheet.append(row)
    book.save(path)
    return path


def sep_line_csv(path: Path) -> Path:
    """Excel's delimiter hint on the first line."""
    path.write_text("sep=;\nid;name\n1;a,b\n", encoding="utf-8")
    return path


def formulas_without_results(path: Path) -> Path:
    """Formulas as openpyxl writes them: no saved result (Excel computes them on open)."""
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    for row in (["id", "amount", "total"], [1, 2, "=B2*2"], [2, 3, "=B3*2"]):
        sheet.append(row)
    book.save(path)
    return path


def error_cells_xlsx(path: Path) -> Path:
    """Error cells (#N/A, #DIV/0!), one of them in a row without r= attributes."""
    body = (f'<row r="1">{cell("A1", "id")}{cell("B1", "ratio")}</row>'
            '<row r="2"><c r="A2"><v>1</v></c><c r="B2" t="e"><f>1/0</f><v>#DIV/0!</v></c></row>'
            '<row><c><v>2</v></c><c t="e"><v>#N/A</v></c></row>')
    return write_zip(path, xlsx_parts({"Data": body}))


def number_formats_xlsx(path: Path) -> Path:
    """A zip code formatted "00000" and a percentage "0.0%"."""
    import xlsxwriter

    book = xlsxwriter.Workbook(str(path))
    sheet = book.add_worksheet()
    zip_code, percent = book.add_format({"num_format": "00000"}), book.add_format({"num_format": "0.0%"})
    sheet.write_row(0, 0, ["zip", "rate"])
    sheet.write_number(1, 0, 42, zip_code)
    sheet.write_number(1, 1, 0.256, percent)
    book.close()
    return path


def cp1251_csv(path: Path) -> Path:
    """Cyrillic text in Windows-1251 (what Excel writes on a Russian Windows)."""
    rows = ["id,имя,город"] + [f"{i},Пётр Иванович {i},Москва и Санкт-Петербург" for i in range(1, 21)]
    path.write_bytes(("\n".join(rows) + "\n").encode("cp1251"))
    return path
