"""The inspection report: a terminal table with the findings, and a JSON document.

JSON (schema ``landscape.inspect`` version 1), top level: ``findings`` (a list of ``{check,
layer, severity, message}``), ``counts``, ``layers`` (per-layer statistics of every parameter
tensor), ``activations`` (every recorded output in forward order), ``depth_scale``,
``saturation``, ``checkpoints`` (null without ``--checkpoints``), ``skipped`` (checks that could
not run, with the reason) and provenance (``model``, ``data``, versions, ``created``).
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from landscape._files import check_not_hdf5, check_output, write_bytes_atomically
from landscape.diagnostics.activations import ActivationStats
from landscape.diagnostics.findings import Finding, severity_counts, sort_findings
from landscape.diagnostics.saturation import Saturation
from landscape.diagnostics.training import Movement
from landscape.diagnostics.weights import LayerReport
from landscape.errors import ConfigError

SCHEMA = "landscape.inspect"
SCHEMA_VERSION = 1
REPR_FINDINGS = 5  # findings a report's repr lists; .findings holds them all
REPR_WIDTH = 120  # ... each cut to this many characters


@dataclass
class Report:
    layers: list[LayerReport]
    activations: list[ActivationStats]
    depth_scale: list[tuple[str, float]]  # (layer, RMS of its output), the input first
    saturation: Saturation | None
    findings: list[Finding]
    samples: int  # samples run through the model
    skipped: list[str] = field(default_factory=list)
    checkpoints: Movement | None = None
    batchnorm: str | None = None  # which statistics BN layers used in the forward; None: no BN
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def has_errors(self) -> bool:
        return any(f.severity == "error" for f in self.findings)

    def __repr__(self) -> str:
        """A few lines: what was inspected and the findings (``format_report`` has it all)."""
        head = [*_header(self)] if self.provenance else []
        lines = _findings(self.findings)
        more = len(lines) - 1 - REPR_FINDINGS
        if more > 0:
            lines = [*lines[: 1 + REPR_FINDINGS], f"  ... and {more} more in .findings"]
        lines = [
            line if len(line) <= REPR_WIDTH else line[: REPR_WIDTH - 1] + "…" for line in lines
        ]
        return "\n".join([f"<landscape inspect report: {self._size()}>", *head, *lines])

    def _repr_html_(self) -> str:
        """Jupyter's view: what was inspected and the table of findings."""
        head = (
            "".join(f"<br>{html.escape(line)}" for line in _header(self)) if self.provenance else ""
        )
        counts = html.escape(_findings(self.findings)[0])
        rows = "".join(
            "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in
                             (f.severity, f.check, f.layer or "(model)", f.message)) + "</tr>"
            for f in sort_findings(self.findings)
        )  # fmt: skip
        table = (
            "<table><tr><th>severity</th><th>check</th><th>layer</th><th>message</th></tr>"
            f"{rows}</table>"
            if rows
            else ""
        )
        return f"<b>landscape inspect report</b>: {self._size()}{head}<br>{counts}{table}"

    def _size(self) -> str:
        return f"{len(self.layers)} layers, {self.samples} samples"

    def to_dict(self) -> dict[str, Any]:
        findings = sort_findings(self.findings)
        out = {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, **self.provenance}
        out.update(
            findings=[f.to_dict() for f in findings],
            counts=severity_counts(findings),
            samples=self.samples,
            layers=[layer.to_dict() for layer in self.layers],
            activations=[a.to_dict() for a in self.activations],
            depth_scale=[{"name": n, "rms": rms} for n, rms in self.depth_scale],
            saturation=self.saturation.to_dict() if self.saturation else None,
            checkpoints=self.checkpoints.to_dict() if self.checkpoints else None,
            skipped=list(self.skipped),
            batchnorm=self.batchnorm,
        )
        return _json_safe(out)


def _json_safe(value: Any) -> Any:
    """NaN and infinities become null (JSON has neither); tuples become lists."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def write_json(report: Report, path: str | Path) -> Path:
    """Write the report atomically (a temporary file beside it, then a rename)."""
    text = json.dumps(report.to_dict(), indent=2, allow_nan=False)
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        target = check_output(path, "--json")  # a regular file or none: never a FIFO or device
        check_not_hdf5(target, "--json")
        write_bytes_atomically(target, (text + "\n").encode())
    except OSError as exc:
        raise ConfigError(
            f"cannot write the JSON report {str(path)!r} ({exc.strerror}); check --json"
        ) from None
    return target


# --- terminal -----------------------------------------------------------------------------------

COLUMNS = ("layer", "kind", "shape", "params", "mean", "std", "|max|", "zeros", "dead", "act rms")


def format_report(report: Report) -> str:
    """The per-layer table, then the summaries, the skipped checks and the findings."""
    lines = [*_header(report), ""] if report.provenance else []
    lines += [*_table(report), ""]
    lines += _summaries(report)
    lines += [f"skipped: {s}" for s in report.skipped]
    lines += [f"batchnorm: {report.batchnorm}"] if report.batchnorm else []
    lines += ["", *_findings(report.findings)]
    return "\n".join(lines)


def _header(report: Report) -> list[str]:
    p = report.provenance
    model = p.get("model", {})
    data = p.get("data", {})
    where = (
        f"checkpoint {model['checkpoint']}"
        if model.get("checkpoint")
        else f"initialization (seed {model.get('seed', 0)})"
    )
    split = f" {data['split']}" if data.get("split") else ""
    return [
        f"model {model.get('name', '?')} at {where}",
        f"data {data.get('name', '?')}{split}: {report.samples} samples on {p.get('device', '?')}",
    ]


def _table(report: Report) -> list[str]:
    rows = [list(COLUMNS)]
    for layer in report.layers:
        w = layer.tensors.get("weight") or next(iter(layer.tensors.values()), None)
        rows.append(
            [
                layer.name,
                layer.kind,
                "x".join(map(str, w.shape)) if w else "",
                str(layer.params),
                _num(w.mean) if w else "",
                _num(w.std) if w else "",
                _num(w.abs_max) if w else "",
                _pct(w.zero_fraction) if w else "",
                _pct(layer.dead_fraction),
                _num(layer.output_rms),
            ]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    numeric = set(range(3, len(COLUMNS)))
    return [
        "  ".join(
            c.rjust(w) if i in numeric else c.ljust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ).rstrip()
        for r in rows
    ]


def _summaries(report: Report) -> list[str]:
    lines = []
    s = report.saturation
    if s is not None:
        lines.append(
            f"saturation: {s.share:.1%} of softmax outputs within ε={s.epsilon:g} of 0 or 1 "
            f"(first batch: {s.samples} samples, {s.classes} classes)"
        )
    if len(report.depth_scale) > 1:
        chain = " → ".join(_num(rms) for _, rms in report.depth_scale)
        lines.append(f"activation RMS by depth (input first): {chain}")
    if report.checkpoints is not None:
        lines += _movement(report.checkpoints)
    return lines


def _movement(movement: Movement) -> list[str]:
    files = movement.files
    lines = [f"checkpoints: relative change of each layer from {files[0]}"]
    head = ["layer", *[f"#{k}" for k in range(1, len(files))], "weight std"]
    rows = [head]
    for m in movement.layers:
        stds = f"{_num(m.weight_std[0])} → {_num(m.weight_std[-1])}"
        rows.append([m.name, *[_num(r) for r in m.relative_change[1:]], stds])
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines += [
        "  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    ]
    lines += [f"  #{k}: {f}" for k, f in enumerate(files[1:], start=1)]
    return lines


def _findings(findings: list[Finding]) -> list[str]:
    if not findings:
        return ["no findings"]
    counts = severity_counts(findings)
    lines = [
        f"findings: {counts['error']} error(s), {counts['warning']} warning(s), {counts['info']} info"
    ]
    for f in sort_findings(findings):
        lines.append(f"  {f.severity:<7}  {f.check:<17}  {f.layer or '(model)'}: {f.message}")
    return lines


def _num(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "-" if value is None else str(value)
    return f"{value:.3g}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"
