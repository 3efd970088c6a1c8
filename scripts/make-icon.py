#!/usr/bin/env python3
"""Draws the extension's icon.png (128x128 RGBA) with the standard library only.

An Azure-blue rounded square with three white stacked layers: a VM image built up from
customizations. Run `python3 scripts/make-icon.py` to rewrite icon.png at the repo root (or give another output
path); the output is deterministic, so a re-run changes nothing unless this script did
(tests/node/icon.test.js checks that the committed icon is this script's).
"""
import os
import struct
import sys
import zlib

SIZE = 128
SAMPLES = 4  # supersampling per axis for smooth edges


def rounded_square(x, y, radius=22, inset=2):
    lo, hi = inset, SIZE - inset
    cx = min(max(x, lo + radius), hi - radius)
    cy = min(max(y, lo + radius), hi - radius)
    return lo <= x <= hi and lo <= y <= hi and (x - cx) ** 2 + (y - cy) ** 2 <= radius**2


def layer(x, y, top, half_width=40, half_height=18):
    """A flat rhombus (a layer seen at an angle) whose top corner is at (64, top)."""
    cy = top + half_height
    return abs(x - 64) / half_width + abs(y - cy) / half_height <= 1.0


def colour(x, y):
    if not rounded_square(x, y):
        return (0, 0, 0, 0)
    t = y / SIZE
    background = (int(0 + 20 * t), int(120 - 40 * t), int(212 - 40 * t), 255)
    # Three layers, the top one solid, the lower ones as white rims under it.
    if layer(x, y, 26):
        return (255, 255, 255, 255)
    if layer(x, y, 44) and not layer(x, y, 38, 40, 18):
        return (225, 240, 255, 255)
    if layer(x, y, 62) and not layer(x, y, 56, 40, 18):
        return (190, 225, 255, 255)
    return background


def pixel(px, py):
    acc = [0, 0, 0, 0]
    for sy in range(SAMPLES):
        for sx in range(SAMPLES):
            r, g, b, a = colour(px + (sx + 0.5) / SAMPLES, py + (sy + 0.5) / SAMPLES)
            acc[0] += r * a
            acc[1] += g * a
            acc[2] += b * a
            acc[3] += a
    n = SAMPLES * SAMPLES
    if acc[3] == 0:
        return bytes((0, 0, 0, 0))
    return bytes((acc[0] // acc[3], acc[1] // acc[3], acc[2] // acc[3], acc[3] // n))


def chunk(kind, data):
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


def png():
    rows = b"".join(b"\x00" + b"".join(pixel(x, y) for x in range(SIZE)) for y in range(SIZE))
    header = struct.pack(">IIBBBBB", SIZE, SIZE, 8, 6, 0, 0, 0)  # 8-bit RGBA
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows, 9))
        + chunk(b"IEND", b"")
    )


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "icon.png"
    )
    with open(out, "wb") as f:
        f.write(png())
    print(f"wrote {os.path.normpath(out)}")
