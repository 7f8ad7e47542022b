"""Forward + backward of the ImageNet zoo models, minibasis against PyTorch CPU in the same run.

    python bench/bench_zoo.py [--models imagenet-resnet50-shared imagenet-mobilenetv2-shared]
                              [--batch 8] [--size 64] [--repeat 3]

One measurement = training-mode forward, cross-entropy, and the gradient of every parameter
(autograd in minibasis, ``backward()`` in PyTorch), on ``--batch`` random images of
``--size``² pixels, in float32 and in float64 (the oracle's precision). Each runs in its own
subprocess; the best of ``--repeat`` timed calls counts. Targets (issue 14): minibasis ≤ 3×
PyTorch's time in float32, ≤ 1× in float64. PyTorch runs when torch is installed.
"""

import json
import subprocess
import sys

from timing import arguments, machine

CHILD = r"""
import json, sys
import numpy as np
sys.path.insert(0, "bench")
from timing import best_time
args = json.loads(sys.argv[1])
spec, batch, size, dtype, which, repeat = (args[k] for k in ("spec", "batch", "size", "dtype", "which", "repeat"))
from minibasis.models import create_model
model = create_model(spec, num_classes=1000)
params, state = model.init(0, dtype=np.dtype(dtype))
rng = np.random.default_rng(0)
x, y = rng.standard_normal((batch, 3, size, size)).astype(dtype), rng.integers(0, 1000, batch)
if which == "torch":
    import torch, torch.nn.functional as F
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
print(json.dumps({"seconds": best_time(step, repeat)}))
"""

TARGETS = {"float32": 3.0, "float64": 1.0}  # minibasis / PyTorch


def measure(spec, which, dtype, args):
    payload = json.dumps({"spec": spec, "batch": args.batch, "size": args.size, "dtype": dtype, "which": which, "repeat": args.repeat})
    out = subprocess.run([sys.executable, "-c", CHILD, payload], capture_output=True, text=True)
    if out.returncode:
        return None, out.stderr.strip().splitlines()[-1]
    return json.loads(out.stdout.strip().splitlines()[-1])["seconds"], None


def main():
    parser = arguments(__doc__)
    parser.set_defaults(batch=8, repeat=3)
    parser.add_argument("--models", nargs="+", default=["imagenet-resnet50-shared", "imagenet-mobilenetv2-shared"])
    parser.add_argument("--size", type=int, default=64, help="image side in pixels (default 64)")
    args = parser.parse_args()
    try:
        import torch  # noqa: F401

        runners = ["minibasis", "torch"]
    except ImportError:
        runners = ["minibasis"]
    print(machine("float32"))
    print(f"batch {args.batch}, {args.size}×{args.size}, forward + every gradient, best of {args.repeat}, each in its own process")
    print(f"{'model':<30} {'dtype':<8} {'minibasis s':>12} {'pytorch s':>10} {'ratio':>7}  target")
    for spec in args.models:
        for dtype in ("float32", "float64"):
            times = {}
            for which in runners:
                seconds, error = measure(spec, which, dtype, args)
                if error:
                    print(f"{spec:<30} {dtype:<8} {which} failed: {error}")
                times[which] = seconds
            mine, theirs = times.get("minibasis"), times.get("torch")
            if mine and theirs:
                ratio = mine / theirs
                verdict = f"{'≤' if ratio <= TARGETS[dtype] else '>'} {TARGETS[dtype]}×"
                print(f"{spec:<30} {dtype:<8} {mine:12.3f} {theirs:10.3f} {ratio:6.2f}×  {verdict}")
            elif mine:
                print(f"{spec:<30} {dtype:<8} {mine:12.3f} {'—':>10}")


if __name__ == "__main__":
    main()
