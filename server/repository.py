"""The models a server serves right now, by name and version, and what the index says of each.

A name's versions are replaced all at once (`set_versions`), so a request sees either the old set
or the new one; a request already running keeps the model object it was given.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from scratchnet.errors import InvalidArgument, NotFound, Unavailable, clip
from server.model import Model

__all__ = ["READY", "UNAVAILABLE", "IndexEntry", "ModelRepository"]

READY = "READY"
UNAVAILABLE = "UNAVAILABLE"
LOADING = "LOADING"


@dataclass(frozen=True)
class IndexEntry:
    """One row of the repository index, as Triton's RepositoryIndex reports it."""

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
            self._loading.discard(model.name)

    def set_versions(self, name: str, models: dict[str, Model]) -> None:
        """Serve exactly `models` (version -> model) under `name`; none: stop serving the name."""
        with self._lock:
            if models:
                self._models[name] = dict(models)
            else:
                self._models.pop(name, None)
            self._loading.discard(name)

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
        """Every model version loaded or tried, and `names` (known but not loaded) as such."""
        with self._lock:
            rows = {
                (model.name, model.version): IndexEntry(model.name, model.version, READY)
                for versions in self._models.values()
                for model in versions.values()
            }
            for key, entry in self._problems.items():
                loaded = rows.get(key)
                rows[key] = entry if loaded is None else IndexEntry(*key, READY, entry.reason)
        listed = {name for name, _ in rows}
        for name in names or ():
            if name not in listed:
                rows[name, ""] = IndexEntry(name, "", UNAVAILABLE, "unloaded")
        return [rows[key] for key in sorted(rows, key=lambda k: (k[0], _version_key(k[1])))]

    def get(self, name: str, version: str = "") -> Model:
        """The model `name` at `version` ("" = its newest); NotFound or Unavailable if none."""
        with self._lock:
            versions = self._models.get(name)
            loading = name in self._loading
        if versions is None:
            if loading:
                raise Unavailable(f"model '{clip(name)}' is still loading, retry shortly")
            raise NotFound(f"Request for unknown model: '{clip(name)}' is not found")
        if not version:
            return versions[max(versions, key=_version_key)]
        # As Triton reads a version: an integer, so "01" is version 1 and "abc" a mistake.
        if not (version.isascii() and version.isdigit()):
            raise InvalidArgument(
                f"model '{clip(name)}': version '{clip(version)}' is not a version number, "
                "expected an integer >= 1 (or none, for the newest)"
            )
        found = versions.get(str(int(version)))
        if found is None:
            raise NotFound(
                f"Request for unknown model: '{clip(name)}' version {clip(version)} is not found"
            )
        return found

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


def _version_key(version: str) -> tuple[int, str]:
    return (int(version), version) if version.isdigit() else (-1, version)
