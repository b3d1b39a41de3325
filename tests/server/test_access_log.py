"""server.logs: the access log's lines and the JSON format in process, then the lines of a real
server's stderr after calls answered and refused on both APIs, as text and as JSON."""

from __future__ import annotations

import http.client
import io
import json
import logging
import re
import warnings
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from scratchnet.api.inference import open_inference_grpc_pb2 as oip
from scratchnet.api.inference.open_inference_grpc_pb2_grpc import GRPCInferenceServiceStub
from server.dataplane import Outcome
from server.logs import (
    ACCESS_LOGGER,
    AccessEntry,
    AccessLog,
    JsonFormatter,
    TextFormatter,
    configure,
)
from server.statistics import Timing
from tests.conftest import start_server
from tests.server.calls import APIS, Caller, images
from tests.server.scraping import scrape, value

ACCESS_LINE = re.compile(r"^\S+ \S+ INFO scratchnet\.access: (.*)$")
PAIR = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*) ?')
TOKEN = "s3cret-token-never-logged"
PAYLOAD = images(2, value=ord("A"))  # bytes b"AAAA...": easy to look for
BAD = images(1, (27, 28), value=ord("A"))
HUGE = images(2000)  # 1.5 MiB of pixels: over --max-inflight-mb 1
CALLS = ((PAYLOAD, "OK"), (PAYLOAD, "OK"), (BAD, "INVALID_ARGUMENT"), (HUGE, "RESOURCE_EXHAUSTED"))


def logfmt(text: str) -> dict[str, str]:
    """The key=value pairs of a logfmt line, quoted values decoded; the whole line must parse."""
    assert PAIR.sub("", text) == "", text
    return {key: json.loads(v) if v.startswith('"') else v for key, v in PAIR.findall(text)}


@pytest.fixture
def root_logging() -> Iterator[None]:
    """Put the root logger back as it was after a test that configures it."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.captureWarnings(False)


def _outcome(status: str = "OK", reason: str = "", model: str = "scratchnet") -> Outcome:
    timing = Timing(queue=1_000, compute_input=2_000, compute_infer=30_000, compute_output=4_000)
    items = 3 if status == "OK" else 0
    return Outcome("v2", model, "1", items, status, reason, timing, items)


def test_an_entry_is_one_logfmt_line_that_quotes_what_could_break_it() -> None:
    line = str(AccessEntry.of(_outcome()))
    fields = logfmt(line)
    assert fields["status"] == "OK" and fields["items"] == "3" and "reason" not in fields
    assert (fields["queue_ms"], fields["compute_ms"]) == ("0.001", "0.036")
    assert float(fields["duration_ms"]) >= 0
    refused = AccessEntry.of(
        _outcome("InvalidArgument", "input 'x\nINFO forged line': bad", model="my model")
    )
    line = str(refused)
    assert "\n" not in line
    fields = logfmt(line)
    assert fields["status"] == "INVALID_ARGUMENT" and fields["model"] == "my model"
    assert fields["reason"] == "input 'x\nINFO forged line': bad"


def test_access_lines_are_info_and_json_lines_carry_typed_fields(root_logging: None) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(f"{ACCESS_LOGGER}.test")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    AccessLog(logger).observe(_outcome())
    AccessLog(logger).observe(_outcome("ResourceExhausted", "the queue is full"))
    logger.setLevel(logging.WARNING)  # what --log-level warning does
    AccessLog(logger).observe(_outcome())
    try:
        raise ValueError("boom")
    except ValueError:
        logger.error("it broke\nover two lines", exc_info=True)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3
    ok, refused, error = map(json.loads, lines)
    assert (ok["level"], ok["logger"], ok["status"], ok["items"]) == (
        "INFO", f"{ACCESS_LOGGER}.test", "OK", 3,
    )  # fmt: skip
    assert isinstance(ok["duration_ms"], float) and ok["time"].endswith("Z")
    assert logfmt(ok["message"])["status"] == "OK"
    assert (refused["status"], refused["reason"]) == ("RESOURCE_EXHAUSTED", "the queue is full")
    assert error["message"] == "it broke\nover two lines"
    assert "ValueError: boom" in error["exception"]


def test_text_lines_carry_loggings_own_time_stamps() -> None:
    """The text formatter makes each second's date and time once; every stamp must still be
    the one logging itself would print, across second boundaries and with a datefmt of its own."""
    ours, theirs = TextFormatter("%(asctime)s %(message)s"), logging.Formatter("%(asctime)s")
    for created in (1_700_000_000.0, 1_700_000_000.999, 1_700_000_001.0005, 1_700_000_000.5):
        record = logging.makeLogRecord({"msg": "x", "created": created})
        record.msecs = (created - int(created)) * 1000
        assert ours.formatTime(record) == theirs.formatTime(record)
        assert ours.formatTime(record, "%H:%M") == theirs.formatTime(record, "%H:%M")


def test_configure_formats_every_logger_and_warnings_as_json(
    root_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure("info", "json")
    logging.getLogger("server.app").info("serving")
    logging.getLogger("server.app").debug("not shown")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("careful", UserWarning, stacklevel=1)
    records = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [record["logger"] for record in records] == ["server.app", "py.warnings"]
    assert "careful" in records[1]["message"]


# --- the real server ----------------------------------------------------------------------------


def _serve_and_call(model_onnx: Path, tmp_path: Path, *args: str) -> tuple[str, Counter[Any]]:
    """Start a server with `args`, make CALLS on both APIs, stop it; its stderr and the calls by
    (api, status)."""
    tokens = tmp_path / "tokens"
    tokens.write_text(TOKEN + "\n")
    made: Counter[tuple[str, str]] = Counter()
    with start_server(
        model_onnx, "--auth-token-file", str(tokens), "--max-inflight-mb", "1", *args,
        tmp_dir=tmp_path,
    ) as server:  # fmt: skip
        with grpc.insecure_channel(server.target) as channel:
            caller = Caller(channel, [("authorization", f"Bearer {TOKEN}")])
            stranger = Caller(channel, [("authorization", "Bearer wrong-token")])
            for api in APIS:
                for pixels, status in CALLS:
                    assert caller.call(api, pixels).name == status
                    made[api, status] += 1
                assert stranger.call(api, PAYLOAD).name == "UNAUTHENTICATED"
                made[api, "UNAUTHENTICATED"] += 1
        assert server.stop() == 0
        return server.stderr(), made


def test_each_call_is_one_text_line_and_a_refusal_says_why(
    model_onnx: Path, tmp_path: Path
) -> None:
    stderr, made = _serve_and_call(model_onnx, tmp_path)
    entries = [logfmt(m.group(1)) for line in stderr.splitlines() if (m := ACCESS_LINE.match(line))]
    assert Counter((entry["api"], entry["status"]) for entry in entries) == made
    for entry in entries:
        if entry["status"] == "UNAUTHENTICATED":  # refused before the model was looked at
            assert (entry["model"], entry["version"]) == ("", "")
            assert "missing or wrong bearer token" in entry["reason"]
            continue
        assert (entry["model"], entry["version"]) == ("scratchnet", "1")
        assert float(entry["duration_ms"]) > 0
        if entry["status"] == "OK":
            assert (entry["items"], entry["batch_items"]) == ("2", "2") and "reason" not in entry
        elif entry["status"] == "INVALID_ARGUMENT":
            assert "expected shape [-1,28,28], got [1,27,28]" in entry["reason"]
        else:
            assert "--max-inflight-mb" in entry["reason"]
    assert TOKEN not in stderr and "wrong-token" not in stderr
    assert "AAAAAAAA" not in stderr  # no payload


def test_no_access_log_leaves_the_calls_out_and_the_rest_in(
    model_onnx: Path, tmp_path: Path
) -> None:
    stderr, made = _serve_and_call(model_onnx, tmp_path, "--no-access-log")
    assert sum(made.values()) == len(APIS) * (len(CALLS) + 1)  # + one without a token each
    assert not [line for line in stderr.splitlines() if ACCESS_LINE.match(line)]
    assert "stopped" in stderr  # the server's own lines are still there


def test_with_log_format_json_every_line_is_an_object(model_onnx: Path, tmp_path: Path) -> None:
    stderr, made = _serve_and_call(model_onnx, tmp_path, "--log-format", "json")
    records = [json.loads(line) for line in stderr.splitlines()]
    assert all({"time", "level", "logger", "message"} <= set(record) for record in records)
    loggers = {record["logger"] for record in records}
    assert {"server.app", "server.model_control", ACCESS_LOGGER} <= loggers
    access = [record for record in records if record["logger"] == ACCESS_LOGGER]
    assert Counter((record["api"], record["status"]) for record in access) == made
    for record in access:
        assert isinstance(record["items"], int) and isinstance(record["duration_ms"], float)
        assert ("reason" in record) == (record["status"] != "OK")
    assert TOKEN not in stderr


def _post_infer(address: str, pixels: Any, path: str = "/v2/models/scratchnet/infer") -> int:
    """POST an Open Inference Protocol JSON request for `pixels` (None: one without inputs) to
    `path` on the server's HTTP port."""
    host, port = address.rsplit(":", 1)
    body = b"{}"
    if pixels is not None:
        tensor = {"name": "images", "shape": list(pixels.shape), "datatype": "UINT8"}
        body = json.dumps({"inputs": [{**tensor, "data": pixels.ravel().tolist()}]}).encode()
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request("POST", path, body=body)
        reply = connection.getresponse()
        reply.read()
        return reply.status
    finally:
        connection.close()


def test_http_requests_are_logged_and_counted_like_the_others(
    model_onnx: Path, tmp_path: Path
) -> None:
    with start_server(
        model_onnx, "--metrics-port", "0", tmp_dir=tmp_path, http=True, wait_for=("metrics",)
    ) as server:
        calls = (PAYLOAD, BAD, None)  # None: a body that does not decode (no inputs)
        statuses = [_post_infer(server.listeners["http"], pixels) for pixels in calls]
        assert statuses == [200, 400, 400]
        # The path as routed, its line break included (quoted in the line), not one cleaned up.
        crooked = "/v2/models/scratchnet/versions/%0A1/infer"
        assert _post_infer(server.listeners["http"], PAYLOAD, crooked) == 400
        samples = scrape(f"http://{server.listeners['metrics']}/metrics")
        assert server.stop() == 0
    # Both refusals count under the model the path names, whichever check caught them (the
    # crooked version names no version served).
    for status, count in (("OK", 1), ("INVALID_ARGUMENT", 2)):
        assert value(
            samples, "scratchnet_requests_total", api="http", status=status, model="scratchnet"
        ) == count  # fmt: skip
    assert value(samples, "scratchnet_request_items_sum", api="http") == len(PAYLOAD)
    lines = [m.group(1) for line in server.stderr().splitlines() if (m := ACCESS_LINE.match(line))]
    entries = list(map(logfmt, lines))
    assert [(e["api"], e["status"], e["model"]) for e in entries] == [
        ("http", "OK", "scratchnet"), ("http", "INVALID_ARGUMENT", "scratchnet"),
        ("http", "INVALID_ARGUMENT", "scratchnet"), ("http", "INVALID_ARGUMENT", ""),
    ]  # fmt: skip
    assert entries[-1]["method"] == "POST /v2/models/scratchnet/versions/\n1/infer"


def test_no_client_words_start_a_line_of_their_own_in_any_text_log_line(
    model_onnx: Path, tmp_path: Path
) -> None:
    """A load request's config quotes the client's model name in the server's error line: its
    line break is escaped there, so it cannot forge an access line below it."""
    (tmp_path / "repository" / "article" / "1").mkdir(parents=True)
    (tmp_path / "repository" / "article" / "1" / "model.onnx").write_bytes(model_onnx.read_bytes())
    forged = "FORGED INFO scratchnet.access: api=v2 status=OK"
    config = json.dumps({"name": f"article\n{forged}\u2028{forged}"})
    with start_server(
        tmp_path / "repository", "--model-control-mode", "explicit", "--load-model", "article",
        tmp_dir=tmp_path, model_flag="--model-repository",
    ) as server:  # fmt: skip
        with grpc.insecure_channel(server.target) as channel:
            load = GRPCInferenceServiceStub(channel).RepositoryModelLoad
            request = oip.RepositoryModelLoadRequest(
                model_name="article",
                parameters={"config": oip.ModelRepositoryParameter(string_param=config)},
            )
            with pytest.raises(grpc.RpcError) as raised:
                load(request, timeout=30)
            assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert server.stop() == 0
        stderr = server.stderr()
    assert "differs from the model's folder" in stderr
    assert "article\\nFORGED" in stderr and "\\u2028FORGED" in stderr  # escaped, on one line
    for line in stderr.splitlines():
        assert not line.startswith("FORGED") and "\u2028" not in line, line
