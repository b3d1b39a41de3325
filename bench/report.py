"""Render the README's serving tables from bench/results/serving.json (bench/serving.py) or
bench/results/http.json (bench/http_serving.py): print one, or with --write README.md replace
the block between its markers with it.

    .venv/bin/python bench/report.py [RESULTS] [--write README.md]
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

from scratchnet.cli import ArgumentParser, run_cli
from scratchnet.errors import ScratchnetError

PROGRAM = "bench/report.py"
BEGIN = "<!-- bench:serving -->"
END = "<!-- /bench:serving -->"
RESULTS = Path("bench/results/serving.json")
WIDTH = 100
"""The README's line length for prose."""
_HEADER = (
    "| server | S1 float32 images/s | S1 uint8 images/s | S2 p50 / p99 ms "
    "| S3 requests/s | S3 p99 ms |\n|---|---:|---:|---:|---:|---:|"
)


def render(results: dict[str, Any]) -> str:
    """The markdown table of one serving.json, with the notes that say how it was measured."""
    labels: dict[str, str] = {}
    for contender in results["contenders"]:
        if contender["label"]:
            labels.setdefault(contender["row"], contender["label"])
    cells = {(r["scenario"], r["row"], r["datatype"]): r for r in results["results"]}
    lines = [_HEADER]
    for row, label in labels.items():
        s1f, s1u = (cells.get(("S1", row, datatype)) for datatype in ("FP32", "UINT8"))
        s2, s3 = cells.get(("S2", row, "FP32")), cells.get(("S3", row, "FP32"))
        figures = [
            _rate(s1f, "images_per_second"),
            _rate(s1u, "images_per_second"),
            _latency(s2),
            _rate(s3, "requests_per_second"),
            f"{s3['median']['p99_ms']:.2f}" if s3 else "—",
        ]
        lines.append(f"| {label} | " + " | ".join(figures) + " |")
    return "\n".join([*lines, "", *_notes(results)])


def _rate(result: dict[str, Any] | None, name: str) -> str:
    if result is None:
        return "—"
    text = f"{result['median'][name]:,.0f}"
    if result["contender"].startswith("in-process"):
        return text
    return f"{text} ({result['vs_in_process'][name]:.2f}x){_flag(result)}"


def _latency(result: dict[str, Any] | None) -> str:
    if result is None:
        return "—"
    median = result["median"]
    text = f"{median['p50_ms']:.3f} / {median['p99_ms']:.3f}"
    if result["contender"].startswith("in-process"):
        return text
    return f"{text} ({result['vs_in_process']['p50_ms']:.0f}x){_flag(result)}"


def _flag(result: dict[str, Any]) -> str:
    return " ⚠" if result["errors"] or not result["check"]["ok"] else ""


def _notes(results: dict[str, Any]) -> list[str]:
    settings, machine, versions = results["settings"], results["machine"], results["versions"]
    served = [r for r in results["results"] if not r["contender"].startswith("in-process")]
    peer = {
        name.removeprefix("peers: "): v
        for name, v in versions.items()
        if name != name.removeprefix("peers: ")
    }
    peers = ""
    if "kserve" in peer or "nvidia-pytriton" in peer:
        triton = f" (Triton {peer['tritonserver']})" if "tritonserver" in peer else ""
        packages = [f"kserve {peer['kserve']}"] if "kserve" in peer else []
        if "nvidia-pytriton" in peer:
            packages.append(f"nvidia-pytriton {peer['nvidia-pytriton']}{triton}")
        peers = f"; peers: {', '.join(packages)}, onnxruntime {peer['onnxruntime']}"
    notes = [
        f"Medians of {settings['repeats']} repeats of {settings['seconds']:g} s each (after "
        f"{settings['warmup_seconds']:g} s of warm-up), one server at a time, taking turns. In "
        "parentheses: throughput as a fraction of the in-process ceiling, p50 latency as a "
        "multiple of it (medians of the per-repeat ratios). The ceiling is onnxruntime in "
        "process with 1 intra-op thread, one call after another, on the same model and images.",
        "",
        f"`{results['command']}`, {results['date'][:10]}: {machine['cpus']} cores "
        f"({machine['cpu_model']}), Python {machine['python']}, onnxruntime "
        f"{versions['onnxruntime']}, grpcio {versions['grpcio']}" + peers + ".",
    ]
    cpu = [r["median"]["client_cpu_ms_per_request"] for r in served if r["scenario"] != "S1"]
    if cpu:
        notes += [
            "",
            f"The client (`clients.perf`) spent {min(cpu):.2f} to {max(cpu):.2f} ms of CPU per "
            "batch-1 call, on the same 2 cores as the server.",
        ]
    bad = [r for r in served if r["errors"] or not r["check"]["ok"]]
    checked = [r["check"]["max_score_difference"] for r in served if r["check"]["ok"]]
    notes.append("")
    if bad:
        notes.append(
            "⚠ "
            + "; ".join(
                f"{r['contender']} {r['scenario']}: {r['errors']} errors "
                f"{r['errors_by_code']}, replies checked ok: {r['check']['ok']}"
                for r in bad
            )
        )
    else:
        worst = max((d for d in checked if d is not None), default=0.0)
        scores = f"scores within {worst:.1e}" if worst else "scores bit for bit"
        notes.append(
            "No errors. Every server's first reply to each distinct request matched onnxruntime in "
            f"process (labels equal, {scores}), and every later reply equalled it."
        )
    for skipped in results["skipped"]:
        notes += ["", f"Skipped {skipped['id']}: {skipped['reason']}"]
    return [textwrap.fill(note, WIDTH, break_on_hyphens=False) for note in notes]


HTTP_BEGIN = "<!-- bench:http -->"
HTTP_END = "<!-- /bench:http -->"
_HTTP_LABELS = {
    "in-process": "onnxruntime in process, 1 thread (the ceiling)",
    "scratchnet": "scratchnet HTTP (Starlette on uvicorn with httptools, on the gRPC loop)",
    "scratchnet-grpc": "scratchnet gRPC, same server (ModelInfer, raw tensors)",
    "scratchnet-h11": "scratchnet's HTTP app on uvicorn's h11 parser, HTTP only",
    "kserve": "KServe REST (FastAPI on uvicorn)",
}


def render_http(results: dict[str, Any]) -> str:
    """The markdown table of one http.json, with the notes that say how it was measured."""
    cells = {(r["scenario"], r["contender"]): r for r in results["results"]}
    order = [c for c in _HTTP_LABELS if any(key[1] == c for key in cells)]
    lines = [
        "| server | H1 binary, batch 1000: images/s | H2 JSON, batch 1000: images/s "
        "| H3 JSON, batch 1: p50 / p99 ms | H4 JSON, batch 1, 16 in flight: requests/s |",
        "|---|---:|---:|---:|---:|",
    ]
    for contender in order:
        h1, h2, h3, h4 = (cells.get((s, contender)) for s in ("H1", "H2", "H3", "H4"))
        figures = [
            _http_rate(h1, "images_per_second"),
            _http_rate(h2, "images_per_second"),
            _http_latency(h3),
            _http_rate(h4, "requests_per_second"),
        ]
        lines.append(f"| {_HTTP_LABELS[contender]} | " + " | ".join(figures) + " |")
    settings, machine, versions = results["settings"], results["machine"], results["versions"]
    peers = ""
    if "peers: kserve" in versions:
        peers = (
            f"; KServe {versions['peers: kserve']} (FastAPI {versions['peers: fastapi']}, uvicorn "
            f"{versions['peers: uvicorn']}, orjson {versions['peers: orjson']})"
        )
    bad = [r for r in results["results"] if r["errors"] or not r["check_ok"]]
    checked = "⚠ errors or wrong replies: " + ", ".join(
        f"{r['contender']} {r['scenario']}" for r in bad
    )
    if not bad:
        checked = (
            "No errors; every server's first reply to each distinct request had onnxruntime's "
            "labels and scores (within 1e-5), and every later reply was the same bytes."
        )
    notes = [
        f"Medians of {settings['repeats']} repeats of {settings['seconds']:g} s (after "
        f"{settings['warmup_seconds']:g} s of warm-up), one server at a time. In parentheses: "
        "throughput as a fraction of onnxruntime in process on the same images, p50 latency as a "
        "multiple of it. H3/H4 send one image as JSON; the gRPC row sends it raw, its nearest "
        "twin (it has no JSON, hence no H2).",
        "",
        f"`{results['command']}`, {results['date'][:10]}: {machine['cpus']} cores "
        f"({machine['cpu_model']}), Python {machine['python']}, onnxruntime "
        f"{versions['onnxruntime']}, Starlette {versions['starlette']}, uvicorn "
        f"{versions['uvicorn']}, httptools {versions['httptools']}" + peers + ".",
        "",
        checked,
    ]
    for skipped in results["skipped"]:
        notes += ["", f"Skipped {skipped['id']}: {skipped['reason']}"]
    wrapped = [textwrap.fill(note, WIDTH, break_on_hyphens=False) for note in notes]
    return "\n".join([*lines, "", *wrapped])


def _http_rate(result: dict[str, Any] | None, name: str) -> str:
    if result is None:
        return "—"
    text = f"{result['median'][name]:,.0f}"
    if result["contender"] == "in-process":
        return text
    return f"{text} ({result['vs_in_process'][name]:.2f}x)"


def _http_latency(result: dict[str, Any] | None) -> str:
    if result is None:
        return "—"
    median = result["median"]
    text = f"{median['p50_ms']:.3f} / {median['p99_ms']:.3f}"
    if result["contender"] == "in-process":
        return text
    return f"{text} ({result['vs_in_process']['p50_ms']:.0f}x)"


def replace_block(
    text: str, block: str, name: str, begin: str = BEGIN, end_marker: str = END
) -> str:
    """`text` with what lies between the `begin` and `end_marker` markers replaced by `block`."""
    start, end = text.find(begin), text.find(end_marker)
    if start < 0 or end < start:
        raise ScratchnetError(f"{name} has no {begin} … {end_marker} block to rewrite")
    return text[: start + len(begin)] + "\n" + block + "\n" + text[end:]


def main() -> int:
    """Print the table, or write it into a file's marked block."""
    parser = ArgumentParser(prog=PROGRAM, description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="?", type=Path, default=RESULTS)
    parser.add_argument("--write", type=Path, metavar="FILE.md", help="e.g. README.md")
    args = parser.parse_args()
    if not args.results.is_file():
        raise ScratchnetError(f"{args.results} not found: run bench/serving.py first")
    results = json.loads(args.results.read_text())
    http = results.get("benchmark") == "http"
    block = render_http(results) if http else render(results)
    markers = (HTTP_BEGIN, HTTP_END) if http else (BEGIN, END)
    if args.write is not None and not args.write.is_file():
        raise ScratchnetError(f"{args.write} not found")
    if args.write is None:
        print(block)
    else:
        text = replace_block(args.write.read_text(), block, str(args.write), *markers)
        args.write.write_text(text)
        print(f"rewrote the {'HTTP' if http else 'serving'} table in {args.write}")
    return 0


if __name__ == "__main__":
    run_cli(PROGRAM, main)
