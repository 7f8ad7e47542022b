"""minibasis: a reference implementation of shared filter bases for ConvNets in NumPy + autograd.

Kim & Kang, "Learning Shared Filter Bases for Efficient ConvNets" (arXiv 2006.05066).

Layers, low to high (a module imports only from below): kernels (``conv``, ``layers``, with
``conv_reference``/``conv_fast``, ``layers_fast``, ``mode``, ``parallel``, ``backend``,
``recording``), the method (``basis``),
the models (``models/``), files (``weights``, ``files``), data (``data/``), training
(``autodiff``, ``optim``, ``train``, ``runs``, ``progress``), the command (``cli``), and
checking (``testing``, ``oracle``, ``debug``, ``torch_reference``).

Conventions, in every module: ``anp`` is ``autograd.numpy`` (what autograd traces), ``np`` is
plain NumPy; arrays are NCHW, conv weights OIHW, linear weights (out, in); argument checks come
from ``checks`` and read ``name: expected …, got …``.
"""

from .backend import set_threads
from .conv import col2im, conv2d, conv2d_input_grad, conv2d_weight_grad, im2col
from .layers import (
    batch_norm,
    batch_norm_state,
    cross_entropy,
    dropout,
    efficient_channel_attention,
    global_avg_pool,
    linear,
    max_pool2d,
    relu,
    relu6,
    shortcut_a,
    sigmoid,
)
from .mode import reference_mode
from .models import create_model, parse_spec
from .testing import check_gradients
from .weights import load_weights, save_weights

__version__ = "0.1.0"

__all__ = [
    "batch_norm",
    "batch_norm_state",
    "check_gradients",
    "col2im",
    "conv2d",
    "conv2d_input_grad",
    "conv2d_weight_grad",
    "create_model",
    "cross_entropy",
    "dropout",
    "efficient_channel_attention",
    "global_avg_pool",
    "im2col",
    "linear",
    "load_weights",
    "max_pool2d",
    "parse_spec",
    "reference_mode",
    "relu",
    "relu6",
    "save_weights",
    "set_threads",
    "shortcut_a",
    "sigmoid",
]
