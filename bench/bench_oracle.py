"""Seconds of a full ``check_torch`` and of ``minibasis golden`` per zoo spec, at its default size.

    python bench/bench_oracle.py [--models resnet56-s16u1 imagenet-mobilenetv2-shared] [--batch 2]
                                 [--image-size S] [--dtype float64]

Per spec, measured once each in this process (these are whole checks, not kernels): one
minibasis training step (forward, CE + λ·R, every gradient: the reference), ``check_torch`` on
``torch_reference``'s model (when torch is installed and torch_reference has the family), and
``write_golden`` into a temporary folder, with its file size. The ratios to the training step
say what the oracle's passes cost: an eval pass, a recorded train pass, PyTorch's two passes,
a float32 run for float32 tolerances (golden files always measure both).
"""

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
from timing import arguments, machine

from minibasis.autodiff import gradient_and_aux
from minibasis.models import create_model
from minibasis.models.info import ZOO
from minibasis.oracle import check_torch, probe_inputs, random_weights, write_golden
from minibasis.oracle.case import default_lambda
from minibasis.train import training_loss


def seconds(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def training_step(model, batch, size, dtype):
    params, state = random_weights(model, 0, dtype=dtype)
    x, labels = probe_inputs(batch, size, 0, dtype), np.arange(batch) % model.spec.num_classes
    step = gradient_and_aux(lambda p: training_loss(model, p, state, x, labels, default_lambda(model)))
    return seconds(lambda: step(params))[0]


def torch_check(spec, model, batch, size, dtype):
    try:
        import torch

        from minibasis.torch_reference import build_torch_model
        from minibasis.weights import to_state_dict
    except ImportError:
        return None
    torch.set_num_threads(1)
    try:
        net = build_torch_model(model, to_state_dict(model, *random_weights(model, 0)), dtype=getattr(torch, dtype))
    except ValueError:  # a family torch_reference does not have
        return None
    regulariser = (lambda n: n.orthogonality()) if hasattr(net, "orthogonality") else None
    elapsed, report = seconds(lambda: check_torch(net, spec, batch=batch, image_size=size, regulariser=regulariser))
    assert report.passed, report.text(every=False)
    return elapsed


def main():
    parser = arguments(__doc__, repeat=False)
    parser.set_defaults(batch=2, dtype="float64")
    parser.add_argument("--models", nargs="+", default=[row[0] for row in ZOO], help="specs (default: the zoo)")
    parser.add_argument("--image-size", type=int, help="default: each model's dataset size (32 or 224)")
    args = parser.parse_args()
    print(machine(args.dtype, repeat=2))
    print(
        f"{'spec':<32} {'size':>4} {'train step s':>12} {'check_torch s':>14} {'×step':>6} "
        f"{'golden s':>9} {'×step':>6} {'file MB':>8}"
    )
    for spec in args.models:
        model = create_model(spec)
        size = args.image_size or model.standard_size
        step = training_step(model, args.batch, size, args.dtype)
        check = torch_check(spec, model, args.batch, size, args.dtype)
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "g.npz"
            start = time.perf_counter()
            write_golden(path, spec, batch=args.batch, image_size=size, dtype=args.dtype)
            golden, megabytes = time.perf_counter() - start, path.stat().st_size / 1e6
        shown = f"{check:>14.2f} {check / step:>6.1f}" if check is not None else f"{'(no torch model)':>21}"
        print(f"{spec:<32} {size:>4} {step:>12.2f} {shown} {golden:>9.2f} {golden / step:>6.1f} {megabytes:>8.1f}")


if __name__ == "__main__":
    main()
