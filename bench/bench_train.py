"""Images per second and peak memory of one full training step, minibasis against PyTorch CPU.

    python bench/bench_train.py [--models resnet56 resnet56-s16u1] [--batch 128] [--steps 3]
                                [--device cpu|gpu] [--dtype float32]

A step = forward (train mode), cross-entropy + λ·orthogonality, backward, SGD update
(momentum 0.9, weight decay 5e-4), λ as ``minibasis train`` sets it by default
(``TrainConfig.resolved_lambda()``: 10 for the shared variants, 0 for the original and
NonShared). Every measurement runs in its own subprocess, so the peak resident memory
(ru_maxrss) is that step's alone. PyTorch runs when torch is installed (the optional ``bench``
extra) with the authors' model structure built from minibasis' weights, and the ratios
printed are minibasis time / PyTorch time measured in the same run.
With ``--device gpu`` the convolutions run on CuPy and the CPU path is measured beside it.
"""

import json
import subprocess
import sys

from timing import arguments, machine

from minibasis import backend
from minibasis.train import TrainConfig

CHILD = r"""
import json, resource, sys, time
import numpy as np
args = json.loads(sys.argv[1])
spec, batch, steps, dtype, which, lam = (args[k] for k in ("spec", "batch", "steps", "dtype", "which", "lam"))
rng = np.random.default_rng(0)
x = rng.standard_normal((batch, 3, 32, 32)).astype(dtype)
y = rng.integers(0, 10, batch)
times = []
if which == "torch":
    import torch, torch.nn.functional as F
    from minibasis.models import create_model
    from minibasis.weights import to_state_dict
    from minibasis.torch_reference import build_torch_model
    model = create_model(spec)
    params, state = model.init(0)
    net = build_torch_model(model, to_state_dict(model, params, state)).to(getattr(torch, dtype))
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    xt, yt = torch.tensor(x), torch.tensor(y)
    net.train()
    for _ in range(steps + 2):  # PyTorch (oneDNN) needs a few steps to settle
        t = time.perf_counter()
        opt.zero_grad()
        loss = F.cross_entropy(net(xt), yt) + (lam * net.orthogonality() if lam else 0)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t)
else:
    from minibasis import backend
    from minibasis.autodiff import gradient_and_aux
    from minibasis.models import create_model
    from minibasis.optim import sgd_step
    from minibasis.train import training_loss
    model = create_model(spec)
    params, state = model.init(0, dtype=np.dtype(dtype))
    step = gradient_and_aux(lambda p, s, x, y: training_loss(model, p, s, x, y, lam))
    momentum = None
    with backend.use(backend.get(which)):
        for _ in range(steps + 1):
            t = time.perf_counter()
            grads, (loss, ce, r, logits, state) = step(params, state, x, y)
            params, momentum = sgd_step(params, grads, momentum, lr=0.1, momentum=0.9, weight_decay=5e-4)
            times.append(time.perf_counter() - t)
print(json.dumps({"seconds": min(times[2:] if which == "torch" else times[1:]), "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


TIME_TARGETS = {"resnet56": 2.5, "resnet56-s16u1": 1.5}  # minibasis / PyTorch CPU, float32


def measure(spec, which, args):
    payload = json.dumps(
        {"spec": spec, "batch": args.batch, "steps": args.steps, "dtype": args.dtype, "which": which,
         "lam": TrainConfig(model=spec).resolved_lambda()}  # λ = 10 for the shared variants, else 0
    )
    out = subprocess.run([sys.executable, "-c", CHILD, payload], capture_output=True, text=True)
    if out.returncode:
        return None, out.stderr.strip().splitlines()[-1]
    return json.loads(out.stdout.strip().splitlines()[-1]), None


def main():
    parser = arguments(__doc__, repeat=False)
    parser.add_argument("--models", nargs="+", default=["resnet56", "resnet56-s16u1"])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--device", default="cpu", choices=backend.NAMES)
    args = parser.parse_args()
    try:
        import torch  # noqa: F401

        have_torch = True
    except ImportError:
        have_torch = False
    print(machine(args.dtype))
    print(f"batch {args.batch}, {args.dtype}, best of {args.steps} steps, each model in its own process")
    print(f"{'model':<18} {'runner':<10} {'s/step':>7} {'img/s':>7} {'peak MiB':>9} {'time ratio':>11} {'memory ratio':>13}")
    for spec in args.models:
        runners = ["cpu"] + (["gpu"] if args.device == "gpu" else []) + (["torch"] if have_torch else [])
        results = {}
        for which in runners:
            result, error = measure(spec, which, args)
            if error:
                print(f"{spec:<18} {which:<10} failed: {error}")
                continue
            results[which] = result
        reference = results.get("torch") or results.get("cpu")
        for which, r in results.items():
            ratio = f"{r['seconds'] / reference['seconds']:.2f}×" if reference else ""
            mem = f"{r['peak_mib'] / reference['peak_mib']:.2f}×" if reference else ""
            name = "minibasis" if which == "cpu" else ("minibasis-gpu" if which == "gpu" else "pytorch")
            print(f"{spec:<18} {name:<10} {r['seconds']:7.3f} {args.batch / r['seconds']:7.0f} {r['peak_mib']:9.0f} {ratio:>11} {mem:>13}")
        if "torch" in results and "cpu" in results:  # issue 8's targets for the CPU step
            time_target = TIME_TARGETS.get(spec)
            time_ratio = results["cpu"]["seconds"] / results["torch"]["seconds"]
            mem_ratio = results["cpu"]["peak_mib"] / results["torch"]["peak_mib"]
            verdict = lambda ratio, target: f"{ratio:.2f}× {'≤' if ratio <= target else '>'} {target}×"
            time_part = f"time {verdict(time_ratio, time_target)}, " if time_target else ""
            print(f"{'':<18} target     {time_part}memory {verdict(mem_ratio, 2)}")
    print("ratios: against PyTorch CPU when installed, else against minibasis CPU")


if __name__ == "__main__":
    main()
