"""Reading the container files some packages ship their media in, so only the listed members are written.

* zip (also ``.pk3`` and ``.wz``): 0ad ``public.zip``, nexuiz ``data.pk3``, ufoai ``0snd.pk3``, warzone2100 ``base.wz``;
* Qt binary resources (``.rcc``): gcompris-qt-data ships every activity's sounds and drawings compiled into one;
* OpenTTD's ``opensfx.cat``: a table of (offset, size) followed by entries ``<name length><name><RIFF WAV>``,
  whose names carry each sound's title, original author and licence (kept in ``index.json``).
"""
from __future__ import annotations

import json
import shutil
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Iterator

from .catalogue import member_file


def read_rcc(path: Path) -> Iterator[tuple[str, bytes]]:
    """``(name, data)`` for every file in a Qt binary resource file (format versions 1-3)."""
    b = path.read_bytes()
    if b[:4] != b"qres":
        raise ValueError(f"{path}: not a Qt resource (.rcc) file")
    version, tree, data, names = struct.unpack(">IIII", b[4:20])
    node_size = 14 + (8 if version >= 2 else 0)

    def name_at(offset: int) -> str:
        o = names + offset
        length = struct.unpack(">H", b[o:o + 2])[0]
        return b[o + 6:o + 6 + 2 * length].decode("utf-16-be")

    def walk(index: int, prefix: str) -> Iterator[tuple[str, bytes]]:
        o = tree + index * node_size
        name_offset, flags = struct.unpack(">IH", b[o:o + 6])
        name = name_at(name_offset) if index else ""
        if flags & 2:  # directory: children are a contiguous run of nodes
            count, first = struct.unpack(">II", b[o + 6:o + 14])
            for child in range(first, first + count):
                yield from walk(child, f"{prefix}{name}/" if index else "")
            return
        p = data + struct.unpack(">I", b[o + 10:o + 14])[0]
        raw = b[p + 4:p + 4 + struct.unpack(">I", b[p:p + 4])[0]]
        if flags & 1:  # zlib, behind a 4-byte uncompressed length
            raw = zlib.decompress(raw[4:])
        elif flags & 4:
            raise ValueError(f"{path}: {prefix}{name} is zstd-compressed, which this reader does not support")
        yield prefix + name, raw

    yield from walk(0, "")


def read_opensfx_cat(path: Path) -> Iterator[tuple[int, str, bytes]]:
    """``(index, name, wav bytes)`` for each entry of an OpenTTD ``.cat`` sound container."""
    b = path.read_bytes()
    count = (struct.unpack("<I", b[:4])[0] & 0x7FFFFFFF) // 8
    for i in range(count):
        offset, size = struct.unpack("<II", b[i * 8:i * 8 + 8])
        entry = b[offset & 0x7FFFFFFF:(offset & 0x7FFFFFFF) + size]
        n = entry[0]
        yield i, entry[1:1 + n].rstrip(b"\0").decode("latin1"), entry[1 + n:]


def _write(dest: Path, name: str, data: bytes) -> None:
    out = dest / name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)


def extract_members(container: Path, members: set[str], dest: Path) -> list[str]:
    """Write the wanted ``members`` of ``container`` under ``dest`` (see :func:`member_file`); return those missing."""
    dest.mkdir(parents=True, exist_ok=True)
    found: set[str] = set()
    if container.name.endswith(".cat"):
        index = {}
        for i, name, wav in read_opensfx_cat(container):
            index[f"{i:02d}.wav"] = name
            member = next((m for m in members if m.startswith("#") and int(m[1:]) == i), None)
            if member:
                _write(dest, member_file(member), wav)
                found.add(member)
        (dest / "index.json").write_text(json.dumps(index, indent=1))
    elif container.name.endswith(".rcc"):
        for name, data in read_rcc(container):
            if name in members:
                _write(dest, name, data)
                found.add(name)
    else:
        with zipfile.ZipFile(container) as z:
            for name in sorted(members & set(z.namelist())):
                out = dest / name
                out.parent.mkdir(parents=True, exist_ok=True)
                with z.open(name) as src, open(out, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                found.add(name)
    return sorted(members - found)
