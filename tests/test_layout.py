"""The layout rules the project lives by: each package's public surface is exactly its __all__,
the parts import the core and nothing of each other, and the Python client stays light."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
import types
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGES = ("scratchnet", "trainer", "export", "server", "clients")
# What each part may import besides the core and itself: export reads the trainer's artifact,
# whose format lives in the core, so it needs nothing of the trainer.
ALLOWED: dict[str, set[str]] = {package: {"scratchnet", package} for package in PACKAGES}
ALLOWED["scratchnet"] = {"scratchnet"}


@pytest.mark.parametrize("package", ["scratchnet", "trainer", "export", "clients"])
def test_all_lists_exactly_the_public_names(package: str) -> None:
    module = importlib.import_module(package)
    public = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and name != "annotations"
    }
    assert sorted(module.__all__) == sorted(public)
    assert len(set(module.__all__)) == len(module.__all__)


def _imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module.split(".")[0])
    return found & set(PACKAGES)


@pytest.mark.parametrize("package", PACKAGES)
def test_each_part_imports_only_the_core_and_itself(package: str) -> None:
    for path in sorted((REPO / package).rglob("*.py")):
        if "api" in path.relative_to(REPO).parts[:2]:
            continue  # generated code
        extra = _imported_packages(path) - ALLOWED[package]
        assert not extra, f"{path.relative_to(REPO)} imports {sorted(extra)}"


def test_every_package_ships_py_typed() -> None:
    assert all((REPO / package / "py.typed").is_file() for package in PACKAGES)


def test_the_python_client_loads_no_trainer_export_server_or_onnx() -> None:
    # clients.ray_engine too: Ray, pyarrow and onnxruntime load only when --engine ray runs.
    code = (
        "import sys, clients, clients.score, clients.predict, clients.ray_engine;"
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO,
        check=True, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    loaded = set(result.stdout.split())
    assert "clients" in loaded and "scratchnet" in loaded
    assert not loaded & {"trainer", "export", "server", "onnx", "onnxruntime", "ray", "pyarrow"}
