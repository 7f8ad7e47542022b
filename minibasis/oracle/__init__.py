"""minibasis as a test oracle: prove a fast implementation right, and find its first wrong layer.

One call for PyTorch::

    report = check_torch(net, "resnet56-s16u1", regulariser=lambda net: net.orthogonality())
    print(report.text())          # every comparison, its figure and its tolerance
    report.passed, report.first_divergence      # True, None; or False, 'layer2.3.bn_basis1'

It loads random weights (no array at a symmetric default) strictly into ``net``, runs both
sides on probe inputs that reach every branch, and compares every module's output in forward
order (eval and train), the logits, the BN state after the train pass, R and every gradient
of CE + λ·R, each within a tolerance (float64: 1e-9; float32: 10× minibasis' own float32
rounding of that array, 100× for gradients; :mod:`.tolerance`). Outside PyTorch, a golden file (:func:`write_golden`,
``minibasis golden SPEC --out FILE.npz``) holds the same arrays; :func:`check_golden`
checks yours against it with the same report.

The parts: :mod:`.compare` (one difference per array), :mod:`.keys` (key maps: another side's
names), :mod:`.exchange` (the weights both sides run), :mod:`.record` (what minibasis computes,
module by module), :mod:`.probes` (inputs and coverage), :mod:`.tolerance`, :mod:`.case` (one
check's setup), :mod:`.report` (the comparison core and the first divergence),
:mod:`.golden` and :mod:`.torch_check`.

**Key maps.** minibasis names every array by the authors' ``state_dict`` key. Another
implementation may name them otherwise; ``key_map`` (in :func:`check_torch`,
:func:`check_golden`, :func:`export_state_dict`, :func:`save_state_dict` and :func:`compare`)
renames minibasis' keys to the other side's: a dict (keys not in it keep their name; a key
mapped to None is left out) or a function ``key -> new key or None``; a module follows its
weight's key. The common case: a PyTorch model that keeps each shared conv as a top-level
``nn.Parameter`` (``self.shared_basis_1_1 = nn.Parameter(...)``) has the key
``shared_basis_1_1`` where the authors' model has ``shared_basis_1_1.weight``, and its blocks
hold no copies (``layer1.1.shared_basis_1.weight``): :func:`shared_bases_as_parameters` is
that map, for the whole zoo.
"""

from .case import Case, prepare
from .compare import Comparison, compare, relative_difference
from .exchange import export_state_dict, random_weights, save_state_dict
from .golden import check_golden, read_golden, write_golden
from .keys import map_keys, shared_bases_as_parameters
from .probes import coverage, probe_inputs
from .record import module_outputs
from .report import Check, OracleReport, compare_outputs
from .torch_check import check_torch

__all__ = [
    "Case",
    "Check",
    "Comparison",
    "OracleReport",
    "check_golden",
    "check_torch",
    "compare",
    "compare_outputs",
    "coverage",
    "export_state_dict",
    "map_keys",
    "module_outputs",
    "prepare",
    "probe_inputs",
    "random_weights",
    "read_golden",
    "relative_difference",
    "save_state_dict",
    "shared_bases_as_parameters",
    "write_golden",
]
