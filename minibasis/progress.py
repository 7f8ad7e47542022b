"""Progress of a long phase (a training epoch, an evaluation) on stderr.

On a terminal, a bar redrawn in place::

    epoch 2/5 [###########...................] 768/2000 images, 121 img/s, ETA 0:10, loss 1.9832

Anywhere else (a pipe, a log file, a CI job) the same facts as a plain line every ``every``
seconds, so that a redirected run still says it is alive and when it will be done::

    epoch 2/5: 768/2000 images, 121 img/s, ETA 0:10, loss 1.9832
"""

import sys
import time

from .checks import integer, real

BAR_WIDTH = 30
DEFAULT_EVERY = 5.0  # seconds between plain lines


class Progress:
    """Progress of one phase of ``total`` images; ``every=None`` prints nothing.

    ``update(done, **extra)`` after each batch (``extra``: named values shown after the ETA, e.g.
    ``loss=1.98``), ``close()`` at the end (it ends the bar's line). ``stream`` (default
    stderr) decides the form: a bar when it is a terminal, else a line at most every ``every``
    seconds (0: after every batch). ``clock``: seconds, for tests.
    """

    def __init__(self, label, total, *, every=DEFAULT_EVERY, stream=None, clock=time.monotonic):
        self.label, self.total = label, integer("total", total, 0)
        self.every = None if every is None else real("every", every, 0)
        self.stream = sys.stderr if stream is None else stream
        self.clock = clock
        self.bar = self.every is not None and self.stream.isatty()
        self.start = self.last = clock()
        self.drawn = False

    def update(self, done, **extra):
        if self.every is None:
            return
        now = self.clock()
        if self.bar:
            self._write(f"\r{self.label} [{self._filled(done)}] {self._facts(done, now, extra)}")
            self.drawn = True
        elif now - self.last >= self.every:
            self._write(f"{self.label}: {self._facts(done, now, extra)}\n")
            self.last = now

    def close(self):
        if self.drawn:
            self._write("\n")
            self.drawn = False

    def _filled(self, done):
        filled = BAR_WIDTH * done // self.total if self.total else BAR_WIDTH
        return "#" * filled + "." * (BAR_WIDTH - filled)

    def _facts(self, done, now, extra):
        elapsed = now - self.start
        if elapsed > 0 and done > 0:
            rate = done / elapsed
            speed, eta = f"{rate:.0f} img/s", f"ETA {_clock((self.total - done) / rate)}"
        else:  # nothing measured yet
            speed, eta = "? img/s", "ETA ?"
        words = [f"{done}/{self.total} images", speed, eta]
        return ", ".join(words + [f"{name} {value:.4f}" for name, value in extra.items()])

    def _write(self, text):
        self.stream.write(text)
        self.stream.flush()


def _clock(seconds):
    """``m:ss`` (``h:mm:ss`` from an hour on)."""
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
