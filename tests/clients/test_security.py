"""The Python client and its command lines against a secured server (mutual TLS and bearer
tokens, certificates made in the test): served with the right options, refused with one line that
says which option to give when one is missing or wrong, and the token never shown."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import numpy as np
import pytest

from clients import Client, ClientError, ServerUnavailableError
from clients.credentials import Credentials
from scratchnet.artifact import Artifact
from scratchnet.datasets import Dataset
from scratchnet.forward import predict
from tests.certificates import Pem
from tests.conftest import TOKENS, RunningServer, assert_one_line_error, run_module

TOKEN = TOKENS[0]
# PEM armour around base64 that decodes to no certificate or key ("garbage").
GARBLED_PEM = "-----BEGIN CERTIFICATE-----\nZ2FyYmFnZQ==\n-----END CERTIFICATE-----\n"


@pytest.fixture(scope="module")
def token_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("client-token") / "token"
    path.write_text(TOKEN + "\n")
    return path


def options(pki: dict[str, Pem], **changes: object) -> dict[str, object]:
    """Client keyword arguments for the secured server, with `changes`."""
    return {
        "tls_ca": pki["ca"].cert,
        "tls_cert": pki["client"].cert,
        "tls_key": pki["client"].key,
        "token": TOKEN,
        **changes,
    }


def test_the_client_is_served_with_tls_a_client_certificate_and_the_token(
    secured: RunningServer, pki: dict[str, Pem], artifact: Artifact, mnist: Dataset
) -> None:
    images = mnist.test_images[:1500]
    expected = predict(artifact.weights, artifact.biases, images)
    # File paths, and PEM bytes; one request, then several on a stream.
    with Client(secured.target, batch_size=500, **options(pki)) as client:
        assert client.model_info().name == "scratchnet"
        assert np.array_equal(client.predict(images).labels, expected)
    as_bytes = {name: pki[key].cert.read_bytes() for name, key in [("tls_ca", "ca")]}
    as_bytes["tls_cert"] = pki["client"].cert.read_bytes()
    as_bytes["tls_key"] = pki["client"].key.read_bytes()
    with Client(secured.target, **options(pki, **as_bytes)) as client:
        assert np.array_equal(client.predict(images[:10]).labels, expected[:10])


@pytest.mark.parametrize(
    ("changes", "error", "hint"),
    [
        ({"token": None}, ClientError, "give --token-file FILE (or set SCRATCHNET_TOKEN)"),
        ({"token": "wrong"}, ClientError, "the token sent (--token-file or SCRATCHNET_TOKEN) was"),
        ({"tls_ca": None, "tls_cert": None, "tls_key": None}, ServerUnavailableError,
         "if the server serves TLS, give --tls-ca FILE"),
        ({"tls_cert": None, "tls_key": None}, ServerUnavailableError,
         "it may require a client certificate signed by a CA it trusts (--tls-cert FILE"),
        ({"tls_ca": "other"}, ServerUnavailableError,
         "the server's certificate is not signed by the CA of --tls-ca"),
    ],
    ids=["no token", "wrong token", "no TLS", "no client certificate", "another CA"],
)  # fmt: skip
def test_each_missing_or_wrong_option_is_one_line_naming_the_option_to_give(
    secured: RunningServer,
    pki: dict[str, Pem],
    changes: dict[str, object],
    error: type[ClientError],
    hint: str,
) -> None:
    if changes.get("tls_ca") == "other":
        changes = {**changes, "tls_ca": pki["other"].cert}
    with (
        Client(secured.target, timeout=10, **options(pki, **changes)) as client,
        pytest.raises(error) as raised,
    ):
        client.model_info()
    message = str(raised.value)
    assert "\n" not in message and hint in message, message
    assert TOKEN not in message


def test_tls_to_a_plaintext_server_says_it_does_not_serve_tls(
    server: RunningServer, pki: dict[str, Pem]
) -> None:
    with (
        Client(server.target, timeout=10, tls_ca=pki["ca"].cert) as client,
        pytest.raises(ServerUnavailableError) as raised,
    ):
        client.model_info()
    assert "the server does not seem to serve TLS" in str(raised.value)


def test_bad_tls_files_are_named_before_any_connection(pki: dict[str, Pem], tmp_path: Path) -> None:
    (tmp_path / "not.pem").write_text("hello")
    garbled = tmp_path / "garbled.pem"
    garbled.write_text(GARBLED_PEM)
    client = {"tls_cert": pki["client"].cert, "tls_key": pki["client"].key}
    for kwargs, message in [
        ({"tls_cert": pki["client"].cert}, "--tls-cert and --tls-key go together"),
        ({"tls_ca": tmp_path / "missing.pem"}, f"--tls-ca {tmp_path / 'missing.pem'}: cannot read"),
        ({"tls_ca": tmp_path / "not.pem"}, "not a PEM file"),
        ({"tls_ca": garbled}, f"--tls-ca {garbled}: not a readable certificate"),
        ({"tls_ca": GARBLED_PEM.encode()}, "--tls-ca: the bytes given: not a readable certificate"),
        ({**client, "tls_cert": garbled}, f"--tls-cert {garbled}: not a readable certificate"),
        ({**client, "tls_key": garbled}, f"--tls-key {garbled}: not a readable private key"),
        ({**client, "tls_key": pki["other"].key}, "not the private key of the certificate in"),
        ({"token": "two words"}, "expected one token on one line"),
    ]:
        with pytest.raises(ClientError, match=message.replace("(", r"\(")):
            Client("127.0.0.1:1", **kwargs)


@pytest.mark.parametrize("flag", ["--tls-ca", "--tls-cert", "--tls-key"])
def test_a_garbled_pem_file_is_one_line_naming_the_flag_not_a_server_failure(
    server: RunningServer, pki: dict[str, Pem], tmp_path: Path, flag: str
) -> None:
    garbled = tmp_path / "garbled.pem"
    garbled.write_text(GARBLED_PEM)
    files = {"--tls-ca": pki["ca"].cert, "--tls-cert": pki["client"].cert}
    files["--tls-key"] = pki["client"].key
    files[flag] = garbled
    args = [str(part) for pair in files.items() for part in pair]
    result = run_module("clients.score", "--target", server.target, *args, check=False)
    # Without the check, gRPC logged OpenSSL's errors and the message blamed the server.
    assert_one_line_error(result, "python -m clients.score", f"{flag} {garbled}: not a readable")


def test_the_command_lines_take_the_same_options(
    secured: RunningServer, pki: dict[str, Pem], token_file: Path, mnist: Dataset, tmp_path: Path
) -> None:
    tls = (
        "--tls-ca", str(pki["ca"].cert),
        "--tls-cert", str(pki["client"].cert), "--tls-key", str(pki["client"].key),
    )  # fmt: skip
    score = run_module(
        "clients.score", "--target", secured.target, *tls, "--token-file", token_file, "--json"
    )
    assert json.loads(score.stdout)["accuracy"] == 0.9104
    # The token from the environment, when no --token-file is given.
    np.save(tmp_path / "two.npy", mnist.test_images[:2])
    predict_run = run_module(
        "clients.predict", "--target", secured.target, *tls, tmp_path / "two.npy", "--json",
        env={"SCRATCHNET_TOKEN": TOKEN},
    )  # fmt: skip
    assert len(json.loads(predict_run.stdout)["predictions"]) == 2
    perf = run_module(
        "clients.perf", "--target", secured.target, *tls, "--token-file", token_file,
        "--api", "v2", "--duration", "0.3", "--warmup", "0", "--json",
    )  # fmt: skip
    report = json.loads(perf.stdout)
    assert report["requests"] > 0 and report["errors"] == 0
    # A refusal and a misuse: one line each, exit 1 (the call failed) and 2 (a mistake).
    refused = run_module("clients.score", "--target", secured.target, *tls, check=False)
    assert_one_line_error(
        refused, "python -m clients.score", "UNAUTHENTICATED", "give --token-file FILE", code=1
    )
    half = run_module(
        "clients.perf", "--target", secured.target, "--tls-cert", str(pki["client"].cert),
        check=False,
    )  # fmt: skip
    assert_one_line_error(half, "python -m clients.perf", "--tls-cert and --tls-key go together")


def test_an_unreadable_token_file_is_a_mistake_found_before_any_call(tmp_path: Path) -> None:
    missing = tmp_path / "missing-token"
    for program in ("clients.score", "clients.predict", "clients.perf"):
        files = [str(tmp_path / "ok.npy")] if program == "clients.predict" else []
        # Port 1: nothing listens there, so reaching for the server would fail with exit 1.
        result = run_module(
            program, "--target", "127.0.0.1:1", "--token-file", missing, *files, check=False
        )
        assert_one_line_error(
            result, f"python -m {program}", f"--token-file {missing}: cannot read"
        )


def test_a_failed_handshake_is_one_line_from_every_command(
    secured: RunningServer, pki: dict[str, Pem], token_file: Path
) -> None:
    # gRPC's C core logged its own "Handshake failed" line before the command's one line.
    args = [
        "--target", secured.target, "--token-file", token_file, "--tls-ca", pki["other"].cert,
        "--tls-cert", pki["client"].cert, "--tls-key", pki["client"].key,
    ]  # fmt: skip
    for module, extra in (("clients.score", ["-q"]), ("clients.perf", ["--duration", "0.2"])):
        result = run_module(module, *args, *extra, check=False)
        assert_one_line_error(  # a failed call: exit 1
            result,
            f"python -m {module}",
            "the server's certificate is not signed by the CA",
            code=1,
        )


@pytest.mark.parametrize(
    ("reason", "hint"),
    [
        ("unable to get local issuer certificate", "is not signed by the CA of --tls-ca"),
        ("certificate has expired", "outside its validity dates: renew it"),
        ("certificate is not yet valid", "outside its validity dates: renew it"),
    ],
)
def test_a_certificate_refused_for_its_dates_is_not_blamed_on_the_ca(
    pki: dict[str, Pem], reason: str, hint: str
) -> None:
    credentials = Credentials.of(tls_ca=pki["ca"].cert)
    details = f"Tls handshake failed: CERTIFICATE_VERIFY_FAILED: {reason}: OK"
    assert hint in credentials.hint(grpc.StatusCode.UNAVAILABLE, details)
