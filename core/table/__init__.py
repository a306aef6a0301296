"""Spreadsheets in and out.

Reading (`read_table`, `list_sheets`, `preview`): xlsx, xlsm, xlsb, xls, ods (calamine),
csv/tsv/txt (encoding and delimiter sniffed), parquet; the kind is found from the
content, not the name. Any unusable file raises InputError with one line for the user.

Writing (`export_results`, `write_table`): a formatted xlsx report (Results, Errors and
Run sheets), csv or parquet; formula-safe (`cells`) and atomic (`atomic`). Failures raise
ExportError with one line for the user.
"""

from .atomic import ExportError
from .columnar import Table
from .export import export_results, write_table
from .read import Preview, list_sheets, preview, read_table

__all__ = ["ExportError", "Preview", "Table", "export_results", "list_sheets", "preview", "read_table", "write_table"]
