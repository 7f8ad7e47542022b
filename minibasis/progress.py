"""Progress of a long phase (a training epoch, an evaluation) on stderr.

On a terminal, a bar redrawn in place::

    epoch 2/5 [###########...................] 768/2000 images, 121 img/s, ETA 0:10, run ETA 1:05, loss 1.9832

Anywhere else (a pipe, a log file, a CI job) the same facts as a plain line every ``every``
seconds, so that a redirected run still says it is alive and when it will be done::

    epoch 2/5: 768/2000 images, 121 img/s, ETA 0:10, run ETA 1:05, loss 1.9832

``ETA`` is this phase's end, ``run ETA`` the whole run's (the phases after this one estimated at
this phase's rate). Progress never stops the work it reports on: a stderr that is closed, full
or a broken pipe silences it.
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
    seconds (0: after every batch). ``run_left``: None, or a function of the rate (images per
    second) giving the seconds the run takes after this phase, shown as the run's ETA.
    ``clock``: seconds, for tests.
    """

    def __init__(self, label, total, *, every=DEFAULT_EVERY, stream=None, clock=time.monotonic, run_left=None):
        self.label, self.total = label, integer("total", total, 0)
        self.every = None if every is None else real("every", every, 0)
        self.stream = sys.stderr if stream is None else stream
        if self.stream is None:  # Python's stderr when file descriptor 2 is closed
            self.every = None
        self.clock, self.run_left = clock, run_left
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
            left = (self.total - done) / rate
            speed, eta = f"{rate:.0f} img/s", f"ETA {_clock(left)}"
            run_eta = f"run ETA {_clock(left + self.run_left(rate))}" if self.run_left else None
        else:  # nothing measured yet
            speed, eta, run_eta = "? img/s", "ETA ?", "run ETA ?" if self.run_left else None
        words = [f"{done}/{self.total} images", speed, eta] + ([run_eta] if run_eta else [])
        return ", ".join(words + [f"{name} {value:.4f}" for name, value in extra.items()])

    def _write(self, text):
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # a broken pipe, a full disk, a closed file: go quiet, keep working
            self.every, self.drawn = None, False


def _clock(seconds):
    """``m:ss`` (``h:mm:ss`` from an hour on)."""
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
