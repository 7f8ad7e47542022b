"""Forward + backward of zoo models, minibasis against PyTorch CPU in the same run.

    python bench/bench_zoo.py [--models imagenet-resnet50-shared imagenet-mobilenetv2-shared
                               cifar100-densenet121-single-s16u1 cifar100-resnext50-single-s64u4]
                              [--batch 8] [--size 64] [--repeat 3]

One measurement = training-mode forward, cross-entropy, and the gradient of every parameter
(autograd in minibasis, ``backward()`` in PyTorch), on ``--batch`` random images of
``--size``² pixels (ImageNet models; the CIFAR-100 ones always take 32²: ResNeXt50's head needs
it), in float32 and in float64 (the oracle's precision). Each runs in its own subprocess; the best
of ``--repeat`` timed calls counts. Targets (issues 14, 20): minibasis ≤ 3× PyTorch's time in
float32, ≤ 1× in float64. Peak memory: the growth of the process' peak resident memory over the
timed steps (its resident memory before them subtracted), against PyTorch's measured the same
way; target ≤ 1.5× (DenseNet's concatenations are the known trap). PyTorch runs when torch is
installed.
"""

import json
import subprocess
import sys

from timing import arguments, machine

from minibasis.parallel import available_cores

CHILD = r"""
import json, resource, sys
import numpy as np
sys.path.insert(0, "bench")
from timing import best_time
import minibasis
args = json.loads(sys.argv[1])
minibasis.set_threads(args["threads"])
spec, batch, size, dtype, which, repeat = (args[k] for k in ("spec", "batch", "size", "dtype", "which", "repeat"))
from minibasis.models import create_model
model = create_model(spec)
params, state = model.init(0, dtype=np.dtype(dtype))
rng = np.random.default_rng(0)
x, y = rng.standard_normal((batch, 3, size, size)).astype(dtype), rng.integers(0, model.spec.num_classes, batch)
if which == "torch":
    import torch, torch.nn.functional as F
    torch.set_num_threads(args["threads"])
    from minibasis.torch_reference import build_torch_model
    from minibasis.weights import to_state_dict
    net = build_torch_model(model, to_state_dict(model, params, state), dtype=getattr(torch, dtype)).train()
    xt, yt = torch.tensor(x), torch.tensor(y)
    def step():
        net.zero_grad()
        F.cross_entropy(net(xt), yt).backward()
else:
    from minibasis.autodiff import tree_vjp
    from minibasis.layers import cross_entropy
    dropout_rng = np.random.default_rng(1)
    def step():
        loss = lambda p: cross_entropy(model.apply(p, state, x, train=True, rng=dropout_rng)[0], y)
        value, vjp = tree_vjp(loss, params)
        vjp(np.ones_like(value))
def resident_bytes():  # now (Linux: /proc/self/statm, in pages)
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()
before = resident_bytes()
seconds = best_time(step, repeat)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # (KiB on Linux)
print(json.dumps({"seconds": seconds, "peak_bytes": max(peak - before, 0)}))
"""

TARGETS = {"float32": 3.0, "float64": 1.0}  # minibasis / PyTorch
MEMORY_TARGET = 1.5  # minibasis / PyTorch, peak memory of the steps
CIFAR_SIZE = 32


def measure(spec, which, dtype, args):
    """{"seconds", "peak_bytes"} of one runner, or {"error": its last line of stderr}."""
    size = CIFAR_SIZE if spec.startswith("cifar") else args.size
    payload = json.dumps(
        {
            "spec": spec,
            "batch": args.batch,
            "size": size,
            "dtype": dtype,
            "which": which,
            "repeat": args.repeat,
            "threads": args.threads,
        }
    )
    out = subprocess.run([sys.executable, "-c", CHILD, payload], capture_output=True, text=True)
    if out.returncode:
        return {"error": out.stderr.strip().splitlines()[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def report(spec, dtype, mine, theirs):
    """One line: times, their ratio and the target; peak memories, their ratio and the target."""
    line = f"{spec:<34} {dtype:<8} {mine['seconds']:12.3f} {mine['peak_bytes'] / 2**20:9.0f}"
    if not theirs:
        return line
    ratio, memory = mine["seconds"] / theirs["seconds"], mine["peak_bytes"] / max(theirs["peak_bytes"], 1)
    verdict = f"{'≤' if ratio <= TARGETS[dtype] else '>'} {TARGETS[dtype]}×"
    memory_verdict = f"{'≤' if memory <= MEMORY_TARGET else '>'} {MEMORY_TARGET}×"
    return (
        f"{line} {theirs['seconds']:10.3f} {theirs['peak_bytes'] / 2**20:9.0f} {ratio:6.2f}× {verdict:<6} "
        f"{memory:6.2f}× {memory_verdict}"
    )


def main():
    parser = arguments(__doc__)
    parser.set_defaults(batch=8, repeat=3)
    models = [
        "imagenet-resnet50-shared",
        "imagenet-mobilenetv2-shared",
        "cifar100-densenet121-single-s16u1",
        "cifar100-resnext50-single-s64u4",
    ]
    parser.add_argument("--models", nargs="+", default=models)
    parser.add_argument("--size", type=int, default=64, help="image side in pixels of the ImageNet models (default 64)")
    parser.add_argument(
        "--threads",
        type=int,
        default=available_cores(),
        help="threads of each side, minibasis' workers and torch's (default: the cores here)",
    )
    args = parser.parse_args()
    try:
        import torch  # noqa: F401

        runners = ["minibasis", "torch"]
    except ImportError:
        runners = ["minibasis"]
    print(machine("float32"))
    print(
        f"batch {args.batch}, {args.size}×{args.size} (CIFAR-100 models {CIFAR_SIZE}×{CIFAR_SIZE}), forward + "
        f"every gradient, best of {args.repeat}, each in its own process, {args.threads} thread(s) each"
    )
    print(
        f"{'model':<34} {'dtype':<8} {'minibasis s':>12} {'MiB':>9} {'pytorch s':>10} {'MiB':>9} {'time':>7} "
        f"{'target':<6} {'memory':>7} target"
    )
    for spec in args.models:
        for dtype in ("float32", "float64"):
            results = {which: measure(spec, which, dtype, args) for which in runners}
            for which, result in results.items():
                if "error" in result:
                    print(f"{spec:<34} {dtype:<8} {which} failed: {result['error']}")
            mine, theirs = (results.get(which) for which in ("minibasis", "torch"))
            if mine and "error" not in mine:
                print(report(spec, dtype, mine, theirs if theirs and "error" not in theirs else None))


if __name__ == "__main__":
    main()
