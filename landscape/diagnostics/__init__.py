"""Pre- and post-training diagnostics of a network (``landscape inspect``, DESIGN §8).

Per layer: weight and bias statistics and histograms. Checks, each a ``Finding`` with a severity
(``error`` fails the command, exit 3; ``warning``; ``info``):

- ``symmetry`` (weights.py): units of a layer with identical incoming weights and bias;
- ``dead-units`` (activations.py): ReLU units that output zero for every inspected sample;
- ``saturation`` (saturation.py): softmax outputs within ε of 0 or 1 on the first batch;
- ``activation-growth`` (activations.py): hidden activation RMS growing layer after layer;
- ``not-learning`` (training.py): layers that did not move over a series of checkpoints.

The run that drives these checks is ``landscape.runs.inspect``: ``run_inspect(InspectConfig)``
loads everything as a surface run does; ``inspect_model(model, batches)`` diagnoses a model in
memory and leaves it unchanged. ``landscape.inspect(model, data)`` is the Python API's function.
"""

from __future__ import annotations

from landscape.diagnostics.findings import CHECKS, SEVERITIES, Finding
from landscape.diagnostics.report import Report, format_report, write_json

__all__ = [
    "CHECKS",
    "SEVERITIES",
    "Finding",
    "Report",
    "format_report",
    "write_json",
]
