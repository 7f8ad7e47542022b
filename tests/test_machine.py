"""``minibasis info --machine``: the speed line the README's times are stated with."""

import re
import time

import numpy as np

from minibasis import machine
from minibasis.cli import main

SPEED_LINE = re.compile(
    r"GEMM (\d+) GFLOP/s \(float32 512³, 1 BLAS thread\); training (\d+) img/s "
    r"\(resnet20-s16u1 step, batch 64, (\d+) threads\); load (\d+\.\d|nan) on (\d+) cores"
)


def test_gemm_rate_is_the_flops_of_one_product_over_its_best_time():
    n = 256
    start = time.perf_counter()
    rate = machine.gemm_gflops(n=n, repeat=3)
    whole_call = time.perf_counter() - start  # four products and the setup: longer than the best one
    assert np.isfinite(rate) and 2 * n**3 / whole_call / 1e9 < rate


def test_training_rate_is_the_images_of_one_step_over_its_best_time():
    start = time.perf_counter()
    rate = machine.training_images_per_second(spec="resnet14-s2u1", batch=4, repeat=1)
    whole_call = time.perf_counter() - start  # the model, a warm-up step and a timed one
    assert np.isfinite(rate) and 4 / whole_call < rate < 4 * 1e6


def test_info_machine_prints_one_speed_line(capsys):
    assert main(["info", "--machine", "--threads", "1"]) == 0
    out = capsys.readouterr().out.strip()
    match = SPEED_LINE.fullmatch(out)
    assert match, f"not a speed line: {out!r}"
    assert int(match[1]) > 0 and int(match[2]) > 0 and match[3] == "1"


def test_info_machine_takes_no_model_spec(capsys):
    assert main(["info", "--machine", "resnet56"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == "minibasis info: error: --machine: expected no model spec (it measures the machine), got resnet56"
