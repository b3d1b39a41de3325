"""server.dataplane in process: each check once, in the order a client can fix its request."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from scratchnet.errors import InvalidArgument, NotFound, ResourceExhausted, TooLarge
from server.dataplane import (
    Call,
    ClassifyRequest,
    DataPlane,
    InferRequest,
    RequestedOutput,
)
from server.scheduling import BatchingConfig, Limits
from server.tensors import InputTensor, pack_strings
from tests.server import foreign_models
from tests.server.conftest import classify, infer, plane_with, recorded, tensor
from tests.server.onnx_models import (
    build_classifier,
    contract_metadata,
    numpy_scores,
    random_classifier,
)


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> DataPlane:
    """A 3-class classifier of 4x5 images served as 'tiny' with --max-batch 4, no input_scale."""
    weights, biases = random_classifier(3, 4, 5)
    path = build_classifier(tmp_path_factory.mktemp("m") / "m.onnx", weights, biases)
    return plane_with(path, "tiny", max_batch=4)


@pytest.fixture(scope="module")
def scaled(tmp_path_factory: pytest.TempPathFactory) -> DataPlane:
    """The same kind of model with this project's metadata: input_scale 1/255."""
    weights, biases = random_classifier(3, 4, 5)
    path = build_classifier(
        tmp_path_factory.mktemp("s") / "s.onnx", weights, biases, metadata=contract_metadata(3)
    )
    return plane_with(path, "scaled")


def _classify(plane: DataPlane, images: InputTensor, model: str = "tiny") -> None:
    asyncio.run(plane.classify(ClassifyRequest(model, "", images, ("label",))))


def test_checks_come_in_the_order_a_client_can_fix_them(plane: DataPlane) -> None:
    def bad(datatype: str, shape: tuple[int, ...], data: bytes = b"") -> InputTensor:
        return InputTensor("images", datatype, shape, raw=data)

    with pytest.raises(NotFound, match="'nope' is not found"):
        _classify(plane, bad("FP64", (9, 9)), model="nope")
    with pytest.raises(InvalidArgument, match="expected datatype FP32 or UINT8, got FP64"):
        _classify(plane, bad("FP64", (9, 9)))
    with pytest.raises(InvalidArgument, match="expected datatype FP32 or UINT8, got BF16"):
        _classify(plane, bad("BF16", (9, 9)))
    with pytest.raises(InvalidArgument, match=r"expected shape \[-1,4,5\], got \[9,9\]"):
        _classify(plane, bad("UINT8", (9, 9)))
    with pytest.raises(InvalidArgument, match=r"shape \[-1,4,5\] has a negative dimension"):
        _classify(plane, bad("UINT8", (-1, 4, 5)))
    with pytest.raises(InvalidArgument, match=r"must be <= 4 \(the server's --max-batch\), got 5"):
        _classify(plane, bad("UINT8", (5, 4, 5)))
    with pytest.raises(InvalidArgument, match="expected 40 bytes"):
        _classify(plane, bad("UINT8", (2, 4, 5), bytes(39)))
    _classify(plane, bad("UINT8", (2, 4, 5), bytes(40)))


def test_client_strings_in_messages_are_cut(plane: DataPlane) -> None:
    with pytest.raises(InvalidArgument) as raised:
        _classify(plane, InputTensor("images", "X" * 100_000, (1, 4, 5), raw=bytes(20)))
    assert len(str(raised.value)) < 400
    with pytest.raises(NotFound) as missing:
        _classify(plane, InputTensor("images", "UINT8", (1, 4, 5)), model="m" * 100_000)
    assert len(str(missing.value)) < 400


def test_the_empty_batch_and_the_first_non_finite_image_are_named(plane: DataPlane) -> None:
    with pytest.raises(InvalidArgument, match=r"^input 'images' of model 'tiny': the batch is"):
        _classify(plane, tensor(np.zeros((0, 4, 5), np.float32)))
    images = np.zeros((2, 4, 5), np.float32)
    images[1, 3, 4] = np.inf
    with pytest.raises(InvalidArgument, match=r"in 1 image\(s\), the first at index 1"):
        _classify(plane, tensor(images))


def test_huge_finite_pixels_never_give_an_ok_answer_with_non_finite_results(
    plane: DataPlane, scaled: DataPlane
) -> None:
    huge = np.full((2, 4, 5), 3e38, np.float32)
    # No input_scale: the model's own range is unknown, but its results must be finite.
    with pytest.raises(InvalidArgument, match="computed NaN or infinity in output"):
        classify(plane, huge, "probabilities", model="tiny")
    # input_scale 1/255: pixels outside [0, 1] are refused, 0-255 floats with a hint.
    with pytest.raises(InvalidArgument, match=r"float pixels must lie in \[0, 1\].*found 3e\+38"):
        classify(scaled, huge, model="scaled")
    with pytest.raises(InvalidArgument, match="found 255 in image 1: divide 0-255 pixels by 255"):
        classify(scaled, np.stack([np.zeros((4, 5)), np.full((4, 5), 255)]).astype(np.float32),
                 model="scaled")  # fmt: skip
    # Just past 1: every digit, not a rounded "1" that reads as inside the range.
    above = np.full((1, 4, 5), np.nextafter(np.float32(1), np.float32(2)), np.float32)
    with pytest.raises(InvalidArgument, match=r"found 1\.0000001\d* in image 0"):
        classify(scaled, above, model="scaled")
    assert classify(scaled, np.ones((1, 4, 5), np.float32), model="scaled")["label"].shape == (1,)


def test_infer_speaks_the_model_own_names_and_checks_each_input(
    tmp_path: Path,
) -> None:
    weights, biases = random_classifier(3, 4, 5)
    path = build_classifier(tmp_path / "m.onnx", weights, biases, input_name="x",
                            outputs=[("scores", "logits"), ("label", "top")])  # fmt: skip
    plane = plane_with(path, "own")
    images = np.random.default_rng(0).random((3, 4, 5), dtype=np.float32)
    response = infer(
        plane, InferRequest("own", "", [tensor(images, "x")], [RequestedOutput("top")])
    )
    assert list(response.outputs) == ["top"]
    expected = numpy_scores(weights, biases, images)
    np.testing.assert_array_equal(response.outputs["top"], expected.argmax(axis=1))
    every = infer(plane, InferRequest("own", "", [tensor(images, "x")]))
    assert list(every.outputs) == ["logits", "top"]
    with pytest.raises(InvalidArgument, match="unexpected inference output 'scores' for model"):
        infer(plane, InferRequest("own", "", [tensor(images, "x")], [RequestedOutput("scores")]))
    with pytest.raises(InvalidArgument, match="unexpected inference input 'images'"):
        infer(plane, InferRequest("own", "", [tensor(images)]))
    with pytest.raises(InvalidArgument, match=r"missing required inputs \['x'\]"):
        infer(plane, InferRequest("own", "", []))
    with pytest.raises(InvalidArgument, match="input 'x' already exists in request"):
        infer(plane, InferRequest("own", "", [tensor(images, "x"), tensor(images, "x")]))


def test_inputs_with_different_batch_sizes_are_the_clients_mistake(tmp_path: Path) -> None:
    plane = plane_with(foreign_models.two_inputs(tmp_path / "pair.onnx"), "pair")
    a, b = np.ones((2, 3), np.float32), np.ones((3, 3), np.float32)
    with pytest.raises(InvalidArgument, match="input 'b' of model 'pair': batch size 3 does not "
                       "match the 2 of input 'a'"):  # fmt: skip
        infer(plane, InferRequest("pair", "", [tensor(a, "a"), tensor(b, "b")]))
    answer = infer(plane, InferRequest("pair", "", [tensor(a, "a"), tensor(a + 1, "b")]))
    np.testing.assert_array_equal(answer.outputs["product"], np.full((2, 3), 2, np.float32))


def test_an_output_too_large_for_its_shared_memory_is_refused_and_counted_a_failure(
    tmp_path: Path,
) -> None:
    weights, biases = random_classifier(3, 4, 5)
    plane = plane_with(build_classifier(tmp_path / "m.onnx", weights, biases), "small")
    images = np.random.default_rng(1).random((2, 4, 5), dtype=np.float32)

    def scores_into(byte_size: int) -> InferRequest:
        room = {"shared_memory_region": "out", "shared_memory_byte_size": byte_size}
        return InferRequest("small", "", [tensor(images)], [RequestedOutput("scores", room)])

    # 2 images x 3 classes x 4 bytes = 24 bytes.
    with pytest.raises(InvalidArgument, match="output 'scores' of model 'small': 24 bytes do "
                       "not fit in the 23 bytes given in shared memory region 'out'"):  # fmt: skip
        infer(plane, scores_into(23))
    figures = plane.model_statistics("small")[0]
    assert (figures.success.count, figures.fail.count, figures.inference_count) == (0, 1, 0)
    assert infer(plane, scores_into(24)).outputs["scores"].shape == (2, 3)
    figures = plane.model_statistics("small")[0]
    assert (figures.success.count, figures.fail.count, figures.inference_count) == (1, 1, 2)


def test_bytes_reach_the_model_as_the_text_sent_and_other_bytes_are_refused(
    tmp_path: Path,
) -> None:
    plane = plane_with(foreign_models.strings(tmp_path / "s.onnx"), "echo")
    sent = np.array([[b"hello"], ["h\u00e9".encode()]], dtype=object)
    answer = infer(plane, InferRequest("echo", "", [_strings(sent)]))
    assert answer.outputs["echo"].tolist() == [["hello"], ["h\u00e9"]]
    latin1 = np.array([[b"ok"], [b"h\xe9"]], dtype=object)
    with pytest.raises(InvalidArgument, match="input 'text' of model 'echo': BYTES element 1 is "
                       "not UTF-8 text"):  # fmt: skip
        infer(plane, InferRequest("echo", "", [_strings(latin1)]))


def _strings(array: np.ndarray) -> InputTensor:
    return InputTensor("text", "BYTES", array.shape, raw=pack_strings(array))


def _batching_plane(folder: Path, delay: float) -> DataPlane:
    """A 3-class classifier of 4x5 images as 'm', dynamic batching with `delay` seconds, every
    run on an inference thread."""
    weights, biases = random_classifier(3, 4, 5)
    return plane_with(build_classifier(folder / "m.onnx", weights, biases), "m", max_batch=64,
                      limits=Limits(inline_seconds=0),
                      batching=BatchingConfig(max_delay_seconds=delay))  # fmt: skip


def test_requests_merged_into_one_run_count_one_execution_as_tritons_statistics_do(
    tmp_path: Path,
) -> None:
    # 0.2 s for the three requests to meet in a batch.
    plane = _batching_plane(tmp_path, delay=0.2)
    images = np.random.default_rng(2).random((6, 4, 5), dtype=np.float32)

    async def three() -> None:
        requests = [InferRequest("m", "", [tensor(images[i : i + 2])]) for i in (0, 2, 4)]
        await asyncio.gather(*(plane.infer(request) for request in requests))
        plane.close()

    asyncio.run(three())
    (figures,) = plane.model_statistics("m")
    assert (figures.success.count, figures.inference_count, figures.execution_count) == (3, 6, 1)
    assert [(b.batch_size, b.compute_infer.count) for b in figures.batches] == [(6, 1)]


def test_a_request_cancelled_in_the_batch_queue_is_told_with_the_time_it_waited(
    tmp_path: Path,
) -> None:
    # A batch delay far longer than the test: the request waits in the queue until cancelled.
    plane = _batching_plane(tmp_path, delay=60)
    seen = recorded(plane)
    images = np.zeros((1, 4, 5), dtype=np.float32)

    async def cancelled() -> None:
        call = asyncio.ensure_future(plane.infer(InferRequest("m", "", [tensor(images)])))
        await asyncio.sleep(0)  # the call reaches the queue: its wait starts before the 0.2 s
        await asyncio.sleep(0.2)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        plane.close()

    asyncio.run(cancelled())
    (outcome,) = seen
    assert outcome.status == "Cancelled" and 0.2 <= outcome.timing.queue / 1e9 < 30


def test_a_bug_outside_the_data_plane_is_counted_once_as_internal(plane: DataPlane) -> None:
    seen = recorded(plane)
    try:
        bug = ValueError("invalid literal for int() with base 10: '\u00b2'")
        plane.refused(Call("http", method="POST /v2/models/tiny/infer"), bug)
        plane.refused(Call("http"), bug)  # the transport's outer handler sees it again
    finally:
        plane.observers.pop()
    assert [(o.api, o.status, o.reason) for o in seen] == [
        ("http", "Internal", "ValueError: invalid literal for int() with base 10: '\u00b2'")
    ]


def test_a_shape_promising_more_than_was_sent_is_the_clients_mistake_not_a_full_budget(
    tmp_path: Path,
) -> None:
    # 4 values under a shape of 400 million: no retry would ever fit it in the budget.
    weights, biases = random_classifier(3, 4, 5)
    path = build_classifier(tmp_path / "m.onnx", weights, biases)
    plane = plane_with(path, "m", max_batch=8, budget_bytes=1 << 20)
    pixels = np.zeros(20, np.float32).tobytes()
    for shape in [(100_000_000, 4, 5), (10**23, 4, 5)]:
        huge = InputTensor("images", "FP32", shape, raw=pixels)
        with pytest.raises(InvalidArgument, match="batch size must be <= 8"):
            infer(plane, InferRequest("m", "", [huge]))


def test_inputs_over_the_whole_budget_are_too_large_and_over_what_is_left_exhausted(
    tmp_path: Path,
) -> None:
    # The first can never fit, so no retry should be asked for (HTTP 413); the second can later.
    weights, biases = random_classifier(3, 4, 5)
    path = build_classifier(tmp_path / "m.onnx", weights, biases)
    plane = plane_with(path, "m", max_batch=1000, budget_bytes=4000)
    big = InputTensor("images", "FP32", (60, 4, 5), raw=np.zeros((60, 4, 5), np.float32).tobytes())
    with pytest.raises(TooLarge, match=r"inputs take 4,800 bytes, more than the 4,000 the server "):
        infer(plane, InferRequest("m", "", [big]))
    plane.inflight_bytes = 1000  # as if another request held a quarter of it
    fits_alone = InputTensor(
        "images", "FP32", (40, 4, 5), raw=np.zeros((40, 4, 5), np.float32).tobytes()
    )
    with pytest.raises(ResourceExhausted, match="are in use; retry later"):
        infer(plane, InferRequest("m", "", [fits_alone]))
