"""Choosing the served model: `Client(model_name=, model_version=)` and the `--model-name` and
`--model-version` flags of clients.predict and clients.score, against a server of a model
repository holding two different models; a model or version it does not serve is NotFoundError,
or one line and exit 1."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import grpc
import numpy as np
import pytest
from numpy.typing import NDArray

from clients import Client, NotFoundError
from scratchnet.artifact import Artifact, save_artifact
from scratchnet.datasets import Dataset
from scratchnet.forward import predict
from tests.conftest import RunningServer, assert_one_line_error, run_module, start_server

DEFAULT, OTHER = "article", "variant"
"""The server's default model, and the model served besides it."""
FEW = 500
"""Images that fit in one Predict call; the whole test set takes a stream."""


@pytest.fixture(scope="module")
def variant(artifact: Artifact) -> Artifact:
    """The article's weights with other biases: a second model, made without training, that
    labels some test images unlike the article's."""
    shift = np.random.default_rng(7).normal(scale=0.5, size=artifact.biases.shape)
    return replace(artifact, biases=artifact.biases + shift)


@pytest.fixture(scope="module")
def repository(
    article_artifact: Path, variant: Artifact, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """`article` version 1, and `variant` versions 1 (the article's parameters) and 2 (the
    variant's), every version served."""
    made = tmp_path_factory.mktemp("variant") / "variant.npz"
    save_artifact(made, variant)
    root = tmp_path_factory.mktemp("models")
    for source, name, version in [
        (article_artifact, DEFAULT, "1"),
        (article_artifact, OTHER, "1"),
        (made, OTHER, "2"),
    ]:
        run_module(
            "export", source, "--triton-repo", root, "--model-name", name,
            "--model-version", version,
        )  # fmt: skip
    with (root / OTHER / "config.pbtxt").open("a") as config:
        config.write("version_policy: { all { } }\n")
    return root


def serve(repository: Path, tmp_dir: Path) -> RunningServer:
    """A server of `repository`, `article` its default model."""
    return start_server(
        repository, "--model-name", DEFAULT, tmp_dir=tmp_dir, model_flag="--model-repository"
    )


@pytest.fixture(scope="module")
def served(repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = serve(repository, tmp_path_factory.mktemp("served"))
    yield running
    assert running.stop() == 0


def labels_of(model: Artifact, images: NDArray[np.uint8]) -> list[int]:
    """The numpy forward pass's labels."""
    return list(predict(model.weights, model.biases, images).tolist())


def test_the_two_models_label_the_test_images_differently(
    mnist: Dataset, artifact: Artifact, variant: Artifact
) -> None:
    # What the tests below rest on: an answer tells which model gave it.
    for images in (mnist.test_images[:FEW], mnist.test_images):
        assert labels_of(artifact, images) != labels_of(variant, images)


@pytest.mark.parametrize(
    ("name", "version", "answered", "parameters"),
    [
        ("", "", (DEFAULT, "1"), "article"),
        (OTHER, "", (OTHER, "2"), "variant"),
        (OTHER, "1", (OTHER, "1"), "article"),
    ],
    ids=["the server's default", "a model, its newest version", "a model and a version"],
)
def test_the_client_asks_for_the_model_named(
    served: RunningServer,
    mnist: Dataset,
    artifact: Artifact,
    variant: Artifact,
    name: str,
    version: str,
    answered: tuple[str, str],
    parameters: str,
) -> None:
    images = mnist.test_images
    with Client(served.target, model_name=name, model_version=version) as client:
        info = client.model_info()
        one_call = client.predict(images[:FEW]).labels.tolist()
        stream = client.predict(images).labels.tolist()
    assert (info.name, info.version) == answered
    expected = labels_of(artifact if parameters == "article" else variant, images)
    assert one_call == expected[:FEW] and stream == expected


def test_every_replica_must_serve_the_model_named(
    served: RunningServer,
    server: RunningServer,
    repository: Path,
    mnist: Dataset,
    variant: Artifact,
    tmp_path: Path,
) -> None:
    with serve(repository, tmp_path) as twin:
        with Client(f"{served.target},{twin.target}", model_name=OTHER) as client:
            assert (client.model_info().name, client.model_info().version) == (OTHER, "2")
            labels = client.predict(mnist.test_images).labels.tolist()  # a call per batch
        assert twin.stop() == 0
    assert labels == labels_of(variant, mnist.test_images)
    # The session's server serves the article's model only, as 'scratchnet'; whichever replica
    # round robin asks first, the message names the one without the model.
    for _ in range(4):
        with (
            Client(f"{served.target},{server.target}", model_name=OTHER) as client,
            pytest.raises(NotFoundError) as raised,
        ):
            client.model_info()
        unknown = f"Request for unknown model: '{OTHER}' is not found (at {server.target})"
        assert str(raised.value).endswith(unknown)


@pytest.mark.parametrize(
    ("name", "version", "message"),
    [
        ("nope", "", "Request for unknown model: 'nope' is not found"),
        (OTHER, "9", f"Request for unknown model: '{OTHER}' version 9 is not found"),
    ],
)
def test_a_model_or_version_not_served_is_not_found(
    served: RunningServer, mnist: Dataset, name: str, version: str, message: str
) -> None:
    with (
        Client(served.target, model_name=name, model_version=version) as client,
        pytest.raises(NotFoundError) as raised,
    ):
        client.predict(mnist.test_images[:1])
    assert raised.value.code == grpc.StatusCode.NOT_FOUND
    assert str(raised.value) == f"NOT_FOUND from {served.target}: {message}"


@pytest.mark.parametrize(
    ("flags", "answered", "parameters"),
    [
        (("--model-name", OTHER), (OTHER, "2"), "variant"),
        (("--model-name", OTHER, "--model-version", "1"), (OTHER, "1"), "article"),
    ],
    ids=["a model", "a model and a version"],
)
def test_the_command_lines_ask_for_the_model_named(
    served: RunningServer,
    mnist: Dataset,
    artifact: Artifact,
    variant: Artifact,
    tmp_path: Path,
    flags: tuple[str, ...],
    answered: tuple[str, str],
    parameters: str,
) -> None:
    model = artifact if parameters == "article" else variant
    np.save(tmp_path / "digits.npy", mnist.test_images[:FEW])
    predicted = run_module(
        "clients.predict", "--target", served.target, *flags, tmp_path / "digits.npy", "--json"
    )
    report = json.loads(predicted.stdout)
    assert tuple(report["model"].values()) == answered
    assert [row["label"] for row in report["predictions"]] == labels_of(model, mnist.test_images)[
        :FEW
    ]
    scored = json.loads(
        run_module("clients.score", "--target", served.target, *flags, "--json", "-q").stdout
    )
    assert tuple(scored["model"].values()) == answered
    right = np.equal(labels_of(model, mnist.test_images), mnist.test_labels)
    assert scored["correct"] == int(right.sum())


@pytest.mark.parametrize(
    ("program", "flags", "message"),
    [
        ("clients.predict", ("--model-name", "nope"), "Request for unknown model: 'nope'"),
        ("clients.score", ("--model-name", "nope"), "Request for unknown model: 'nope'"),
        (
            "clients.score",
            ("--model-name", OTHER, "--model-version", "9"),
            f"Request for unknown model: '{OTHER}' version 9 is not found",
        ),
    ],
)
def test_a_model_not_served_is_one_line_and_exit_1(
    served: RunningServer,
    mnist: Dataset,
    tmp_path: Path,
    program: str,
    flags: tuple[str, ...],
    message: str,
) -> None:
    np.save(tmp_path / "digit.npy", mnist.test_images[0])
    files = [tmp_path / "digit.npy"] if program == "clients.predict" else []
    result = run_module(program, "--target", served.target, *flags, *files, check=False)
    assert_one_line_error(result, f"python -m {program}", "NOT_FOUND from", message, code=1)
