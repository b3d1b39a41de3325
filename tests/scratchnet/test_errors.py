"""scratchnet.errors: the hierarchy is drawn once, in the docstring, and the drawing is true."""

from __future__ import annotations

import inspect

from scratchnet import errors


def test_the_docstring_draws_every_error_under_its_parent() -> None:
    classes = {
        name: value
        for name, value in vars(errors).items()
        if inspect.isclass(value) and issubclass(value, Exception)
    }
    drawn: dict[str, str] = {}
    parents: list[tuple[int, str]] = []
    for line in (errors.__doc__ or "").splitlines():
        stripped = line.lstrip(" │├└─")
        name = stripped.split()[0] if stripped else ""
        if name not in classes:
            continue
        depth = len(line) - len(stripped)
        while parents and parents[-1][0] >= depth:
            parents.pop()
        drawn[name] = parents[-1][1] if parents else ""
        parents.append((depth, name))
    assert set(drawn) == set(classes)
    for name, parent in drawn.items():
        assert classes[name].__bases__[0].__name__ == (parent or "Exception"), name


def test_clip_keeps_echoed_strings_short() -> None:
    assert errors.clip("short") == "short"
    long = errors.clip("x" * 10_000)
    assert len(long) == errors.CLIP and long.endswith("…")
