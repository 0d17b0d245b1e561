"""JSON-lines manifests: one utterance per line.

    {"audio": "path relative to the manifest", "words": [["seven", 0.52, 0.91], ...], "snr_db": 12.5}

``words`` gives each spoken keyword with its start and end in seconds (evaluation only);
``snr_db`` is optional and enables the per-SNR breakdown.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass

from vpkl.runtime.checks import shown
from vpkl.runtime.errors import VpklInputError


@dataclass
class Entry:
    audio: str            # absolute path
    words: list           # [(keyword, start_s, end_s), ...]
    snr_db: float | None


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _words(raw, where: str) -> list:
    """Check ``[[keyword, start_s, end_s], ...]``: string keyword, finite 0 <= start < end."""
    ok = isinstance(raw, list) and all(
        isinstance(w, list) and len(w) == 3 and isinstance(w[0], str) and _is_number(w[1])
        and _is_number(w[2]) and 0 <= w[1] < w[2] for w in raw)
    if not ok:
        raise VpklInputError(f"{where}: \"words\" must be a list of [keyword, start_s, end_s] "
                             "with finite times, 0 <= start < end")
    return [(w.lower(), float(a), float(b)) for w, a, b in raw]


def read_manifest(path: str) -> list[Entry]:
    """Parse and check a manifest; audio paths are resolved against its folder.

    Raises:
        VpklInputError: missing file, a line that is not JSON or lacks/misshapes
            ``audio``/``words`` (the line number is named), or no entries at all.
    """
    if not os.path.exists(path):
        raise VpklInputError(f"{path}: no such manifest")
    if not os.path.isfile(path):
        raise VpklInputError(f"{path}: is a folder, expected a JSON-lines manifest file")
    base = os.path.dirname(os.path.abspath(path))
    out = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{i}"
            try:
                d = json.loads(line)
            except json.JSONDecodeError as e:
                raise VpklInputError(f"{where}: not JSON ({e.msg})") from None
            except (ValueError, RecursionError):  # Python's 4300-digit integer limit; deep nesting
                raise VpklInputError(f"{where}: JSON that cannot be read (a number of over 4300 digits, "
                                     "or arrays nested too deeply)") from None
            if not isinstance(d, dict) or not isinstance(d.get("audio"), str):
                raise VpklInputError(f"{where}: expected an object with a string \"audio\"")
            words = _words(d.get("words", []), where)
            snr = d.get("snr_db")
            if snr is not None and not _is_number(snr):
                raise VpklInputError(f"{where}: \"snr_db\" must be a finite number, got {shown(snr)}")
            out.append(Entry(os.path.join(base, d["audio"]), words, None if snr is None else float(snr)))
    if not out:
        raise VpklInputError(f"{path}: the manifest has no utterances")
    return out


def write_manifest(path: str, rows: list[dict]) -> None:
    """Write rows (dicts with ``audio`` relative to the manifest's folder) as JSON lines."""
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
