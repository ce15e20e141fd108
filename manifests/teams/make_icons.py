"""Draw the Teams app icons with the standard library only (zlib + struct PNG writer).

color.png: 192x192, a white check mark on a full-bleed teal square (Teams' colour icon).
outline.png: 32x32, a white check mark on transparency (Teams' outline icon rules).
Run from anywhere: ``python3 manifests/teams/make_icons.py``; the PNGs are committed.
"""

from __future__ import annotations

import math
import struct
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
TEAL = (31, 111, 92)
WHITE = (255, 255, 255)
# The check mark as a polyline in unit coordinates, and its stroke half-width.
CHECK = ((0.24, 0.53), (0.42, 0.71), (0.77, 0.31))
SUPERSAMPLE = 4


def _segment_distance(
    px: float, py: float, a: tuple[float, float], b: tuple[float, float]
) -> float:
    ax, ay = a
    bx, by = b
    dx, dy = bx - ax, by - ay
    t = max(0.0, min(1.0, ((px - ax) * dx + (py - ay) * dy) / (dx * dx + dy * dy)))
    return math.hypot(px - (ax + t * dx), py - (ay + t * dy))


def _coverage(size: int, x: int, y: int, half_width: float) -> float:
    """Fraction of pixel (x, y) covered by the check mark stroke."""
    inside = 0
    for sy in range(SUPERSAMPLE):
        for sx in range(SUPERSAMPLE):
            px = (x + (sx + 0.5) / SUPERSAMPLE) / size
            py = (y + (sy + 0.5) / SUPERSAMPLE) / size
            d = min(_segment_distance(px, py, CHECK[i], CHECK[i + 1]) for i in range(2))
            inside += d <= half_width
    return inside / SUPERSAMPLE**2


def png(width: int, height: int, rows: list[bytes]) -> bytes:
    """An 8-bit RGBA PNG from raw rows of ``width * 4`` bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    raw = b"".join(b"\x00" + row for row in rows)  # filter type 0 on every row
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )


def color_icon(size: int = 192) -> bytes:
    rows = []
    for y in range(size):
        row = bytearray()
        for x in range(size):
            c = _coverage(size, x, y, 0.06)
            rgb = [round(TEAL[i] * (1 - c) + WHITE[i] * c) for i in range(3)]
            row += bytes((*rgb, 255))
        rows.append(bytes(row))
    return png(size, size, rows)


def outline_icon(size: int = 32) -> bytes:
    rows = []
    for y in range(size):
        row = bytearray()
        for x in range(size):
            alpha = round(255 * _coverage(size, x, y, 0.075))
            row += bytes((*WHITE, alpha))
        rows.append(bytes(row))
    return png(size, size, rows)


def main() -> None:
    (HERE / "color.png").write_bytes(color_icon())
    (HERE / "outline.png").write_bytes(outline_icon())


if __name__ == "__main__":
    main()
