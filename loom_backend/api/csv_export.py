"""CSV answers: streamed, RFC 4180 (quoted where needed, CRLF rows), and safe to open in a spreadsheet."""

import csv
import io
from collections.abc import AsyncIterator, Iterable

from fastapi.responses import StreamingResponse

# A cell starting with one of these is a formula to Excel, LibreOffice and Sheets (OWASP's "CSV injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n")
FLUSH_BYTES = 64 * 1024


def safe_cell(value: str) -> str:
    """The value as a spreadsheet shows it as text: one that would start a formula gets a leading apostrophe."""
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def safe_row(row: Iterable[str]) -> list[str]:
    return [safe_cell(v) for v in row]


def csv_response(header: list[str], rows: AsyncIterator[list[str]], filename: str) -> StreamingResponse:
    """Stream `header` and then `rows` as an attachment, in chunks of about 64 KiB."""

    async def body() -> AsyncIterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\r\n")
        writer.writerow(safe_row(header))
        async for row in rows:
            writer.writerow(safe_row(row))
            if buffer.tell() > FLUSH_BYTES:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue()

    return StreamingResponse(
        body(),
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": f'attachment; filename="{filename}"'},
    )
