"""What ``landscape inspect`` reports: findings, each naming a check, a layer and a severity."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

CHECKS = ("symmetry", "dead-units", "saturation", "activation-growth", "not-learning")
SEVERITIES = ("error", "warning", "info")  # most severe first; only errors fail the command


@dataclass(frozen=True)
class Finding:
    """One problem: ``check`` is one of CHECKS, ``layer`` None for a model-wide finding."""

    check: str
    layer: str | None
    severity: str
    message: str

    def __post_init__(self) -> None:
        if self.check not in CHECKS or self.severity not in SEVERITIES:
            raise ValueError(f"bad finding {self.check!r}/{self.severity!r}")  # a bug, not input

    def to_dict(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "layer": self.layer,
            "severity": self.severity,
            "message": self.message,
        }


def sort_findings(findings: Iterable[Finding]) -> list[Finding]:
    """Errors first, then warnings, then info; the checks' own order within a severity."""
    return sorted(findings, key=lambda f: SEVERITIES.index(f.severity))


def severity_counts(findings: Iterable[Finding]) -> dict[str, int]:
    counts = Counter(f.severity for f in findings)
    return {s: counts.get(s, 0) for s in SEVERITIES}
