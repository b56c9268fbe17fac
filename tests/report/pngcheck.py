"""A small PNG decoder (8-bit RGB/RGBA, non-interlaced: what Chromium writes), enough to
check that a screenshot is not blank without an imaging dependency."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def decode(path: Path) -> tuple[int, int, int, list[bytes]]:
    """(width, height, bytes per pixel, rows of raw pixel bytes)."""
    data = path.read_bytes()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path}: not a PNG")
    pos, idat, header = 8, bytearray(), None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
    if header is None:
        raise ValueError(f"{path}: no IHDR")
    width, height, depth, colour, _, _, interlace = header
    if depth != 8 or colour not in (2, 6) or interlace:
        raise ValueError(f"{path}: unsupported PNG (depth {depth}, colour type {colour})")
    bpp = 3 if colour == 2 else 4
    raw = zlib.decompress(bytes(idat))
    stride = width * bpp
    rows: list[bytes] = []
    prior = np.zeros(stride, dtype=np.int64)
    for y in range(height):
        start = y * (stride + 1)
        ftype = raw[start]
        line = np.frombuffer(raw, dtype=np.uint8, count=stride, offset=start + 1).astype(
            np.int64)
        if ftype == 1:  # Sub: a running sum per channel
            line = np.cumsum(line.reshape(width, bpp), axis=0).reshape(-1) & 0xFF
        elif ftype == 2:  # Up
            line = (line + prior) & 0xFF
        elif ftype in (3, 4):  # Average, Paeth: sequential along the row
            out, up = line.tolist(), prior.tolist()
            for i in range(stride):
                left = out[i - bpp] if i >= bpp else 0
                if ftype == 3:
                    out[i] = (out[i] + ((left + up[i]) >> 1)) & 0xFF
                else:
                    upleft = up[i - bpp] if i >= bpp else 0
                    out[i] = (out[i] + _paeth(left, up[i], upleft)) & 0xFF
            line = np.array(out, dtype=np.int64)
        elif ftype != 0:
            raise ValueError(f"{path}: bad filter type {ftype} on row {y}")
        rows.append(line.astype(np.uint8).tobytes())
        prior = line
    return width, height, bpp, rows


def colours(path: Path) -> dict[tuple[int, int, int], int]:
    """Pixel count per RGB colour."""
    _, _, bpp, rows = decode(path)
    px = np.frombuffer(b"".join(rows), dtype=np.uint8).reshape(-1, bpp)[:, :3].astype(
        np.int64)
    keys, counts = np.unique((px[:, 0] << 16) | (px[:, 1] << 8) | px[:, 2],
                             return_counts=True)
    return {(int(k) >> 16, (int(k) >> 8) & 0xFF, int(k) & 0xFF): int(n)
            for k, n in zip(keys, counts, strict=True)}
