"""Convolution throughput against plain GEMMs of the same sizes, measured in the same run.

    python bench/bench_conv.py [--batch 128] [--dtype float32] [--repeat 5]

For every CIFAR ResNet-56 conv shape: the time of conv2d forward and of forward + both
gradients (conv2d's VJP, as a training step runs it), and of three ``numpy.matmul`` calls of
a conv's GEMM sizes, 2·O·K·P flops each (forward (O, K) @ (K, P), input gradient as the
textbook (K, O) @ (O, P), weight gradient (K, P) @ (P, O), with K = C·kh·kw and
P = N·Ho·Wo; minibasis' stride-1 input gradient runs a GEMM of the forward's shape instead,
with the same flops). The ratio GEMM time / conv time is the fraction of the GEMM throughput
the conv reaches (the rest is im2col data movement). Target for the 3×3 shapes (issue 2):
≥ 60 %. When torch is installed the same conv in PyTorch CPU is timed too.
"""

import numpy as np
from timing import arguments, best_time, machine

from minibasis.autodiff import tree_vjp
from minibasis.conv import conv2d

# (name, C_in, C_out, size, kernel, stride, padding)
SHAPES = [
    ("3x3 16->16 @32", 16, 16, 32, 3, 1, 1),
    ("3x3 32->32 @16", 32, 32, 16, 3, 1, 1),
    ("3x3 64->64 @8", 64, 64, 8, 3, 1, 1),
    ("3x3/2 16->32 @32", 16, 32, 32, 3, 2, 1),
    ("3x3/2 32->64 @16", 32, 64, 16, 3, 2, 1),
    ("1x1 17->16 @32", 17, 16, 32, 1, 1, 0),
    ("1x1 34->32 @16", 34, 32, 16, 1, 1, 0),
    ("1x1 68->64 @8", 68, 64, 8, 1, 1, 0),
]


def main():
    args = arguments(__doc__).parse_args()
    dtype = np.dtype(args.dtype)
    print(machine(dtype, args.repeat))
    print(f"batch {args.batch}, {dtype}\n")
    rng = np.random.default_rng(0)
    header = f"{'shape':<18} {'fwd ms':>8} {'fwd+bwd ms':>11} {'GEMMs ms':>9} {'GEMM/conv':>10} {'GFLOP/s':>8}"
    rows = []
    for name, C, O, size, k, s, p in SHAPES:
        x = rng.standard_normal((args.batch, C, size, size)).astype(dtype)
        w = rng.standard_normal((O, C, k, k)).astype(dtype)
        hp = dict(stride=s, padding=p)
        y = conv2d(x, w, **hp)
        g = rng.standard_normal(y.shape).astype(dtype)
        forward = best_time(lambda: conv2d(x, w, **hp), args.repeat)

        def both():  # as in a training step and as torch's backward(g): forward, then the VJP
            _, vjp = tree_vjp(lambda p: conv2d(p["x"], p["w"], **hp), {"x": x, "w": w})
            vjp(g)

        total = best_time(both, args.repeat)
        K, P = C * k * k, y.shape[0] * y.shape[2] * y.shape[3]
        wm, cols, dy = (
            rng.standard_normal((O, K)).astype(dtype),
            rng.standard_normal((K, P)).astype(dtype),
            rng.standard_normal((O, P)).astype(dtype),
        )

        def gemms():
            wm @ cols
            wm.T @ dy
            cols @ dy.T

        gemm = best_time(gemms, args.repeat)
        flops = 3 * 2 * O * K * P
        rows.append(
            (
                name,
                x,
                w,
                g,
                hp,
                total,
                f"{name:<18} {forward * 1e3:8.1f} {total * 1e3:11.1f} {gemm * 1e3:9.1f} {gemm / total:10.0%} "
                f"{flops / total / 1e9:8.0f}",
            )
        )
    # PyTorch only after every NumPy timing: its OpenMP threads keep spinning after each call
    # and would slow NumPy's BLAS threads down if interleaved.
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        torch = None
    print(header + (f" {'torch ms':>9} {'vs torch':>9} {'target':>7}" if torch else ""))
    for name, x, w, g, hp, total, line in rows:
        if torch:
            xt = torch.tensor(x, requires_grad=True)
            wt = torch.tensor(w, requires_grad=True)
            gt = torch.tensor(g)
            torch_time = best_time(lambda: F.conv2d(xt, wt, **hp).backward(gt), args.repeat)
            # Issue 8's targets: float32 3×3 ≤ 2×, 1×1 ≤ 1×; float64 ≤ 1× PyTorch CPU.
            target = 1.0 if dtype == np.float64 or w.shape[2:] == (1, 1) else 2.0
            ratio = total / torch_time
            line += f" {torch_time * 1e3:9.1f} {ratio:8.2f}× {'≤' if ratio <= target else '>'}{target:.0f}×"
        print(line)


if __name__ == "__main__":
    main()
