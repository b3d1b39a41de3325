"""bench/report.py's verdicts on the performance issue's serving targets, on results written by
hand (the committed results' rendering is checked in test_cli.py)."""

from __future__ import annotations

import importlib
from typing import Any

import pytest

from tests.conftest import REPO


def _cell(
    images: float = 0.0, share: float = 0.0, p50: float = 0.0, p99: float = 0.0, calls: float = 0.0
) -> dict[str, Any]:
    return {
        "median": {
            "images_per_second": images,
            "requests_per_second": calls,
            "p50_ms": p50,
            "p99_ms": p99,
        },
        "vs_in_process": {"images_per_second": share},
    }


def _targets(monkeypatch: pytest.MonkeyPatch, cells: dict[tuple[str, str, str], Any]) -> str:
    monkeypatch.syspath_prepend(str(REPO / "bench"))
    report = importlib.import_module("report")
    return "; ".join(report._serving_targets(cells))


def test_each_serving_target_is_met_only_by_every_figure_it_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    met = {
        ("S1", "scratchnet", "FP32"): _cell(images=180_000, share=0.55),
        ("S1", "scratchnet", "UINT8"): _cell(images=250_000),
        ("S1", "scratchnet-shm", "FP32"): _cell(share=0.80),
        ("S2", "scratchnet", "FP32"): _cell(p50=0.65, p99=1.0),
        ("S3", "scratchnet", "FP32"): _cell(calls=3_500, p99=20.0),
    }
    text = _targets(monkeypatch, met)
    assert text.count("✓") == 5 and "✗" not in text
    # One figure short in each target that names two: the rate alone does not meet S1, nor
    # p50 alone S2, nor requests/s alone S3.
    missed = {
        **met,
        ("S1", "scratchnet", "FP32"): _cell(images=200_000, share=0.54),
        ("S2", "scratchnet", "FP32"): _cell(p50=0.60, p99=1.2),
        ("S3", "scratchnet", "FP32"): _cell(calls=4_000, p99=21.0),
    }
    text = _targets(monkeypatch, missed)
    assert "(200,000, 0.54 ✗ missed)" in text
    assert "(0.600 / 1.200 ✗ missed)" in text
    assert "(4,000, 21.00 ms ✗ missed)" in text
    assert text.count("✓") == 2


def test_targets_whose_rows_did_not_run_are_left_out(monkeypatch: pytest.MonkeyPatch) -> None:
    only_s2 = {("S2", "scratchnet", "FP32"): _cell(p50=0.5, p99=0.9)}
    assert _targets(monkeypatch, only_s2) == (
        "S2 p50 at most 0.65 ms and p99 at most 1 ms (0.500 / 0.900 ✓)"
    )
