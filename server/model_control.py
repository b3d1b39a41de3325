"""Model control, as Triton's --model-control-mode: which model files are served, and when they
are loaded, reloaded and unloaded.

A source lists the models (a Triton-layout repository folder, or the one file of --model) and,
for each, the version files its version policy selects. `ModelControl.sync(name)` brings the
served versions of a model in line with its files: a new or changed file is loaded and checked
(see server.model.load_model) before it replaces the old one in one step; a file that fails keeps
the old version serving, is logged, and shows in the index with its reason. `none` loads every
model at start, `poll` also syncs every model every few seconds, `explicit` loads the models
named at start and then what RepositoryModelLoad / Unload ask for; SIGHUP syncs in every mode.
While a version that is not served yet loads, the index lists it LOADING; once it no longer serves
(unloaded, or replaced by a newer version), UNAVAILABLE with the reason "unloaded", as Triton.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from google.protobuf import json_format

from scratchnet.errors import FailedPrecondition, InvalidArgument, ModelError, NotFound, clip
from scratchnet.files import Identity, identity
from server.model import Model, load_model
from server.model_config import (
    CONFIG_FILE,
    DEFAULT_MODEL_FILENAME,
    ModelConfig,
    check_file_names,
    read_config,
)
from server.repository import READY, UNAVAILABLE, IndexEntry, ModelRepository

__all__ = [
    "MODES",
    "Desired",
    "LoadOptions",
    "ModelControl",
    "ModelSource",
    "RepositoryFolder",
    "SingleFile",
]

MODES = ("none", "poll", "explicit")
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Desired:
    """What a model's files say should be served: its config and version files by version
    ("" for a file whose version comes from inside it), plus versions asked for but missing."""

    config: ModelConfig | None
    versions: dict[str, Path]
    missing: list[IndexEntry] = field(default_factory=list)
    stamps: tuple[Identity, ...] = ()
    """Identities of the files every version shares (config, label files)."""
    folder: Path | None = None
    """The model's folder, where its label files are."""
    empty: str = ""
    """Why no version is served at all, when none is (no version file, a policy choosing none)."""


class ModelSource(Protocol):
    """Where models come from."""

    def names(self) -> list[str]:
        """The models there are."""
        ...

    def desired(self, name: str, config: ModelConfig | None = None) -> Desired:
        """What should be served of `name` (with `config` instead of its own when given)."""
        ...


class RepositoryFolder:
    """A Triton model repository: DIR/<model>/[config.pbtxt] and DIR/<model>/<version>/<file>."""

    def __init__(self, root: Path) -> None:
        if not root.is_dir():
            raise ModelError(f"model repository {root} is not a folder")
        self.root = root
        self._real_root = root.resolve()

    def _inside(self, path: Path, what: str) -> Path:
        """`path`, once it is known to stay inside the repository with its links followed: a
        symbolic link may lead within it (as a Kubernetes ConfigMap's do), never out of it, or
        whoever can write the repository could have the server read and serve any file."""
        real = path.resolve()
        if real != self._real_root and self._real_root not in real.parents:
            raise ModelError(
                f"{what} {path} leads outside the model repository {self.root} (a symbolic "
                "link): the server reads no file outside it"
            )
        return path

    def names(self) -> list[str]:
        """Every folder of the repository that is not hidden."""
        try:
            entries = sorted(os.scandir(self.root), key=lambda entry: entry.name)
        except OSError as error:
            raise ModelError(f"cannot read model repository {self.root}: {error}") from None
        return [e.name for e in entries if e.is_dir() and not e.name.startswith(".")]

    def desired(self, name: str, config: ModelConfig | None = None) -> Desired:
        """The config and the version files of `name` its version policy selects."""
        folder = self._inside(self.root / name, f"model '{name}':")
        config_path = folder / CONFIG_FILE
        override = config
        if config is None and os.path.lexists(config_path):
            config = read_config(self._inside(config_path, f"model '{name}':"))
        origin = "the config given with the load" if override is not None else config_path
        if config is not None:
            check_file_names(config, str(origin))
        if config is not None and config.name and config.name != name:
            raise ModelError(
                f"{origin}: name '{clip(config.name)}' differs from the model's folder "
                f"'{name}', expected them equal"
            )
        file_name = (config.default_model_filename if config else "") or DEFAULT_MODEL_FILENAME
        # A version is the folder's number, as Triton reads it (model_lifecycle.cc VersionsToLoad):
        # ASCII digits only, and a folder with leading zeros ("007") is ignored, not version 7.
        found = {
            entry.name: path
            for entry in sorted(_scandir(folder), key=lambda entry: entry.name)
            if entry.is_dir()
            and _is_version_folder(entry.name)
            and (path := _model_file(Path(entry.path), file_name)) is not None
        }
        for version, path in found.items():
            self._inside(path, f"model '{name}' version {version}:")
        chosen, missing = _apply_policy(name, found, config)
        labels = (
            [out.label_filename for out in config.output if out.label_filename] if config else []
        )
        for label in labels:
            if os.path.lexists(folder / label):
                self._inside(folder / label, f"model '{name}':")
        stamps = (identity(config_path), *(identity(folder / label) for label in labels))
        empty = ""
        if not found:
            empty = (
                f"model '{name}' has no version folder holding its model file: expected "
                f"{folder}/<version number>/{file_name}"
            )
        elif not chosen:
            # As Triton: at least one version must be available under the policy, and a load
            # that finds none fails before the versions served are touched.
            empty = (
                f"model '{name}': its config's version_policy selects none of the versions "
                f"{', '.join(sorted(found, key=int))}"
            )
        return Desired(config, chosen, missing, stamps, folder, empty)


def _folder_identity(folder: Path) -> tuple[Identity, ...]:
    """Every file of a version folder, the model's external data included: a change to any of
    them is a new version of the model, as Triton's polling sees it (the folder's contents)."""
    files = sorted(Path(root) / name for root, _, names in os.walk(folder) for name in names)
    return tuple(identity(path) for path in files)


def _model_file(version_folder: Path, file_name: str) -> Path | None:
    """The version's model file: `file_name` itself, or, as Triton's onnxruntime backend reads a
    model kept in a folder of that name with its external data, `model.onnx` inside it."""
    path = version_folder / file_name
    if path.is_file():
        return path
    inside = path / DEFAULT_MODEL_FILENAME
    return inside if path.is_dir() and inside.is_file() else None


def _is_version_folder(name: str) -> bool:
    """Whether Triton reads folder `name` as a version: a plain ASCII number, no leading zero."""
    return name.isascii() and name.isdigit() and (name == "0" or not name.startswith("0"))


def _scandir(folder: Path) -> list[os.DirEntry[str]]:
    try:
        return list(os.scandir(folder))
    except OSError:
        return []


def _apply_policy(
    name: str, found: dict[str, Path], config: ModelConfig | None
) -> tuple[dict[str, Path], list[IndexEntry]]:
    """The versions Triton's version_policy selects among `found`; default: the newest one."""
    ordered = sorted(found, key=int)
    policy = config.version_policy if config is not None else None
    which = policy.WhichOneof("policy_choice") if policy is not None else None
    if which == "all":
        return {version: found[version] for version in ordered}, []
    if which == "specific":
        assert policy is not None
        wanted = [str(version) for version in policy.specific.versions]
        missing = [
            IndexEntry(name, version, UNAVAILABLE, "version is not in the repository")
            for version in wanted
            if version not in found
        ]
        return {version: found[version] for version in wanted if version in found}, missing
    count = policy.latest.num_versions if which == "latest" and policy is not None else 1
    # latest { num_versions: 0 } selects none, as in Triton: the model has nothing to serve.
    return {version: found[version] for version in ordered[-count:]} if count > 0 else {}, []


class SingleFile:
    """The one model of --model FILE, served as `name` with the version its file records."""

    def __init__(self, path: Path, name: str) -> None:
        self.path = path
        self.name = name

    def names(self) -> list[str]:
        """Just the one."""
        return [self.name]

    def desired(self, name: str, config: ModelConfig | None = None) -> Desired:
        """The file itself, its version read from inside it."""
        return Desired(config, {"": self.path})


@dataclass(frozen=True)
class LoadOptions:
    """How every model is loaded."""

    threads: int
    max_batch: int
    image_shape: tuple[int, int] | None = None


@dataclass(frozen=True)
class _Loaded:
    model: Model
    stamps: tuple[Identity, ...]
    overridden: bool = False
    """Loaded with a config given by the load, not the model's own: the next sync reloads it."""


class ModelControl:
    """Keeps the repository's served models in line with their files, one change at a time."""

    def __init__(
        self,
        repository: ModelRepository,
        source: ModelSource,
        options: LoadOptions,
        mode: str = "none",
    ) -> None:
        self.repository = repository
        self.source = source
        self.options = options
        self.mode = mode
        self._lock = threading.RLock()
        self._loaded: dict[str, dict[str, _Loaded]] = {}
        # Version files that failed to load, with their identities, so that a poll does not
        # retry (and log) the same broken file every few seconds.
        self._failed: dict[tuple[str, str], tuple[tuple[Identity, ...], IndexEntry]] = {}
        # What was last logged of each model's own problem (its config, no version): once each.
        self._said: dict[str, str] = {}

    def start(self, names: Sequence[str] | None = None, strict: bool = False) -> list[str]:
        """Load `names` (default: every model of the source); return the failures' messages,
        or with `strict` raise the first as a ModelError (nothing logged)."""
        failures = []
        for name in self.source.names() if names is None else names:
            problem = self.sync(name, strict=strict)
            if problem:
                failures.append(problem)
        self.repository.started()
        return failures

    def loaded_names(self) -> list[str]:
        """The models with at least one version served."""
        with self._lock:
            return sorted(name for name, versions in self._loaded.items() if versions)

    def sync(self, name: str, config: ModelConfig | None = None, strict: bool = False) -> str:
        """Serve what `name`'s files now hold (with `config` instead of its own, if given);
        return what went wrong ("" if nothing did), or with `strict` raise it as ModelError."""
        with self._lock:
            current = self._loaded.get(name, {})
            try:
                desired = self.source.desired(name, config)
            except ModelError as error:
                if strict:
                    raise
                return self._refused(name, str(error), current)
            if desired.empty:
                return self._refused(name, desired.empty, current, desired.missing)
            kept, problems = self._load_versions(
                name, desired, current, forced=config is not None, strict=strict
            )
            if problems:
                # As Triton (model_lifecycle.cc OnLoadFinal): a load in which any version fails
                # changes nothing; the versions served before all stay, none of the new ones
                # (loaded with a config the failed one refused, say) is kept.
                kept = dict(current)
            for slot in set(current) - set(kept):
                _log.info("unloaded model '%s' version %s", name, current[slot].model.version)
            self._loaded[name] = kept
            self.repository.set_versions(
                name, {loaded.model.version: loaded.model for loaded in kept.values()}
            )
            self._said.pop(name, None)
            self.repository.set_problems(name, problems + desired.missing)
            failed = [entry.reason for entry in problems]
            return "; ".join(failed)

    def _refused(
        self,
        name: str,
        problem: str,
        current: dict[str, _Loaded],
        missing: Sequence[IndexEntry] = (),
    ) -> str:
        """A model whose files give nothing to serve: the versions served before keep serving,
        the index says why; return the problem."""
        self._say(name, problem)
        if current:
            reason = f"{problem}; serving the versions loaded before"
            entries = [
                IndexEntry(name, loaded.model.version, READY, reason) for loaded in current.values()
            ]
        else:
            entries = [IndexEntry(name, "", UNAVAILABLE, problem)]
        self.repository.set_problems(name, [*entries, *missing])
        return problem

    def _say(self, name: str, problem: str) -> None:
        """Log a model's own problem once, not at every poll that finds it again."""
        if self._said.get(name) != problem:
            _log.error("%s", problem)
            self._said[name] = problem

    def _load_versions(
        self, name: str, desired: Desired, current: dict[str, _Loaded], forced: bool, strict: bool
    ) -> tuple[dict[str, _Loaded], list[IndexEntry]]:
        kept: dict[str, _Loaded] = {}
        problems: list[IndexEntry] = []
        stamped = {}
        for slot, path in desired.versions.items():
            # A repository's version folder as a whole (external data included); a single
            # file (--model) as itself, not the files beside it.
            files = _folder_identity(path.parent) if desired.folder else (identity(path),)
            stamped[slot] = (*files, *desired.stamps)
        if not forced:
            # The same files failed before: the load would fail again and change nothing, so
            # neither load the other versions again nor log.
            known = [
                failed[1]
                for slot, stamps in stamped.items()
                if (failed := self._failed.get((name, slot))) is not None and failed[0] == stamps
            ]
            if known:
                return {}, known
        for slot, path in desired.versions.items():
            stamps = stamped[slot]
            old = current.get(slot)
            if old is not None and old.stamps == stamps and not forced and not old.overridden:
                kept[slot] = old
                continue
            # As Triton: a version not served yet is LOADING meanwhile; one served keeps
            # serving (and being listed READY) while its new file loads.
            loading: AbstractContextManager[None] = (
                self.repository.loading_version(name, slot) if old is None else nullcontext()
            )
            try:
                with loading:
                    model = load_model(
                        path,
                        name,
                        slot,
                        config=desired.config,
                        threads=self.options.threads,
                        max_batch=self.options.max_batch,
                        image_shape=self.options.image_shape,
                        model_dir=desired.folder,
                    )
            except ModelError as error:
                if strict:
                    raise
                _log.error("%s", error)
                if old is not None:
                    kept[slot] = old
                    reason = f"{error}; serving the file loaded before"
                    entry = IndexEntry(name, old.model.version, READY, reason)
                else:
                    entry = IndexEntry(name, slot, UNAVAILABLE, str(error))
                if not forced:  # a config given with one load says nothing of the files
                    self._failed[name, slot] = (stamps, entry)
                problems.append(entry)
                continue
            self._failed.pop((name, slot), None)
            verb = "reloaded" if old is not None else "loaded"
            _log.info(
                "%s model '%s' version %s from %s%s", verb, name, model.version, path, model.slicing
            )
            if model.not_classifier:
                _log.info(
                    "model '%s' serves the Open Inference Protocol only: %s",
                    name,
                    model.not_classifier,
                )
            kept[slot] = _Loaded(model, stamps, overridden=forced)
        return kept, problems

    def index(self, ready_only: bool = False) -> list[IndexEntry]:
        """Triton's repository index: every model of the source with each version's state
        (only READY ones with `ready_only`)."""
        entries = self.repository.index(self.source.names())
        return [entry for entry in entries if entry.state == READY or not ready_only]

    def load_requested(self, name: str, config_json: str = "") -> None:
        """A client's load (RepositoryModelLoad, POST …/load): refused unless the mode is
        explicit, else `load`."""
        self._check_explicit("load")
        self.load(name, config_json)

    def unload_requested(self, name: str) -> None:
        """A client's unload: refused unless the mode is explicit, else `unload` (of a name
        the repository does not hold: nothing to do, a success, as Triton answers)."""
        self._check_explicit("unload")
        self.unload(name)

    def _check_explicit(self, action: str) -> None:
        # Triton answers UNAVAILABLE, which retry policies (and 503, which load balancers) take
        # for a passing fault: this refusal lasts until the server restarts with the flag.
        if self.mode != "explicit":
            raise FailedPrecondition(
                f"explicit model {action} is not allowed with --model-control-mode "
                f"{self.mode}: start the server with --model-control-mode explicit"
            )

    def unload(self, name: str) -> None:
        """Stop serving every version of `name`; the index keeps listing them, unloaded (and
        the versions that failed to load, with why)."""
        with self._lock:
            for loaded in self._loaded.pop(name, {}).values():
                _log.info("unloaded model '%s' version %s", name, loaded.model.version)
            self.repository.set_versions(name, {})
            self._said.pop(name, None)

    def load(self, name: str, config_json: str = "") -> None:
        """Load or reload `name` as RepositoryModelLoad asks; the error of a failed load."""
        with self._lock:
            if name not in self.source.names():
                raise NotFound(f"failed to load '{clip(name)}': no such model in the repository")
            config = None
            if config_json:
                config = ModelConfig()
                try:
                    if not config_json.lstrip().startswith("{"):
                        raise json_format.ParseError("expected a JSON object {...}")
                    json_format.Parse(config_json, config)
                except json_format.ParseError as error:
                    raise InvalidArgument(
                        f"failed to load '{clip(name)}': parameter 'config' is not a model "
                        f"configuration in JSON ({_json_problem(error)})"
                    ) from None
            problem = self.sync(name, config)
            if problem:
                raise InvalidArgument(f"failed to load '{clip(name)}': {problem}")

    def sync_all(self) -> None:
        """What SIGHUP and every poll do: sync the models served (explicit) or every model of
        the source, and unload those whose files are gone."""
        with self._lock:
            names = set(self.source.names())
            served = set(self.loaded_names())
            wanted = served & names if self.mode == "explicit" else names
            for gone in served - names:
                self.unload(gone)
            for name in sorted(wanted):
                self.sync(name)

    def poll(self, stop: threading.Event, seconds: float) -> None:
        """Sync every `seconds` until `stop` is set (the --model-control-mode poll thread)."""
        while not stop.wait(seconds):
            try:
                self.sync_all()
            except ModelError as error:  # the repository folder itself went away
                _log.error("%s", error)


def _json_problem(error: json_format.ParseError) -> str:
    """protobuf's reason on one line, in the protocol's words rather than Python's: a string
    where a number goes reads "'two' is not an integer", not "invalid literal for int()"."""
    reason = _PYTHON_INT_ERROR.sub(r"\1 is not an integer", " ".join(str(error).split()))
    return reason.removesuffix(".") if reason.endswith("..") else reason  # protobuf adds one


_PYTHON_INT_ERROR = re.compile(r"invalid literal for int\(\) with base 10: ('.*?')")
