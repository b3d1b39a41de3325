"""The models a server serves, by name and version, and the ones still loading."""

from __future__ import annotations

import threading

from scratchnet.errors import NotFound, Unavailable, clip
from server.model import Model

__all__ = ["ModelRepository"]


class ModelRepository:
    """Loaded models by name and version; a name is "loading" until its first version is added."""

    def __init__(self, loading: tuple[str, ...] = ()) -> None:
        self._lock = threading.Lock()
        self._models: dict[str, dict[str, Model]] = {}
        self._loading = set(loading)

    @property
    def ready(self) -> bool:
        """True once every model named at start has a version loaded."""
        with self._lock:
            return not self._loading and bool(self._models)

    def add(self, model: Model) -> None:
        """Serve `model` (replacing a loaded one of the same name and version)."""
        with self._lock:
            self._models.setdefault(model.name, {})[model.version] = model
            self._loading.discard(model.name)

    def models(self) -> list[Model]:
        """Every loaded model version, by name then version."""
        with self._lock:
            return [
                self._models[name][v] for name in sorted(self._models) for v in self._models[name]
            ]

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
        if version not in versions:
            raise NotFound(
                f"Request for unknown model: '{clip(name)}' version {clip(version)} is not found"
            )
        return versions[version]


def _version_key(version: str) -> tuple[int, str]:
    return (int(version), version) if version.isdigit() else (-1, version)
