"""Pre- and post-training diagnostics of a network (``landscape inspect``, DESIGN §8).

Per layer: weight and bias statistics and histograms. Checks, each a ``Finding`` with a severity
(``error`` fails the command, exit 3; ``warning``; ``info``):

- ``symmetry`` (weights.py): units of a layer with identical incoming weights and bias;
- ``dead-units`` (activations.py): ReLU units that output zero for every inspected sample;
- ``saturation`` (saturation.py): softmax outputs within ε of 0 or 1 on the first batch;
- ``activation-growth`` (activations.py): hidden activation RMS growing layer after layer;
- ``not-learning`` (training.py): layers that did not move over a series of checkpoints.

``run_inspect(InspectConfig)`` loads everything as ``compute`` does; ``inspect_model(model,
batches)`` diagnoses a model in memory and leaves it unchanged.

The package itself is callable: ``landscape.inspect(model, data)`` is the Python API's
``landscape.api.inspect`` (the name serves both the package and the function).
"""

from __future__ import annotations

from landscape._callable import api_callable
from landscape.inspect.findings import CHECKS, SEVERITIES, Finding
from landscape.inspect.report import Report, format_report, write_json
from landscape.inspect.run import InspectConfig, expand_checkpoints, inspect_model, run_inspect

api_callable(__name__, "inspect")  # landscape.inspect(model, data) is the API's inspect

__all__ = [
    "CHECKS",
    "SEVERITIES",
    "Finding",
    "InspectConfig",
    "Report",
    "expand_checkpoints",
    "format_report",
    "inspect_model",
    "run_inspect",
    "write_json",
]
