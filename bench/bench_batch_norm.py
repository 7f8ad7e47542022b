"""Batch norm + ReLU, forward and backward (training mode), against PyTorch CPU in the same run.

    python bench/bench_batch_norm.py [--batch 128] [--dtype float32] [--repeat 5]

For the ResNet-56 activation shapes. Target: ≤ 2× PyTorch CPU. Without torch only the
minibasis times are printed.
"""

import numpy as np
from timing import arguments, best_time, machine

from minibasis.autodiff import tree_vjp
from minibasis.layers import batch_norm, batch_norm_state

SHAPES = [(16, 32), (17, 32), (32, 16), (34, 16), (64, 8), (68, 8)]  # (channels, pixels per side)


def main():
    args = arguments(__doc__).parse_args()
    rng = np.random.default_rng(0)
    print(machine(args.dtype, args.repeat))
    print(f"batch {args.batch}, {args.dtype}; BN (train mode) + ReLU, forward + backward")
    rows = []
    for C, size in SHAPES:
        x = rng.standard_normal((args.batch, C, size, size)).astype(args.dtype)
        g = rng.standard_normal(x.shape).astype(args.dtype)
        gamma, beta = np.ones(C, args.dtype), np.zeros(C, args.dtype)
        state = batch_norm_state(C, np.dtype(args.dtype))

        def forward_backward():  # what torch's .backward(g) does: the VJP applied to g, no loss
            _, vjp = tree_vjp(
                lambda p: batch_norm(p["x"], p["weight"], p["bias"], state, train=True, relu=True)[0],
                {"x": x, "weight": gamma, "bias": beta},
            )
            return vjp(g)

        ours = best_time(forward_backward, args.repeat)
        rows.append((C, x, g, ours, f"{C}×{size}×{size:<5} {ours * 1e3:13.2f}"))
    # PyTorch only after every NumPy timing: its OpenMP threads keep spinning after each call
    # and would slow NumPy's BLAS threads down if interleaved (as in bench_conv.py).
    try:
        import torch
    except ImportError:
        torch = None
    print(f"{'shape':<12} {'minibasis ms':>13}" + (f" {'torch ms':>9} {'ratio':>7} {'target':>6}" if torch else ""))
    for C, x, g, ours, line in rows:
        if torch:
            bn = torch.nn.BatchNorm2d(C).to(getattr(torch, args.dtype)).train()
            xt = torch.tensor(x, requires_grad=True)
            gt = torch.tensor(g)
            theirs = best_time(lambda: torch.relu(bn(xt)).backward(gt), args.repeat)
            line += (
                f" {theirs * 1e3:9.2f} {ours / theirs:6.2f}× {'≤' if ours <= 2 * theirs else '>'}2×"  # issue 8's target
            )
        print(line)


if __name__ == "__main__":
    main()
