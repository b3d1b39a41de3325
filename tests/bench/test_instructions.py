"""bench/instructions.py's split of a callgrind dump by shared object, on a dump written by hand
in callgrind's format (valgrind itself runs only when the benchmark does)."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from tests.conftest import REPO

# Two objects; the interpreter's eval calls the C library's malloc, whose cost appears twice:
# once inclusive, after the call (not eval's own), once as malloc's own.
DUMP = """\
version: 1
creator: callgrind-3.19.0
events: Ir
ob=(1) /usr/lib/libpython3.11.so.1.0
fl=(1) ceval.c
fn=(1) eval
10 100
+2 50
cob=(2) /usr/lib/x86_64-linux-gnu/libc.so.6
cfi=(2) malloc.c
cfn=(2) malloc
calls=3 0
* 400
-1 7
ob=(2)
fl=(2)
fn=(2)
0 400
totals: 557
"""


def test_each_object_counts_its_own_code_and_not_what_it_calls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(REPO / "bench"))
    instructions = importlib.import_module("instructions")
    dump = tmp_path / "server.1"
    dump.write_text(DUMP)
    counts = instructions.by_object(dump)
    assert counts == {"libpython3.11.so.1.0": 157, "libc.so.6": 400}
    assert sum(counts.values()) == 557  # the dump's totals line
