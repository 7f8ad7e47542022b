"""Tests of minibasis.progress with a fake clock and a fake stream (no timing in the tests)."""

import io

import pytest

from minibasis.progress import Progress


class Stream(io.StringIO):
    def __init__(self, tty):
        super().__init__()
        self.tty = tty

    def isatty(self):
        return self.tty


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_plain_lines_every_few_seconds_with_rate_and_eta():
    stream, clock = Stream(tty=False), Clock()
    progress = Progress("epoch 2/5", 100, every=5, stream=stream, clock=clock)
    for seconds, done in ((1, 10), (4.9, 49), (5, 50), (7, 70), (10, 80), (20, 100)):
        clock.now = 100.0 + seconds
        progress.update(done, loss=1.25)
    progress.close()
    # Lines at 5 s (≥ 5 s after the start) and at 10 s and 20 s (≥ 5 s after the last line).
    assert stream.getvalue().splitlines() == [
        "epoch 2/5: 50/100 images, 10 img/s, ETA 0:05, loss 1.2500",
        "epoch 2/5: 80/100 images, 8 img/s, ETA 0:02, loss 1.2500",
        "epoch 2/5: 100/100 images, 5 img/s, ETA 0:00, loss 1.2500",
    ]


def test_every_zero_is_a_line_per_update_and_none_is_silent():
    stream = Stream(tty=False)
    progress = Progress("eval", 3, every=0, stream=stream, clock=Clock())
    for done in (1, 2, 3):
        progress.update(done)
    assert [line.split(":")[1].split(",")[0] for line in stream.getvalue().splitlines()] == [
        " 1/3 images",
        " 2/3 images",
        " 3/3 images",
    ]
    assert stream.getvalue().splitlines()[0] == "eval: 1/3 images, ? img/s, ETA ?"  # no time has passed: no rate yet

    for tty in (False, True):
        stream = Stream(tty=tty)
        progress = Progress("eval", 3, every=None, stream=stream, clock=Clock())
        progress.update(3)
        progress.close()
        assert stream.getvalue() == ""


def test_a_bar_on_a_terminal():
    stream, clock = Stream(tty=True), Clock()
    progress = Progress("epoch 1/1", 40, stream=stream, clock=clock)
    clock.now += 2
    progress.update(10)
    clock.now += 11175  # a slow one: 11,177 s for 20 images, so 11,177 s (3:06:17) for the other 20
    progress.update(20)
    progress.close()
    assert stream.getvalue() == (
        "\repoch 1/1 [#######.......................] 10/40 images, 5 img/s, ETA 0:06"
        "\repoch 1/1 [###############...............] 20/40 images, 0 img/s, ETA 3:06:17"
        "\n"
    )


def test_the_run_eta_adds_the_rest_of_the_run_at_the_current_rate():
    """The run ETA covers the whole run: this phase's rest plus the rest of the run, both at the
    current rate."""
    stream, clock = Stream(tty=False), Clock()
    progress = Progress("epoch 1/3", 100, every=0, stream=stream, clock=clock, run_left=lambda rate: 400 / rate)
    clock.now += 5
    progress.update(50)  # 10 img/s: 5 s left of this phase, 40 s of the rest of the run
    assert stream.getvalue() == "epoch 1/3: 50/100 images, 10 img/s, ETA 0:05, run ETA 0:45\n"


class Broken(Stream):
    def write(self, text):
        raise BrokenPipeError(32, "Broken pipe")


@pytest.mark.parametrize("tty", [False, True])
def test_a_broken_stream_silences_the_progress_and_never_raises(tty):
    progress = Progress("epoch 1/1", 10, every=0, stream=Broken(tty=tty), clock=Clock())
    progress.update(5)
    progress.update(10)  # silent now
    progress.close()
    assert progress.every is None


def test_a_closed_stderr_is_quiet(monkeypatch):
    import sys

    monkeypatch.setattr(sys, "stderr", None)  # Python's stderr when file descriptor 2 is closed
    progress = Progress("epoch 1/1", 10)
    progress.update(5)
    progress.close()
    assert progress.every is None
