"""The Teams app package sources: a manifest for the current schema naming our bot, and
icons of the sizes and kinds Teams requires (192x192 colour, 32x32 white on transparent)."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "manifests" / "teams"


def decode_png(path: Path) -> tuple[int, int, list[bytes]]:
    """(width, height, RGBA rows) of an 8-bit RGBA, non-interlaced, filter-0 PNG."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert (depth, colour, interlace) == (8, 6, 0)
    raw = zlib.decompress(idat)
    stride = width * 4 + 1
    rows = [raw[i * stride : (i + 1) * stride] for i in range(height)]
    assert all(row[0] == 0 for row in rows)
    return width, height, [row[1:] for row in rows]


def test_manifest_names_the_bot_for_channels_on_the_current_schema() -> None:
    manifest = json.loads((ROOT / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["manifestVersion"] == "1.22"
    assert manifest["$schema"].endswith("/v1.22/MicrosoftTeams.schema.json")
    assert manifest["id"] == "{{TEAMS_APP_ID}}"
    (bot,) = manifest["bots"]
    assert bot["botId"] == "{{TEAMS_APP_ID}}"
    assert set(bot["scopes"]) == {"team", "groupChat"}
    assert manifest["icons"] == {"color": "color.png", "outline": "outline.png"}
    assert len(manifest["name"]["short"]) <= 30
    assert len(manifest["description"]["short"]) <= 80
    assert len(manifest["description"]["full"]) <= 4000
    for key in ("websiteUrl", "privacyUrl", "termsOfUseUrl"):
        assert manifest["developer"][key] == "{{SIGNOFF_PUBLIC_URL}}"


def test_colour_icon_is_192_square_and_opaque() -> None:
    width, height, rows = decode_png(ROOT / "color.png")
    assert (width, height) == (192, 192)
    assert all(row[i + 3] == 255 for row in rows for i in range(0, len(row), 4))


def test_outline_icon_is_32_square_white_on_transparent() -> None:
    width, height, rows = decode_png(ROOT / "outline.png")
    assert (width, height) == (32, 32)
    pixels = [row[i : i + 4] for row in rows for i in range(0, len(row), 4)]
    assert all(p[:3] == b"\xff\xff\xff" for p in pixels)
    alphas = {p[3] for p in pixels}
    assert 0 in alphas and 255 in alphas  # a transparent background and a solid mark
