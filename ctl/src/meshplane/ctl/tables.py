"""The one table layout of ``meshctl``'s output (proxy-status, proxy-config, up), as istioctl prints.

Columns are separated by two spaces and padded to their widest cell; trailing blanks are cut.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence


def render(headers: Sequence[str], rows: Iterable[Sequence[str]], right: Collection[int] = ()) -> str:
    """The table as text, headers first; the columns numbered in ``right`` are right-aligned."""
    table = [list(headers), *(list(r) for r in rows)]
    for number, row in enumerate(table[1:], 1):
        if len(row) != len(headers):
            raise ValueError(f"row {number} has {len(row)} cells for {len(headers)} columns")
    widths = [max(len(r[i]) for r in table) for i in range(len(headers))]

    def line(row: list[str]) -> str:
        pairs = enumerate(zip(row, widths, strict=True))
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in pairs).rstrip()

    return "\n".join(line(r) for r in table)
