"""Progress for long work: a bar over utterances (tqdm when installed, otherwise none), and seconds
of audio done for one long file (no dependency)."""
from __future__ import annotations

import sys
import time

LONG_S = 60.0  # audio at least this long shows its progress in the CLI


def progress(items, desc: str = "utterances"):
    """``items`` wrapped in a tqdm bar on stderr (counted in utterances) when tqdm is installed,
    else ``items`` unchanged (tqdm comes with the train extra, not the runtime)."""
    try:
        from tqdm import tqdm
    except ImportError:
        return items
    return tqdm(items, desc=desc, unit="utt")


class AudioProgress:
    """``progress(seconds_done, seconds_total)`` callback that reports how much of a long audio
    file is done, on ``stream`` (stderr).

    Audio shorter than ``min_total_s`` seconds shows nothing. On a terminal one line is rewritten
    in place at most every ``every_s`` seconds of wall-clock time; elsewhere (a log, a pipe) a line
    is written at each further tenth of the audio, so a log gets at most ten lines. :meth:`close`
    ends the line (call it when the work ends, also on error).
    """

    def __init__(self, name: str, stream=None, min_total_s: float = LONG_S, every_s: float = 0.5,
                 clock=time.monotonic):
        self.name, self.stream = name, sys.stderr if stream is None else stream
        self.min_total_s, self.every_s, self.clock = min_total_s, every_s, clock
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last_t, self._last_tenth, self._open = None, 0, False

    def __call__(self, done_s: float, total_s: float) -> None:
        """Report ``done_s`` of ``total_s`` seconds of audio (see the class docstring for when)."""
        if not total_s or total_s < self.min_total_s:
            return
        frac = min(done_s / total_s, 1.0)
        line = f"{self.name}: {done_s:.0f} / {total_s:.0f} s of audio ({100 * frac:.0f}%)"
        if self.tty:
            now = self.clock()
            if self._last_t is None or now - self._last_t >= self.every_s or frac >= 1.0:
                self._last_t = now
                self.stream.write("\r" + line)
                self.stream.flush()
                self._open = True
        elif int(frac * 10) > self._last_tenth:
            self._last_tenth = int(frac * 10)
            self.stream.write(line + "\n")
            self.stream.flush()

    def close(self) -> None:
        """End the rewritten line on a terminal (nothing elsewhere)."""
        if self._open:
            self.stream.write("\n")
            self.stream.flush()
            self._open = False
