"""Batch scoring on Ray Data (clients.ray_engine) in one local Ray session shared by the module:
labels keyed by id equal the numpy forward pass's, a killed actor is replaced without losing or
repeating an image, and without restarts the job fails cleanly."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from numpy.typing import NDArray
from PIL import Image

from clients.inputs import open_source
from clients.ray_engine import RAY_ENVIRONMENT, import_ray, score_on_ray
from scratchnet.artifact import Artifact
from scratchnet.datasets import Dataset
from scratchnet.errors import ScratchnetError
from scratchnet.forward import predict, probabilities, scores

pytestmark = [
    # Ray Data sets deprecated options of its own when it creates its context.
    pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.*"),
    # A 2-CPU Ray, and a test that must catch an actor at work to kill it: alone on the machine.
    pytest.mark.serial,
]

# A Ray Data actor scoring a block is titled "ray::MapWorker(MapBatches(_Scorer)).submit".
ACTOR_TITLE = "MapWorker(MapBatches(_Scorer))"


@pytest.fixture(scope="module")
def ray_session() -> Iterator[Any]:
    """One local Ray for the module: 2 CPUs, no dashboard, no usage reports or metrics."""
    for name, value in RAY_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    ray = import_ray()
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    yield ray
    ray.shutdown()


def expected_labels(artifact: Artifact, images: NDArray[Any]) -> NDArray[np.int64]:
    return predict(artifact.weights, artifact.biases, images)


def test_mnist_rows_match_numpy_by_id(
    ray_session: Any, model_onnx: Path, mnist: Dataset, artifact: Artifact, tmp_path: Path
) -> None:
    output = tmp_path / "scores.parquet"
    run = score_on_ray(open_source(None, None), model_onnx, output=output)
    table = pq.read_table(output)
    images = mnist.test_images
    assert table.column_names == ["id", "label", "scores", "probabilities"]
    assert table["id"].to_pylist() == list(range(len(images)))
    labels = expected_labels(artifact, images)
    assert np.array_equal(table["label"].to_numpy(), labels)
    assert np.array_equal(run.labels, labels)
    assert np.mean(run.labels == mnist.test_labels) == 0.9104
    reference = scores(artifact.weights, artifact.biases, images)
    found = np.stack(table["scores"].to_numpy(zero_copy_only=False))
    assert np.abs(found - reference).max() < 1e-4
    found_probabilities = np.stack(table["probabilities"].to_numpy(zero_copy_only=False))
    assert np.abs(found_probabilities - probabilities(reference)).max() < 1e-5
    assert run.actors == 2 and run.files == 1
    assert [path.suffix for path in output.iterdir()] == [".parquet"]
    assert not list(tmp_path.glob(".*")), "written through a temporary folder, renamed at the end"
    assert run.start_seconds == 0.0 and run.stop_seconds == 0.0, "the module's session is reused"


def test_a_folder_of_photos_is_read_in_the_pipeline(
    ray_session: Any, model_onnx: Path, mnist: Dataset, artifact: Artifact, tmp_path: Path
) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    images = mnist.test_images[:7]
    for index, image in enumerate(images):
        # White digits on black, as MNIST: --invert auto leaves them as they are.
        Image.fromarray(image).save(folder / f"digit-{index}.png")
    np.save(folder / "eight.npy", images[0])
    output = tmp_path / "photos.parquet"
    # MNIST digits already: taken as they are (no MNIST-style preprocessing).
    source = open_source(folder, None, preprocess=False)
    run = score_on_ray(source, model_onnx, output=output, batch_size=3)
    table = pq.read_table(output).to_pydict()
    files = [f"digit-{index}.png" for index in range(7)]
    assert [Path(name).name for name in table["file"]] == [*files, "eight.npy"]
    assert table["id"] == list(range(8))
    assert (
        table["label"] == expected_labels(artifact, np.concatenate([images, images[:1]])).tolist()
    )
    assert run.labels.tolist() == table["label"]


def test_a_bad_photo_in_a_folder_is_one_clear_error(
    ray_session: Any, model_onnx: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "notes.txt").write_text("not an image\n")
    with pytest.raises(ScratchnetError, match=r"notes.txt: not a readable image"):
        score_on_ray(open_source(folder, None), model_onnx, output=tmp_path / "out.parquet")
    assert not (tmp_path / "out.parquet").exists()


class ActorKiller:
    """Kills (SIGKILL) the first scoring actor seen working on a block, from a thread."""

    def __init__(self) -> None:
        self.killed: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ActorKiller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        deadline = time.monotonic() + 120
        while not self._stop.is_set() and time.monotonic() < deadline:
            for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
                try:
                    title = cmdline.read_bytes().decode(errors="replace")
                except OSError:
                    continue
                # Ray titles an actor's process with the method it runs: a block in progress.
                if title.startswith(f"ray::{ACTOR_TITLE}.submit"):
                    pid = int(cmdline.parent.name)
                    os.kill(pid, signal.SIGKILL)
                    self.killed = pid
                    return
            time.sleep(0.005)


def test_a_killed_actor_is_replaced_and_no_image_is_lost_or_repeated(
    ray_session: Any, model_onnx: Path, mnist: Dataset, artifact: Artifact, tmp_path: Path
) -> None:
    source = open_source(None, "train")  # 60,000 images in 8 blocks, small batches: a few seconds
    output = tmp_path / "train.parquet"
    with ActorKiller() as killer:
        run = score_on_ray(source, model_onnx, output=output, batch_size=250)
    assert killer.killed is not None, "no actor was seen scoring a block"
    assert not Path(f"/proc/{killer.killed}").exists()
    ids = pq.read_table(output, columns=["id"])["id"].to_numpy()
    assert np.array_equal(ids, np.arange(len(mnist.train_images)))
    assert np.array_equal(run.labels, expected_labels(artifact, mnist.train_images))


# Ray 2.60 still takes actor options as extra keyword arguments of map_batches, with a warning.
@pytest.mark.filterwarnings("ignore:`ray_remote_args` is deprecated")
def test_without_restarts_a_killed_actor_fails_the_job(
    ray_session: Any, model_onnx: Path, tmp_path: Path
) -> None:
    output = tmp_path / "train.parquet"
    no_restarts = {"max_restarts": 0, "max_task_retries": 0}
    with ActorKiller() as killer, pytest.raises(ScratchnetError) as raised:
        score_on_ray(
            open_source(None, "train"),
            model_onnx,
            output=output,
            batch_size=250,
            ray_remote_args=no_restarts,
        )
    assert killer.killed is not None
    assert str(raised.value).startswith("the Ray job failed: ") and raised.value.failure
    assert "\n" not in str(raised.value)
    assert not output.exists() and not list(tmp_path.iterdir()), "no partial output"
