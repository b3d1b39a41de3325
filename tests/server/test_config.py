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


def test_a_bad_environment_value_names_the_variable(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        parse_config([], {"SCRATCHNET_WORKERS": "0"}, "prog")
    assert raised.value.code == 2
    assert capsys.readouterr().err == (
        "prog: error: environment variable SCRATCHNET_WORKERS: expected an integer >= 1, got 0 "
        "(see prog --help)\n"
    )


def test_http_is_off_unless_a_port_is_given() -> None:
    assert parse_config([], {}, "prog").http_port is None
    assert parse_config([], {"SCRATCHNET_HTTP_PORT": "8000"}, "prog").http_port == 8000
    config = parse_config(["--http-port", "0", "--host", "::1"], {}, "prog")
    assert (config.http_port, config.http_address) == (0, "[::1]:0")
    assert (
        parse_config(["--http-port", "off"], {"SCRATCHNET_HTTP_PORT": "1"}, "prog").http_port
        is None
    )


def test_a_bad_http_port_names_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_config(["--http-port", "70000"], {}, "prog")
    assert "argument --http-port: expected an integer between 0 and 65535, got 70000" in (
        capsys.readouterr().err
    )
