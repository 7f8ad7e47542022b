"""Seconds and peak memory of one full training step, minibasis against PyTorch CPU, at a given
number of threads, idle or beside a second busy process.

    python bench/bench_train.py [--models resnet56 resnet56-s16u1] [--batch 128] [--steps 3]
                                [--threads 1 2] [--contended] [--device cpu|gpu] [--dtype float32]

A step = forward (train mode), cross-entropy + λ·orthogonality, backward, SGD update
(momentum 0.9, weight decay 5e-4), λ as ``minibasis train`` sets it by default (10 for the
shared variants, 0 for the original and NonShared). Every measurement runs in its own
subprocess, so the peak resident memory (ru_maxrss) is that step's alone. ``--threads N``:
minibasis with N worker threads (``minibasis.set_threads``; BLAS on one thread), PyTorch with
``torch.set_num_threads(N)``: each at the same thread count. ``--contended``: a second copy of
the same step runs in another process for the whole measurement (the slowdown against idle is
printed). PyTorch runs when torch is installed (the optional ``bench`` extra), with the authors'
model structure built from minibasis' weights. Targets (issue 15, float32, 2 threads): resnet56
≤ 2×, resnet56-s16u1 ≤ 1.25× PyTorch; 2 threads ≥ 1.6× faster than 1; contended ≤ 2.5× idle.
"""

import json
import subprocess
import sys
import time

from timing import arguments, machine

from minibasis import backend
from minibasis.train import TrainConfig

CHILD = r"""
import json, resource, sys, time
import numpy as np
args = json.loads(sys.argv[1])
names = ("spec", "batch", "steps", "dtype", "which", "lam", "threads")
spec, batch, steps, dtype, which, lam, threads = (args[k] for k in names)
rng = np.random.default_rng(0)
x = rng.standard_normal((batch, 3, 32, 32)).astype(dtype)
y = rng.integers(0, 10, batch)
times = []
forever = steps == 0  # the busy neighbour of --contended: step until killed
if which == "torch":
    import torch, torch.nn.functional as F
    torch.set_num_threads(threads)
    from minibasis.models import create_model
    from minibasis.weights import to_state_dict
    from minibasis.torch_reference import build_torch_model
    model = create_model(spec)
    params, state = model.init(0)
    net = build_torch_model(model, to_state_dict(model, params, state)).to(getattr(torch, dtype))
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    xt, yt = torch.tensor(x), torch.tensor(y)
    net.train()
    while forever or len(times) < steps + 2:  # PyTorch (oneDNN) needs a few steps to settle
        t = time.perf_counter()
        opt.zero_grad()
        loss = F.cross_entropy(net(xt), yt) + (lam * net.orthogonality() if lam else 0)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t)
else:
    import minibasis
    from minibasis import backend
    from minibasis.autodiff import gradient_and_aux
    from minibasis.models import create_model
    from minibasis.optim import sgd_step
    from minibasis.train import training_loss
    minibasis.set_threads(threads)
    model = create_model(spec)
    params, state = model.init(0, dtype=np.dtype(dtype))
    step = gradient_and_aux(lambda p, s, x, y: training_loss(model, p, s, x, y, lam))
    momentum = None
    with backend.use(backend.get(which)):
        while forever or len(times) < steps + 1:
            t = time.perf_counter()
            grads, (loss, ce, r, logits, state) = step(params, state, x, y)
            params, momentum = sgd_step(params, grads, momentum, lr=0.1, momentum=0.9, weight_decay=5e-4)
            times.append(time.perf_counter() - t)
seconds = min(times[2:] if which == "torch" else times[1:])
print(json.dumps({"seconds": seconds, "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

TIME_TARGETS = {"resnet56": 2.0, "resnet56-s16u1": 1.25}  # minibasis / PyTorch CPU at 2 threads, float32


def payload(spec, which, threads, args, steps=None):
    return json.dumps(
        {
            "spec": spec,
            "batch": args.batch,
            "steps": args.steps if steps is None else steps,
            "dtype": args.dtype,
            "which": which,
            "threads": threads,
            "lam": TrainConfig(model=spec).resolved_lambda(),
        }  # λ = 10 for the shared variants, else 0
    )


def measure(spec, which, threads, args, contended):
    neighbour = None
    if contended:  # the same step, forever, in another process
        neighbour = subprocess.Popen(
            [sys.executable, "-c", CHILD, payload(spec, which, threads, args, steps=0)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(3)  # let it start its steps
    try:
        out = subprocess.run(
            [sys.executable, "-c", CHILD, payload(spec, which, threads, args)], capture_output=True, text=True
        )
    finally:
        if neighbour is not None:
            neighbour.kill()
            neighbour.wait()
    if out.returncode:
        return None, out.stderr.strip().splitlines()[-1]
    return json.loads(out.stdout.strip().splitlines()[-1]), None


def main():
    parser = arguments(__doc__, repeat=False)
    parser.add_argument("--models", nargs="+", default=["resnet56", "resnet56-s16u1"])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread counts to measure (default 1 2)")
    parser.add_argument("--contended", action="store_true", help="also measure beside a second busy copy")
    parser.add_argument("--device", default="cpu", choices=backend.NAMES)
    args = parser.parse_args()
    try:
        import torch  # noqa: F401

        have_torch = True
    except ImportError:
        have_torch = False
    print(machine(args.dtype))
    print(f"batch {args.batch}, {args.dtype}, best of {args.steps} steps, each measurement in its own process")
    print(
        f"{'model':<16} {'runner':<13} {'threads':>7} {'load':<9} {'s/step':>7} {'peak MiB':>9} "
        f"{'vs pytorch':>11} {'vs idle':>8}"
    )
    runners = ["cpu"] + (["gpu"] if args.device == "gpu" else []) + (["torch"] if have_torch else [])
    for spec in args.models:
        results = {}
        for threads in args.threads:
            for load in ["idle"] + (["contended"] if args.contended else []):
                for which in runners:
                    result, error = measure(spec, which, threads, args, load == "contended")
                    if error:
                        print(f"{spec:<16} {which:<13} {threads:>7} {load:<9} failed: {error}")
                    else:
                        results[which, threads, load] = result
        for (which, threads, load), r in results.items():
            torch_r, idle_r = results.get(("torch", threads, load)), results.get((which, threads, "idle"))
            ratio = f"{r['seconds'] / torch_r['seconds']:.2f}×" if torch_r and which != "torch" else ""
            slowdown = f"{r['seconds'] / idle_r['seconds']:.2f}×" if load == "contended" and idle_r else ""
            name = {"cpu": "minibasis", "gpu": "minibasis-gpu", "torch": "pytorch"}[which]
            print(
                f"{spec:<16} {name:<13} {threads:>7} {load:<9} {r['seconds']:7.3f} {r['peak_mib']:9.0f} "
                f"{ratio:>11} {slowdown:>8}"
            )
        one, two = results.get(("cpu", 1, "idle")), results.get(("cpu", 2, "idle"))
        if one and two:
            print(
                f"{'':<16} minibasis 2 threads against 1: {one['seconds'] / two['seconds']:.2f}× faster (target ≥ 1.6×)"
            )
        torch_two = results.get(("torch", 2, "idle"))
        if two and torch_two and spec in TIME_TARGETS:
            ratio = two["seconds"] / torch_two["seconds"]
            print(
                f"{'':<16} at 2 threads {ratio:.2f}× PyTorch's time "
                f"({'≤' if ratio <= TIME_TARGETS[spec] else '>'} the target {TIME_TARGETS[spec]}×)"
            )


if __name__ == "__main__":
    main()
