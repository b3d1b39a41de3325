"""server.config without a process: flags over environment variables over defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.config import parse_config


def test_defaults() -> None:
    config = parse_config([], {}, "prog")
    assert config.model == Path("artifacts/model.onnx")
    assert (config.host, config.port, config.model_name) == ("127.0.0.1", 50051, "scratchnet")
    assert config.address == "127.0.0.1:50051"
    assert config.max_message_bytes == 64 * 1024 * 1024
    assert config.grace_seconds == 10.0


def test_every_flag_has_an_environment_variable_and_the_flag_wins() -> None:
    env = {
        "SCRATCHNET_MODEL": "m.onnx", "SCRATCHNET_HOST": "::1", "SCRATCHNET_PORT": "0",
        "SCRATCHNET_MODEL_NAME": "digits", "SCRATCHNET_MAX_BATCH": "7",
        "SCRATCHNET_THREADS": "2", "SCRATCHNET_WORKERS": "3", "SCRATCHNET_MAX_QUEUE": "4",
        "SCRATCHNET_MAX_MESSAGE_MB": "5", "SCRATCHNET_GRACE_SECONDS": "1.5",
        "SCRATCHNET_LOG_LEVEL": "DEBUG",
    }  # fmt: skip
    config = parse_config([], env, "prog")
    assert config.model == Path("m.onnx")
    assert config.address == "[::1]:0"
    assert (config.model_name, config.max_batch, config.threads) == ("digits", 7, 2)
    assert (config.workers, config.max_queue, config.max_message_mb) == (3, 4, 5)
    assert (config.grace_seconds, config.log_level) == (1.5, "debug")
    assert parse_config(["--max-batch", "9"], env, "prog").max_batch == 9


def test_a_switch_set_in_the_environment_can_be_undone_on_the_command_line() -> None:
    env = {"SCRATCHNET_DYNAMIC_BATCHING": "on", "SCRATCHNET_NO_REFLECTION": "1"}
    assert parse_config([], env, "prog").dynamic_batching
    assert not parse_config(["--no-dynamic-batching"], env, "prog").dynamic_batching
    assert parse_config(["--dynamic-batching"], {}, "prog").dynamic_batching
    assert parse_config([], env, "prog").no_reflection
    assert parse_config([], {"SCRATCHNET_UPLOAD_SECONDS": "0"}, "prog").upload_seconds == 0


def test_a_bad_environment_value_names_the_variable(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        parse_config([], {"SCRATCHNET_WORKERS": "0"}, "prog")
    assert raised.value.code == 2
    assert capsys.readouterr().err == (
        "prog: error: environment variable SCRATCHNET_WORKERS: expected an integer between 1 and "
        "256, got 0 "
        "(see prog --help)\n"
    )


def test_metrics_port_and_log_format_are_off_and_text_by_default_and_checked(
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = parse_config([], {}, "prog")
    assert (config.metrics_port, config.log_format) == (None, "text")
    env = {"SCRATCHNET_METRICS_PORT": "8002", "SCRATCHNET_LOG_FORMAT": "JSON"}
    config = parse_config([], env, "prog")
    assert (config.metrics_port, config.log_format) == (8002, "json")
    assert parse_config(["--metrics-port", "0"], env, "prog").metrics_port == 0
    assert parse_config(["--metrics-port", "off"], env, "prog").metrics_port is None
    for argv, expected in (
        (["--metrics-port", "70000"], "argument --metrics-port: expected an integer between 0"),
        (["--log-format", "xml"], "argument --log-format: expected one of text, json, got 'xml'"),
    ):
        with pytest.raises(SystemExit) as raised:
            parse_config(argv, {}, "prog")
        assert raised.value.code == 2
        error = capsys.readouterr().err
        assert error.startswith(f"prog: error: {expected}") and error.count("\n") == 1, error


def test_http_is_off_unless_a_port_is_given() -> None:
    assert parse_config([], {}, "prog").http_port is None
    assert parse_config([], {"SCRATCHNET_HTTP_PORT": "8000"}, "prog").http_port == 8000
    config = parse_config(["--http-port", "0", "--host", "::1"], {}, "prog")
    assert (config.http_port, config.http_address) == (0, "[::1]:0")
    assert (
        parse_config(["--http-port", "off"], {"SCRATCHNET_HTTP_PORT": "1"}, "prog").http_port
        is None
    )


@pytest.mark.parametrize(("flag", "low"), [("--threads", 0), ("--workers", 1)])
def test_thread_counts_are_bounded(flag: str, low: int, capsys: pytest.CaptureFixture[str]) -> None:
    # Unbounded, a typo of 100000 started threads until the machine could fork no more.
    with pytest.raises(SystemExit):
        parse_config([flag, "100000"], {}, "prog")
    assert f"argument {flag}: expected an integer between {low} and 256, got 100000" in (
        capsys.readouterr().err
    )
    assert getattr(parse_config([flag, "256"], {}, "prog"), flag[2:]) == 256


def test_a_bad_http_port_names_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_config(["--http-port", "70000"], {}, "prog")
    assert "argument --http-port: expected an integer between 0 and 65535, got 70000" in (
        capsys.readouterr().err
    )


@pytest.mark.parametrize("name", ["a/b", "a\tb", ".hidden", "", "-x"])
def test_a_model_name_http_cannot_reach_is_refused(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # The name is a segment of /v2/models/{name}/...: "a/b" was served over gRPC only.
    with pytest.raises(SystemExit) as raised:
        parse_config([f"--model-name={name}"], {}, "prog")
    assert raised.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith(
        "prog: error: argument --model-name: expected letters, digits, '_', '-' and '.', not "
        f"starting with '-' or '.' (the name is a segment of the HTTP paths), got {name!r}"
    ), error
    assert error.count("\n") == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--preferred-batch-sizes", "16"], "are only used with --dynamic-batching"),
        (["--max-batch-delay-us", "5000"], "are only used with --dynamic-batching"),
        (
            ["--dynamic-batching", "--preferred-batch-sizes", "16,2048"],
            "--preferred-batch-sizes 2048 is over --max-batch 1024: expected sizes from 1 to 1024",
        ),
        (["--request-timeout", "-1"], "--request-timeout: expected a number of seconds > 0, got"),
    ],
)
def test_batching_flags_need_batching_and_fit_the_batch_limit(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Silently ignored or accepted, a Triton user's mistake would surface only as slow calls.
    with pytest.raises(SystemExit):
        parse_config(args, {}, "prog")
    assert message in capsys.readouterr().err
    config = parse_config(["--dynamic-batching", "--preferred-batch-sizes", "1024"], {}, "prog")
    assert config.preferred_batch_sizes == (1024,)
