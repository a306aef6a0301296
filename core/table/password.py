"""Password-protected workbooks, decrypted in memory with msoffcrypto-tool.

Encrypted xlsx/xlsm/xlsb (an OLE2 container with an EncryptedPackage) and xls files with a
FILEPASS record (RC4, RC4 CryptoAPI, or the old XOR obfuscation) are decrypted into bytes
that never touch the disk; the password is used once and never stored. Files protected
with Excel's default password ("VelvetSweatshop": "protect workbook" without a password
of one's own) open without asking.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

from batchgrid.core.util.errors import InputError

DEFAULT_PASSWORD = "VelvetSweatshop"


class PasswordRequired(InputError):
    """The workbook is encrypted and no password was given: the front end asks for one."""


class WrongPassword(PasswordRequired):
    """The password given does not open the workbook."""


def is_encrypted_xls(path: Path) -> bool:
    """An xls with a FILEPASS record (encrypted or XOR-obfuscated), which calamine misreads."""
    import msoffcrypto
    from msoffcrypto import exceptions

    try:
        with open(path, "rb") as f:
            return bool(msoffcrypto.OfficeFile(f).is_encrypted())
    except (exceptions.FileFormatError, exceptions.ParseError, OSError, ValueError, KeyError, IndexError,
            AssertionError, EOFError):
        return False  # calamine reports what is wrong


def decrypt(path: Path, password: str | None) -> bytes:
    """The workbook inside the encrypted file at `path`. PasswordRequired without a password
    (unless the default one opens it), WrongPassword when `password` does not."""
    import msoffcrypto
    from msoffcrypto import exceptions

    candidates = [p for p in (password, DEFAULT_PASSWORD) if p]
    try:
        with open(path, "rb") as f:
            for candidate in candidates:
                f.seek(0)
                office = msoffcrypto.OfficeFile(f)
                try:
                    if getattr(office, "format", "") == "ooxml":
                        office.load_key(password=candidate, verify_password=True)
                    else:
                        office.load_key(password=candidate)
                    out = io.BytesIO()
                    office.decrypt(out)
                except exceptions.InvalidKeyError:
                    continue
                return out.getvalue()
    except exceptions.InvalidKeyError:
        pass
    except (exceptions.FileFormatError, exceptions.DecryptionError, exceptions.ParseError) as exc:
        raise InputError(f"{path.name} is password-protected with an encryption Batchgrid cannot open "
                         f"({_words(exc)}); remove the password in Excel (File > Info > Protect Workbook)") from None
    except (OSError, ValueError, KeyError, IndexError, AssertionError, EOFError):
        raise InputError(f"{path.name} is password-protected and damaged: it cannot be decrypted") from None
    if password:
        raise WrongPassword(f"{path.name}: the password is wrong (the workbook is password-protected)")
    raise PasswordRequired(f"{path.name} is password-protected; enter its password to open it")


def _words(exc: Exception) -> str:
    return " ".join(str(exc).split())[:80] or type(exc).__name__


def password_from_env(name: str | None) -> str | None:
    """The password in environment variable `name` (the CLI's --password-env: a password never
    goes on a command line, where other users and the shell's history see it)."""
    if not name:
        return None
    value = os.environ.get(name)
    if not value:
        raise InputError(f"--password-env {name}: the environment variable {name} is not set")
    return value
