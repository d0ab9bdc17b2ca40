"""Which text encoding a CSV is in: UTF-8 (with or without BOM) or GB18030, the superset of GBK and GB2312.

Excel on a Chinese Windows saves "CSV (逗号分隔)" in GBK; "CSV UTF-8" only when asked. Both are read. A file
that is neither (UTF-16, a spreadsheet saved as .xlsx, a binary) is refused with what to do instead.
"""

from __future__ import annotations

import codecs

from spatial.errors import InvalidInput

SAMPLE_BYTES = 1 << 16
UTF8, GB18030 = "utf-8", "gb18030"
# PostgreSQL's names, for COPY … (ENCODING …).
POSTGRES_NAMES = {UTF8: "UTF8", GB18030: "GB18030"}

_HOW_TO_FIX = "save it from Excel as 'CSV UTF-8 (逗号分隔)' or as 'CSV (逗号分隔)' (GBK) and send it again"


def _decodes(sample: bytes, encoding: str, *, complete: bool) -> bool:
    decoder = codecs.getincrementaldecoder(encoding)("strict")
    try:
        decoder.decode(sample, final=complete)  # a sample cut mid-character is not an error
    except UnicodeDecodeError:
        return False
    return True


def detect(sample: bytes, *, complete: bool = False) -> str:
    """Return ``"utf-8"`` or ``"gb18030"`` for the start of a CSV (``complete`` when it is the whole file)."""
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or b"\x00" in sample:
        raise InvalidInput(f"the file looks like UTF-16 or binary, not a CSV: {_HOW_TO_FIX}")
    if sample.startswith(b"PK\x03\x04"):
        raise InvalidInput(f"the file is a zip (an .xlsx workbook?), not a CSV: {_HOW_TO_FIX}")
    if _decodes(sample, UTF8, complete=complete):
        return UTF8
    if _decodes(sample, GB18030, complete=complete):
        return GB18030
    raise InvalidInput(f"the file is neither UTF-8 nor GBK text: {_HOW_TO_FIX}")


def decode(data: bytes) -> str:
    """Return a whole CSV's text, read as UTF-8 (BOM dropped) or GB18030."""
    encoding = detect(data, complete=True)
    return data.decode("utf-8-sig" if encoding == UTF8 else encoding)
