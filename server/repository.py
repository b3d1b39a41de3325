"""The models a server serves right now, by name and version, and what the index says of each.

A name's versions are replaced all at once (`set_versions`), so a request sees either the old set
or the new one; a request already running keeps the model object it was given. As Triton's model
lifecycle does, the index remembers a version once served: it stays listed, UNAVAILABLE with the
reason "unloaded", after an unload or a newer version replaced it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from scratchnet.errors import InvalidArgument, NotFound, Unavailable, clip
from server.model import Model

__all__ = ["LOADING", "READY", "UNAVAILABLE", "UNLOADED", "IndexEntry", "ModelRepository"]

READY = "READY"
UNAVAILABLE = "UNAVAILABLE"
LOADING = "LOADING"
UNLOADED = "unloaded"
"""The reason Triton gives for a version it served and no longer does."""


@dataclass(frozen=True)
class IndexEntry:
    """One row of the repository index, as Triton's RepositoryIndex reports it; a model never
    loaded has its name alone (no version, no state)."""

    name: str
    version: str
    state: str
    reason: str = ""


class ModelRepository:
    """Loaded models by name and version, and the index of every model the server knows of."""

    def __init__(self, loading: tuple[str, ...] = ()) -> None:
        """`loading`: names requests should be told are still loading until they are added."""
        self._lock = threading.Lock()
        self._models: dict[str, dict[str, Model]] = {}
        self._problems: dict[tuple[str, str], IndexEntry] = {}
        self._unloaded: set[tuple[str, str]] = set()
        self._loading_versions: set[tuple[str, str]] = set()
        self._loading = set(loading)
        self._started = not loading

    @property
    def ready(self) -> bool:
        """True once the models named at start have been loaded (or found unloadable)."""
        with self._lock:
            return self._started and not self._loading

    def started(self) -> None:
        """The start-up load is over: the server is ready from now on."""
        with self._lock:
            self._started = True
            self._loading.clear()

    def add(self, model: Model) -> None:
        """Serve `model` beside the versions of its name already served (replacing an equal one)."""
        with self._lock:
            versions = dict(self._models.get(model.name, {}))
            versions[model.version] = model
            self._models[model.name] = versions
            self._unloaded.discard((model.name, model.version))
            self._loading.discard(model.name)

    def set_versions(self, name: str, models: dict[str, Model]) -> None:
        """Serve exactly `models` (version -> model) under `name`; none: stop serving the name.
        The versions no longer served are listed as unloaded."""
        with self._lock:
            before = self._models.get(name, {})
            self._unloaded |= {(name, version) for version in before if version not in models}
            self._unloaded -= {(name, version) for version in models}
            if models:
                self._models[name] = dict(models)
            else:
                self._models.pop(name, None)
            self._loading.discard(name)

    @contextmanager
    def loading_version(self, name: str, version: str) -> Iterator[None]:
        """The index lists `version` of `name` as LOADING for the duration of the block."""
        with self._lock:
            self._loading_versions.add((name, version))
        try:
            yield
        finally:
            with self._lock:
                self._loading_versions.discard((name, version))

    def set_problems(self, name: str, entries: list[IndexEntry]) -> None:
        """Replace what the index says of `name`'s versions that are not (or not freshly) loaded."""
        with self._lock:
            for key in [key for key in self._problems if key[0] == name]:
                del self._problems[key]
            for entry in entries:
                self._problems[entry.name, entry.version] = entry

    def models(self) -> list[Model]:
        """Every loaded model version, by name then version."""
        with self._lock:
            return [
                versions[version]
                for name, versions in sorted(self._models.items())
                for version in sorted(versions, key=_version_key)
            ]

    def index(self, names: list[str] | None = None) -> list[IndexEntry]:
        """Every model version served, loading, tried or once served; of a model no longer in
        `names` (its folder gone), only the versions it still serves; and of `names` never
        loaded, the name alone, as Triton lists them."""
        with self._lock:
            rows = {key: IndexEntry(*key, UNAVAILABLE, UNLOADED) for key in self._unloaded}
            # A READY entry only adds its reason to a version served (below).
            rows.update({key: e for key, e in self._problems.items() if e.state != READY})
            rows.update({key: IndexEntry(*key, LOADING) for key in self._loading_versions})
            for versions in self._models.values():
                for model in versions.values():
                    key = (model.name, model.version)
                    problem = self._problems.get(key)
                    rows[key] = IndexEntry(*key, READY, problem.reason if problem else "")
        if names is not None:
            known = set(names)
            rows = {key: row for key, row in rows.items() if key[0] in known or row.state == READY}
        listed = {name for name, _ in rows}
        for name in names or ():
            if name not in listed:
                rows[name, ""] = IndexEntry(name, "", "")
        return [rows[key] for key in sorted(rows, key=lambda k: (k[0], _version_key(k[1])))]

    def get(self, name: str, version: str = "") -> Model:
        """The model `name` at `version` ("" = its newest); NotFound or Unavailable if none, in
        the words of Triton's model lifecycle (GetModel) for a name whose versions are loading,
        unloaded or failed: its table keeps them, not ready."""
        with self._lock:
            versions = self._models.get(name, {})
            loading = name in self._loading
        if not version and versions:
            return versions[max(versions, key=_version_key)]
        number = _version_number(name, version) if version else ""
        found = versions.get(number)
        if found is not None:
            return found
        held = self._held(name)
        if loading and not versions:  # still starting up: not ready, whichever version loads
            raise Unavailable(f"model '{clip(name)}' is still loading, retry shortly")
        if not versions and not held:
            raise NotFound(f"Request for unknown model: '{clip(name)}' is not found")
        if not version:
            raise NotFound(f"Request for unknown model: '{clip(name)}' has no available versions")
        if number in held:
            raise Unavailable(
                f"Request for unknown model: '{clip(name)}' version {number} is not at ready state"
            )
        raise NotFound(
            f"Request for unknown model: '{clip(name)}' version {clip(version)} is not found"
        )

    def _held(self, name: str) -> set[str]:
        """The versions of `name` tried and not serving: loading, unloaded or failed."""
        with self._lock:
            keys = {*self._loading_versions, *self._unloaded, *self._problems}
        return {version for known, version in keys if known == name and version}

    def versions(self, name: str) -> list[str]:
        """The versions of model `name` being served, oldest first."""
        with self._lock:
            return sorted(self._models.get(name, {}), key=_version_key)

    def default(self, preferred: str) -> Model:
        """The model a request naming none goes to: `preferred`, else the only model served."""
        with self._lock:
            names = sorted(self._models)
            loading = preferred in self._loading
        if preferred in names or loading or len(names) != 1:
            if preferred not in names and not loading and names:
                raise NotFound(
                    f"Request for unknown model: '{clip(preferred)}' is not found, and the request "
                    f"names no model: name one of {', '.join(names)}"
                )
            return self.get(preferred)
        return self.get(names[0])


_LARGEST_VERSION = 2**63 - 1


def _version_key(version: str) -> tuple[int, str]:
    return (int(version), version) if version.isdigit() else (-1, version)


def _version_number(name: str, version: str) -> str:
    """`version` as Triton reads it, an integer (so "01" is "1"); InvalidArgument if it is not
    one or is past a signed 64-bit integer."""
    if not (version.isascii() and version.isdigit()):
        raise InvalidArgument(
            f"model '{clip(name)}': version '{clip(version)}' is not a version number, "
            "expected an integer >= 1 (or none, for the newest)"
        )
    number = version.lstrip("0") or "0"
    # Python's int() takes 4300 digits at most: compare lengths first.
    if len(number) > len(str(_LARGEST_VERSION)) or int(number) > _LARGEST_VERSION:
        raise InvalidArgument(
            f"model '{clip(name)}': version '{clip(version)}' is out of range, expected an "
            f"integer from 1 to {_LARGEST_VERSION} (or none, for the newest)"
        )
    return number
