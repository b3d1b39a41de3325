"""Who may call: TLS and mutual TLS on the real server, bearer tokens, reflection off, and the
training host's versions kept from clients unless asked. Certificates are made in the test."""

from __future__ import annotations

import http.client
import json
import signal
import ssl
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from scratchnet.api.inference import open_inference_grpc_pb2 as oip
from scratchnet.api.inference.open_inference_grpc_pb2_grpc import GRPCInferenceServiceStub
from scratchnet.api.v1 import classifier_pb2 as v1
from scratchnet.api.v1.classifier_pb2_grpc import ClassifierStub
from server.health import MAX_WATCHES
from server.security import exposure_warning, is_loopback, load_tokens, token_matches
from tests.certificates import Authority, Pem, client_credentials
from tests.conftest import TOKENS, RunningServer, assert_one_line_error, run_module, start_server
from tests.server.scraping import scrape, value


def _metadata(token: str | None) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),) if token else ()


def _info(channel: grpc.Channel, token: str | None = TOKENS[1]) -> v1.GetModelInfoResponse:
    stub = ClassifierStub(channel)
    reply: v1.GetModelInfoResponse = stub.GetModelInfo(
        v1.GetModelInfoRequest(), timeout=10, metadata=_metadata(token)
    )
    return reply


def _code(call: object) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as raised:
        call()  # type: ignore[operator]
    code: grpc.StatusCode = raised.value.code()
    return code


def test_the_right_client_is_served_on_both_apis(
    secured: RunningServer, pki: dict[str, Pem]
) -> None:
    with grpc.secure_channel(secured.target, client_credentials(pki, "ca", "client")) as channel:
        assert _info(channel).model_name == "scratchnet"
        ready = GRPCInferenceServiceStub(channel).ServerReady(
            oip.ServerReadyRequest(), timeout=10, metadata=_metadata(TOKENS[0])
        )
        assert ready.ready


@pytest.mark.parametrize(
    ("trust", "client"),
    [("ca", None), ("other", "client"), ("ca", "stranger")],
    ids=["no client certificate", "trusts another CA", "certificate from another CA"],
)
def test_clients_tls_refuses_are_unavailable(
    secured: RunningServer, pki: dict[str, Pem], trust: str, client: str | None
) -> None:
    with grpc.secure_channel(secured.target, client_credentials(pki, trust, client)) as channel:
        assert _code(lambda: _info(channel)) == grpc.StatusCode.UNAVAILABLE


def test_a_plaintext_client_is_refused(secured: RunningServer) -> None:
    with grpc.insecure_channel(secured.target) as channel:
        assert _code(lambda: _info(channel)) == grpc.StatusCode.UNAVAILABLE


def test_a_missing_or_wrong_token_is_unauthenticated_and_health_stays_open(
    secured: RunningServer, pki: dict[str, Pem]
) -> None:
    with grpc.secure_channel(secured.target, client_credentials(pki, "ca", "client")) as channel:
        for token in (None, "wrong-token", TOKENS[0] + "x"):
            assert _code(lambda t=token: _info(channel, t)) == grpc.StatusCode.UNAUTHENTICATED
        health = health_pb2_grpc.HealthStub(channel)
        assert health.Check(health_pb2.HealthCheckRequest(), timeout=10).status == (
            health_pb2.HealthCheckResponse.SERVING
        )
        # Watch is a stream a client may hold for ever, each one of --max-concurrent-rpcs: only
        # with a token, and at most MAX_WATCHES at once.
        watch = health.Watch(health_pb2.HealthCheckRequest(), timeout=10)
        assert _code(lambda: next(watch)) == grpc.StatusCode.UNAUTHENTICATED
        metadata = [("authorization", f"Bearer {TOKENS[0]}")]
        streams = [
            health.Watch(health_pb2.HealthCheckRequest(), timeout=30, metadata=metadata)
            for _ in range(MAX_WATCHES + 1)
        ]
        try:
            firsts = []
            for stream in streams:
                try:
                    firsts.append(next(stream).status)
                except grpc.RpcError as error:
                    firsts.append(error.code())
            assert firsts.count(health_pb2.HealthCheckResponse.SERVING) == MAX_WATCHES
            assert firsts.count(grpc.StatusCode.RESOURCE_EXHAUSTED) == 1
        finally:
            for stream in streams:
                stream.cancel()
    assert "wrong-token" not in secured.stderr() and TOKENS[0] not in secured.stderr()


def _https(
    server: RunningServer,
    pki: dict[str, Pem],
    path: str,
    *,
    trust: str | None = "ca",
    client: str | None = "client",
    token: str | None = TOKENS[0],
    port: int | None = None,
) -> tuple[int, dict[str, str], bytes] | None:
    """GET `path` from the HTTP port (or `port`) over TLS trusting `trust` (None: plaintext)
    with `client`'s certificate; the status, headers and body, or None if the connection is
    refused."""
    port = port or server.http_port
    assert port is not None
    if trust is None:
        connection: http.client.HTTPConnection = http.client.HTTPConnection(
            server.host, port, timeout=10
        )
    else:
        context = ssl.create_default_context(cafile=pki[trust].cert)
        if client is not None:
            context.load_cert_chain(pki[client].cert, pki[client].key)
        connection = http.client.HTTPSConnection(server.host, port, timeout=10, context=context)
    try:
        connection.request("GET", path, headers=dict(_metadata(token)))
        response = connection.getresponse()
        return response.status, dict(response.headers), response.read()
    except (OSError, http.client.HTTPException):
        return None
    finally:
        connection.close()


def test_http_serves_only_the_right_client_over_mutual_tls(
    secured: RunningServer, pki: dict[str, Pem]
) -> None:
    answer = _https(secured, pki, "/v2/models/scratchnet")
    assert answer is not None and answer[0] == 200
    assert json.loads(answer[2])["name"] == "scratchnet"
    for trust, client in (("ca", None), ("other", "client"), ("ca", "stranger"), (None, None)):
        assert _https(secured, pki, "/v2/health/live", trust=trust, client=client) is None


def test_http_refuses_a_missing_or_wrong_token_with_401_and_leaves_health_open(
    secured: RunningServer, pki: dict[str, Pem]
) -> None:
    for path in ("/v2/models/scratchnet", "/v2", "/", "/v2/no/such/path"):
        for token in (None, "wrong-token", TOKENS[1] + "x"):
            answer = _https(secured, pki, path, token=token)
            assert answer is not None, path
            status, headers, body = answer
            assert status == 401 and headers["www-authenticate"] == "Bearer", (path, token)
            assert "missing or wrong bearer token" in json.loads(body)["error"]
    for path in ("/v2/health/live", "/v2/health/ready"):
        answer = _https(secured, pki, path, token=None)
        assert answer is not None and answer[0] == 200
    assert "wrong-token" not in secured.stderr() and TOKENS[1] not in secured.stderr()


def test_tokens_are_bearer_tokens_compared_whole() -> None:
    tokens = tuple(token.encode() for token in TOKENS)
    assert token_matches("Bearer first-token", tokens)
    assert token_matches("bearer second-token ", tokens)
    assert not token_matches("first-token", tokens)
    assert not token_matches("Bearer first", tokens)
    assert not token_matches("Basic first-token", tokens)


def test_reflection_can_be_turned_off_and_versions_are_shown_only_when_asked(
    model_onnx: Path, tmp_path: Path
) -> None:
    hidden = start_server(model_onnx, "--no-reflection", tmp_dir=tmp_path)
    shown = start_server(model_onnx, "--expose-versions", tmp_dir=tmp_path)
    try:
        with grpc.insecure_channel(hidden.target) as channel:
            stub = reflection_pb2_grpc.ServerReflectionStub(channel)
            request = reflection_pb2.ServerReflectionRequest(list_services="")
            assert _code(lambda: list(stub.ServerReflectionInfo(iter([request]), timeout=10))) == (
                grpc.StatusCode.UNIMPLEMENTED
            )
            metadata = _info(channel, None).metadata
            assert "test_accuracy" in metadata
            assert not [key for key in metadata if key.startswith("versions.")]
        with grpc.insecure_channel(shown.target) as channel:
            keys = set(_info(channel, None).metadata)
            assert {"versions.python", "versions.numpy"} <= keys
    finally:
        assert hidden.stop() == 0 and shown.stop() == 0


def test_exposure_is_warned_about_and_bad_tls_flags_are_one_line(tmp_path: Path) -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.1.2.3")
    assert exposure_warning("127.0.0.1", tls=False) is None
    assert exposure_warning("0.0.0.0", tls=True) is None
    assert "without TLS" in (exposure_warning("0.0.0.0", tls=False) or "")
    result = run_module("server", "--tls-cert", "a.pem", check=False, timeout=60)
    assert_one_line_error(result, "python -m server", "--tls-cert and --tls-key go together")
    (tmp_path / "no.pem").write_text("nothing")
    result = run_module(
        "server", "--tls-cert", tmp_path / "no.pem", "--tls-key", tmp_path / "no.pem", "--port",
        "0", check=False, timeout=60,
    )  # fmt: skip
    assert "not a PEM file" in result.stderr and result.returncode == 2


def test_a_key_of_another_certificate_is_named_not_taken_for_a_busy_port(
    model_onnx: Path, pki: dict[str, Pem]
) -> None:
    result = run_module(
        "server", "--model", model_onnx, "--port", "0", "--tls-cert", pki["server"].cert,
        "--tls-key", pki["client"].key, check=False, timeout=60,
    )  # fmt: skip
    assert_one_line_error(result, "python -m server", "cannot use the TLS files --tls-cert")
    assert "address in use" not in result.stderr


def test_token_files_skip_blank_and_comment_lines_however_indented(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text("# for the web team\n  first-token  \n\n   # an indented comment\nsecond\n")
    assert load_tokens(path) == (b"first-token", b"second")


def _statuses(server: RunningServer, *tokens: str) -> list[object]:
    """gRPC, HTTP and metrics, each called with one authorization header per token."""
    with grpc.insecure_channel(server.target) as channel:
        try:
            ClassifierStub(channel).GetModelInfo(
                v1.GetModelInfoRequest(),
                timeout=10,
                metadata=[("authorization", f"Bearer {token}") for token in tokens],
            )
            grpc_status: object = grpc.StatusCode.OK
        except grpc.RpcError as error:
            grpc_status = error.code()
    found: list[object] = [grpc_status]
    for address, path in [
        (f"{server.host}:{server.http_port}", "/v2/models/scratchnet"),
        (server.listeners["metrics"], "/metrics"),
    ]:
        connection = http.client.HTTPConnection(address, timeout=10)
        connection.putrequest("GET", path)
        for token in tokens:
            connection.putheader("Authorization", f"Bearer {token}")
        connection.endheaders()
        found.append(connection.getresponse().status)
        connection.close()
    return found


def _sighup_and_wait(server: RunningServer, line: str) -> None:
    """Send SIGHUP and wait until the server logs `line` once more."""
    before = server.stderr().count(line)
    server.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 30
    while server.stderr().count(line) == before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.stderr().count(line) > before, server.stderr()


def test_sighup_rotates_the_tokens_on_every_listener_which_refuse_two_and_bad_files_change_nothing(
    model_onnx: Path, tmp_path: Path
) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("old-token\n")
    server = start_server(
        model_onnx, "--auth-token-file", str(tokens), "--metrics-port", "0",
        tmp_dir=tmp_path, http=True, wait_for=("metrics",),
    )  # fmt: skip

    try:
        refused = [grpc.StatusCode.UNAUTHENTICATED, 401, 401]
        assert _statuses(server, "old-token") == [grpc.StatusCode.OK, 200, 200]
        # Two Authorization headers: every listener refuses them, whichever comes first.
        assert _statuses(server, "old-token", "wrong") == refused
        assert _statuses(server, "wrong", "old-token") == refused
        assert _statuses(server, "old-token", "old-token") == refused
        # A refused inference request is counted and logged as any refused inference request.
        connection = http.client.HTTPConnection(f"{server.host}:{server.http_port}", timeout=10)
        connection.request(
            "POST", "/v2/models/scratchnet/infer", b"{}", {"Authorization": "Bearer wrong"}
        )
        assert connection.getresponse().status == 401
        connection.close()
        samples = scrape(f"http://{server.listeners['metrics']}/metrics", token="old-token")
        unauthenticated = {"model": "", "status": "UNAUTHENTICATED"}
        assert value(samples, "scratchnet_requests_total", api="http", **unauthenticated) == 1
        assert value(samples, "scratchnet_requests_total", api="v1", **unauthenticated) == 0
        assert "status=UNAUTHENTICATED items=0" in server.stderr()
        tokens.write_text("# rotated\nnew-token\n")
        _sighup_and_wait(server, f"SIGHUP: 1 bearer token(s) read from {tokens}")
        assert _statuses(server, "old-token") == refused
        assert _statuses(server, "new-token") == [grpc.StatusCode.OK, 200, 200]
        # A file left empty by a bad edit must not lock everyone out.
        tokens.write_text("# nothing yet\n")
        _sighup_and_wait(server, "keeping the tokens read before")
        assert _statuses(server, "new-token") == [grpc.StatusCode.OK, 200, 200]
    finally:
        assert server.stop() == 0


def test_sighup_renews_the_tls_files_on_every_listener_and_bad_files_change_nothing(
    model_onnx: Path, pki: dict[str, Pem], tmp_path: Path
) -> None:
    files = {"cert": tmp_path / "tls.crt", "key": tmp_path / "tls.key", "ca": tmp_path / "ca.crt"}

    def install(server_pem: Pem, client_ca: Pem) -> None:
        for name, source in (("cert", server_pem.cert), ("key", server_pem.key)):
            files[name].write_bytes(source.read_bytes())
        files["ca"].write_bytes(client_ca.cert.read_bytes())

    renewed = Authority(tmp_path / "renewed", "renewed-ca")
    pki = {**pki, "renewed": renewed.pem, "renewed_server": renewed.issue("server", server=True)}
    install(pki["server"], pki["client_ca"])
    server = start_server(
        model_onnx, "--tls-cert", str(files["cert"]), "--tls-key", str(files["key"]),
        "--tls-client-ca", str(files["ca"]), "--metrics-port", "0",
        tmp_dir=tmp_path, http=True, wait_for=("metrics",),
        health_credentials=client_credentials(pki),
    )  # fmt: skip

    def reached(trust: str, client: str) -> list[bool]:
        """Whether a new connection to the gRPC, HTTP and metrics ports, trusting `trust` and
        showing `client`'s certificate, is answered."""
        options = [("grpc.use_local_subchannel_pool", 1)]  # a new connection, not a shared one
        credentials = client_credentials(pki, trust, client)
        with grpc.secure_channel(server.target, credentials, options) as channel:
            try:
                health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=10
                )
                answered = [True]
            except grpc.RpcError as error:
                assert error.code() == grpc.StatusCode.UNAVAILABLE, error
                answered = [False]
        for port, path in (
            (server.http_port, "/v2/health/live"),
            (server.listeners["metrics"].rpartition(":")[2], "/metrics"),
        ):
            answer = _https(server, pki, path, trust=trust, client=client, port=int(port))
            answered.append(answer is not None and answer[0] == 200)
        return answered

    try:
        assert reached("ca", "client") == [True, True, True]
        # A renewal signed by another CA, which also now vouches for the clients.
        install(pki["renewed_server"], pki["other"])
        _sighup_and_wait(server, f"SIGHUP: TLS files read again from {files['cert']}")
        assert reached("renewed", "stranger") == [True, True, True]
        assert reached("ca", "stranger") == [False, False, False]  # the old certificate is gone
        assert reached("renewed", "client") == [False, False, False]  # so is the old client CA
        # A key that is not the certificate's (a renewal half written) must not take TLS down.
        files["key"].write_bytes(pki["client"].key.read_bytes())
        _sighup_and_wait(server, "keeping the TLS files read before")
        assert reached("renewed", "stranger") == [True, True, True]
    finally:
        assert server.stop() == 0
