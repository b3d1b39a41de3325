"""Render the README's benchmark tables from bench/results/*.json: the serving table from
serving.json (bench/serving.py), the scale table from scale.json (bench/scale.py), the HTTP table
from http.json (bench/http_serving.py), the memory soak's from soak.json (bench/soak.py). Print
them, or with --write README.md replace each block between its markers (`<!-- bench:NAME -->`).
The dynamic batching table comes from batching.json (bench/batching.py).

    .venv/bin/python bench/report.py [RESULTS …] [--write README.md]
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

from scratchnet.cli import ArgumentParser, run_cli
from scratchnet.errors import ScratchnetError
from scratchnet.files import atomic_write

PROGRAM = "bench/report.py"
BEGIN = "<!-- bench:serving -->"
END = "<!-- /bench:serving -->"
RESULTS = Path("bench/results/serving.json")
SCALE_RESULTS = Path("bench/results/scale.json")
HTTP_RESULTS = Path("bench/results/http.json")
BATCHING_RESULTS = Path("bench/results/batching.json")
SOAK_RESULTS = Path("bench/results/soak.json")
PAPER_IMAGES = 100_000_000
"""The job costed on paper from the scale benchmark's per-actor rate and fixed cost."""
PAPER_CORES = 16
"""Actors per machine on paper: one per core of a 16-core machine."""
PAPER_MACHINES = (1, 4, 16, 64)
WIDTH = 100
"""The README's line length for prose."""
S1_FLOAT_IMAGES, S1_FLOAT_SHARE, S1_UINT8_IMAGES = 180_000, 0.55, 250_000
SHARED_SHARE = 0.80
S2_P50_MS, S2_P99_MS = 0.65, 1.0
S3_REQUESTS, S3_P99_MS = 3_500, 20.0
"""The performance issue's targets for the serving table (images/s, shares of the in-process
ceiling, milliseconds, requests/s)."""
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
    return "\n".join([*lines, "", *_notes(results, _serving_targets(cells))])


def _serving_targets(cells: dict[tuple[str, str, str], dict[str, Any]]) -> list[str]:
    """The performance issue's targets for our server with its default flags, each with the
    figure measured and whether it is met (those whose rows ran)."""
    found = []
    s1f, s1u = cells.get(("S1", "scratchnet", "FP32")), cells.get(("S1", "scratchnet", "UINT8"))
    shared = cells.get(("S1", "scratchnet-shm", "FP32"))
    s2, s3 = cells.get(("S2", "scratchnet", "FP32")), cells.get(("S3", "scratchnet", "FP32"))
    if s1f:
        rate, share = s1f["median"]["images_per_second"], s1f["vs_in_process"]["images_per_second"]
        met = rate >= S1_FLOAT_IMAGES and share >= S1_FLOAT_SHARE
        found.append(
            f"S1 float32 at least {S1_FLOAT_IMAGES:,} images/s and {S1_FLOAT_SHARE:.2f} of the "
            f"ceiling ({rate:,.0f}, {share:.2f} {_met(met)})"
        )
    if s1u:
        rate = s1u["median"]["images_per_second"]
        found.append(
            f"S1 uint8 at least {S1_UINT8_IMAGES:,} images/s ({rate:,.0f} "
            f"{_met(rate >= S1_UINT8_IMAGES)})"
        )
    if shared:
        share = shared["vs_in_process"]["images_per_second"]
        found.append(
            f"S1 float32 through shared memory at least {SHARED_SHARE:.2f} of the ceiling "
            f"({share:.2f} {_met(share >= SHARED_SHARE)})"
        )
    if s2:
        p50, p99 = s2["median"]["p50_ms"], s2["median"]["p99_ms"]
        met = p50 <= S2_P50_MS and p99 <= S2_P99_MS
        found.append(
            f"S2 p50 at most {S2_P50_MS:g} ms and p99 at most {S2_P99_MS:g} ms "
            f"({p50:.3f} / {p99:.3f} {_met(met)})"
        )
    if s3:
        rate, p99 = s3["median"]["requests_per_second"], s3["median"]["p99_ms"]
        met = rate >= S3_REQUESTS and p99 <= S3_P99_MS
        found.append(
            f"S3 at least {S3_REQUESTS:,} requests/s with p99 at most {S3_P99_MS:g} ms "
            f"({rate:,.0f}, {p99:.2f} ms {_met(met)})"
        )
    return found


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


def _notes(results: dict[str, Any], targets: list[str]) -> list[str]:
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
    repeats = _plural(settings["repeats"], "repeat")
    notes = [
        f"Medians of {repeats} of {settings['seconds']:g} s each (after "
        f"{settings['warmup_seconds']:g} s of warm-up), one server at a time, taking turns. In "
        "parentheses: throughput as a fraction of the in-process ceiling, p50 latency as a "
        "multiple of it (medians of the per-repeat ratios). The ceiling is onnxruntime in "
        "process with 1 intra-op thread, one call after another, on the same model and images.",
        "",
        f"`{results['command']}`, {results['date'][:10]}: {machine['cpus']} cores "
        f"({machine['cpu_model']}), Python {machine['python']}, onnxruntime "
        f"{versions['onnxruntime']}, grpcio {versions['grpcio']}" + peers + ".",
    ]
    if targets:
        notes += [
            "",
            "Targets (the performance issue's, for scratchnet with its default flags): "
            + "; ".join(targets)
            + ".",
        ]
    cpu = [r["median"]["client_cpu_ms_per_request"] for r in served if r["scenario"] != "S1"]
    if cpu:
        notes += [
            "",
            f"The client (`clients.perf`) spent {min(cpu):.2f} to {max(cpu):.2f} ms of CPU per "
            "batch-1 call, on the same 2 cores as the server.",
        ]
    memory = results.get("memory", {}).get("scratchnet")
    if memory:
        notes += [
            "",
            f"scratchnet's resident memory (default flags): {memory['idle_mb']:.0f} MB idle, "
            f"{memory['peak_mb']:.0f} MB at its peak through S1 to S3 (VmRSS and VmHWM).",
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


def render_batching(results: dict[str, Any]) -> str:
    """The markdown table of one batching.json: each model served without and with dynamic
    batching, with the notes that say how it was measured and whether the targets were met."""
    cells = {(r["scenario"], r["contender"]): r for r in results["results"]}
    commands = {c["id"]: c["command"] for c in results["contenders"]}
    lines = [
        "| model | server flags | S2 p50 / p99 ms | S3 requests/s | S3 p99 ms "
        "| S3 with / without |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for model in results["models"]:
        title = f"{model['title']} (`{model['path']}`)"
        for contender in (model["id"], f"{model['id']}-batching"):
            s2, s3 = cells.get(("S2", contender)), cells.get(("S3", contender))
            # The flags after `python -m server --model PATH`.
            flags = " ".join(commands.get(contender, [])[5:])
            figures = [
                _batching_latency(s2),
                f"{s3['median']['requests_per_second']:,.0f}{_flag(s3)}" if s3 else "—",
                f"{s3['median']['p99_ms']:.2f}" if s3 else "—",
                f"{s3['vs_without']['requests_per_second']:.2f}x" if s3 and s3["batching"] else "—",
            ]
            server = f"`{flags}`" if flags else "default flags"
            lines.append(f"| {title} | {server} | " + " | ".join(figures) + " |")
            title = ""
    return "\n".join([*lines, "", *_batching_notes(results, cells)])


def _batching_latency(result: dict[str, Any] | None) -> str:
    if result is None:
        return "—"
    text = f"{result['median']['p50_ms']:.3f} / {result['median']['p99_ms']:.3f}"
    if result["batching"]:
        text += f" ({result['vs_without']['p50_ms_difference']:+.3f})"
    return text + _flag(result)


def _batching_notes(
    results: dict[str, Any], cells: dict[tuple[str, str], dict[str, Any]]
) -> list[str]:
    settings, machine, versions = results["settings"], results["machine"], results["versions"]
    models = {model["id"]: model for model in results["models"]}
    times, shares = [], []
    for key, model in models.items():
        ceiling, served = cells.get(("S2", f"in-process-{key}")), cells.get(("S2", key))
        if ceiling and served:
            p50 = ceiling["median"]["p50_ms"]
            times.append(f"{p50:.3f} ms on the {model['title']}")
            shares.append(f"{p50 / served['median']['p50_ms']:.0%}")
    repeats = _plural(settings["repeats"], "repeat")
    notes = [
        f"Medians of {repeats} of {settings['seconds']:g} s each (after "
        f"{settings['warmup_seconds']:g} s of warm-up), one server at a time, taking turns; "
        "batch-1 ModelInfer calls with raw FP32 tensors from `clients.perf`, 1 call in flight (S2) "
        "or 32 (S3). S3 with / without: batching's requests/s over those without it in the same "
        "repeat, median over the repeats; in parentheses in S2, the p50 difference in ms, "
        "likewise. The model itself, in process (onnxruntime, 1 thread, one call after another, "
        f"p50), takes {_listed(times)} per batch-1 call: {_listed(shares)} of the "
        "server's S2 p50 without batching.",
    ]
    if any("hidden" in model for model in models.values()):
        notes += [
            "",
            "The MLPs are Gemm+ReLU, Gemm+ReLU, Gemm with random weights (seed 0), built by the "
            "script with onnx.helper; their input size and classes are the article model's.",
        ]
    targets = _batching_targets(models, cells)
    if targets:
        notes += ["", "Targets: " + "; ".join(targets) + "."]
    notes += [
        "",
        f"`{results['command']}`, {results['date'][:10]}: {machine['cpus']} cores "
        f"({machine['cpu_model']}), load average {machine['load_average_before'][0]:.1f} before, "
        f"Python {machine['python']}, onnxruntime {versions['onnxruntime']}, grpcio "
        f"{versions['grpcio']}, onnx {versions['onnx']}.",
        "",
    ]
    servers = [r for r in results["results"] if "vs_in_process" in r]
    bad = [r for r in servers if r["errors"] or not r["check"]["ok"]]
    if bad:
        notes.append(
            "⚠ "
            + "; ".join(
                f"{r['contender']} {r['scenario']}: {r['errors']} errors {r['errors_by_code']}, "
                f"replies checked ok: {r['check']['ok']}"
                for r in bad
            )
        )
    else:
        worst = max((r["check"]["max_output_difference"] or 0.0 for r in servers), default=0.0)
        values = f"outputs within {worst:.1e}" if worst else "outputs bit for bit"
        notes.append(
            "No errors. Every server's first reply to each distinct request had the labels of "
            f"onnxruntime in process ({values}), and every later reply equalled it."
        )
    memory = results.get("memory", {})
    peaks = [
        f"{model['title']} {memory[key]['peak_mb']:.0f} / "
        f"{memory[f'{key}-batching']['peak_mb']:.0f} MB"
        for key, model in models.items()
        if key in memory and f"{key}-batching" in memory
    ]
    if peaks:
        notes += ["", f"Server peak RSS without / with batching: {', '.join(peaks)}."]
    return [textwrap.fill(note, WIDTH, break_on_hyphens=False) for note in notes]


def _batching_targets(
    models: dict[str, dict[str, Any]], cells: dict[tuple[str, str], dict[str, Any]]
) -> list[str]:
    """The targets: batching costs nothing on the article model, and at least doubles S3 on a
    compute-heavier model."""
    found = []
    for key, model in models.items():
        s2, s3 = cells.get(("S2", f"{key}-batching")), cells.get(("S3", f"{key}-batching"))
        if not (s2 and s3):
            continue
        ratio = s3["vs_without"]["requests_per_second"]
        if "hidden" in model:
            found.append(
                f"on the {model['title']}, S3 at least 2x ({ratio:.2f}x {_met(ratio >= 2)})"
            )
            continue
        cost = s2["vs_without"]["p50_ms_difference"]
        found.append(
            f"on the {model['title']}, S2 p50 at most 0.05 ms above without ({cost:+.3f} ms "
            f"{_met(cost <= 0.05)}) and S3 not lower ({ratio:.2f}x {_met(ratio >= 1)})"
        )
    return found


def _plural(count: int, noun: str) -> str:
    """'1 repeat', '3 repeats'."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _listed(items: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    return " and ".join(filter(None, [", ".join(items[:-1]), *items[-1:]]))


def _met(met: bool) -> str:
    return "✓" if met else "✗ missed"


_SCALE_ROWS = {
    "in-process": "onnxruntime in process, 1 thread (the single-process figure)",
    "ray-1": "Ray Data, actor pool of 1 (`--engine ray --actors 1`)",
    "ray-2": "Ray Data, actor pool of 2 (`--engine ray --actors 2`)",
    "ray-2-parquet": "the same, writing the Parquet output (`--output`)",
    "server-1-stream": "1 server, one PredictStream call (`--target HOST:PORT`)",
    "server-1-calls": "1 server, one Predict call per batch (`--target ipv4:HOST:PORT`)",
    "server-2-calls": "2 replicas, round robin (`--target HOST:PORT,HOST:PORT`)",
}


def render_scale(results: dict[str, Any]) -> str:
    """The markdown tables of one scale.json: measured figures, then the 100 M job on paper."""
    rows = {row["id"]: row for row in results["results"]}
    settings, machine = results["settings"], results["machine"]
    lines = [
        f"| engine | workers | images/s ({settings['images']:,} images) | vs one process "
        "| fixed cost: start + job + stop |",
        "|---|---:|---:|---:|---|",
    ]
    for key, label in _SCALE_ROWS.items():
        row = rows.get(key)
        if row is None:
            continue
        ratio = "1.00x" if key == "in-process" else f"{row['vs_single']:.2f}x"
        lines.append(
            f"| {label} | {row['workers']} | {row['images_per_second']:,.0f} | {ratio} "
            f"| {_fixed(key, row)} |"
        )
    repeats = _plural(settings["repeats"], "repeat")
    notes = [
        f"Medians of {repeats}; ratios are per repeat against that repeat's "
        f"in-process figure. Batches of {settings['batch']} images (Ray), 512 KiB of pixels "
        "(gRPC); servers run `--threads 1`, one model thread each like an actor. Ray's job "
        f"cost is a job of {settings['tiny']:,} images (mostly starting the actors); a server's "
        "start is launch to health SERVING, its stop SIGTERM to exit.",
        "",
        f"`{results['command']}`, {results['date'][:10]}: {machine['cpus']} cores "
        f"({machine['cpu_model']}), load average {machine['load_average_before'][0]:.1f} before, "
        f"Python {machine['python']}, "
        + ", ".join(f"{name} {version}" for name, version in results["versions"].items())
        + ".",
    ]
    lines += ["", *(textwrap.fill(note, WIDTH, break_on_hyphens=False) for note in notes)]
    if "ray-1" in rows:
        lines += ["", *_on_paper(rows)]
    return "\n".join(lines)


def _fixed(key: str, row: dict[str, Any]) -> str:
    if "stop_seconds" not in row:
        return "—"
    if key.startswith("ray") and "job_fixed_seconds" not in row:
        return "as above"  # the same Ray session and actors as the row above
    job = f" + {row['job_fixed_seconds']:.1f}" if "job_fixed_seconds" in row else ""
    return f"{row['start_seconds']:.1f}{job} + {row['stop_seconds']:.1f} s"


def _on_paper(rows: dict[str, Any]) -> list[str]:
    """What scoring PAPER_IMAGES costs on N machines, from the 1-actor rate and fixed cost."""
    one = rows["ray-1"]
    if one["seconds"] < 2 * one["job_fixed_seconds"]:
        return ["(Too few images to tell the actors' rate from the fixed cost: no costing.)"]
    # The actor's own rate: the whole job less the tiny job, which holds the actor's start.
    images = one["images_per_second"] * one["seconds"]
    rate = images / (one["seconds"] - one["job_fixed_seconds"])
    fixed = one["start_seconds"] + one["job_fixed_seconds"] + one["stop_seconds"]
    intro = (
        f"**On paper: {PAPER_IMAGES // 1_000_000} M images** on machines of {PAPER_CORES} "
        f"cores, one actor per core, from the measured {rate:,.0f} images/s of one actor (its "
        f"job less the tiny job) and {fixed:.1f} s of fixed cost (Ray's start, the actors' start, "
        "Ray's stop), assuming actors add up (they share nothing but the object store) and "
        "leaving out reading the images from storage:"
    )
    lines = [
        textwrap.fill(intro, WIDTH, break_on_hyphens=False),
        "",
        "| machines | actors | wall time | of which fixed cost | core-hours |",
        "|---:|---:|---:|---:|---:|",
    ]
    for machines in PAPER_MACHINES:
        actors = machines * PAPER_CORES
        wall = fixed + PAPER_IMAGES / (actors * rate)
        lines.append(
            f"| {machines} | {actors} | {_duration(wall)} | {fixed / wall:.0%} "
            f"| {actors * wall / 3600:.2f} |"
        )
    plain, written = rows.get("ray-2"), rows.get("ray-2-parquet")
    if plain and written:
        note = (
            f"Writing the Parquet output took {written['seconds']:.1f} s against "
            f"{plain['seconds']:.1f} s without it (2 actors, medians), a difference within this "
            "machine's noise: the costing holds with `--output`."
            if abs(written["seconds"] - plain["seconds"]) < 0.2 * plain["seconds"]
            else f"Writing the Parquet output took {written['seconds']:.1f} s against "
            f"{plain['seconds']:.1f} s without it (2 actors, medians)."
        )
        lines += ["", textwrap.fill(note, WIDTH, break_on_hyphens=False)]
    return lines


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 120 else f"{seconds:.0f} s"


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
    repeats = _plural(settings["repeats"], "repeat")
    notes = [
        f"Medians of {repeats} of {settings['seconds']:g} s (after "
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


def render_soak(results: dict[str, Any]) -> str:
    """The markdown table of one soak.json: the server's RSS against the targets, with notes on
    how it was measured."""
    figures, verdicts, settings = results["figures"], results["verdicts"], results["settings"]
    targets, machine, versions = settings["targets"], results["machine"], results["versions"]
    ids = [phase["id"] for phase in results["phases"]]
    growth, slope = "—", figures["slope_mb_per_minute"]
    if figures["growth_mb"] is not None:
        growth = f"{figures['growth_mb']:+.1f} MB ({figures['growth_pct']:+.1f} %)"
    rows = [
        (
            "idle, after the first call",
            _soak_mb(figures["idle_mb"]),
            _soak_target(results, "idle", "≤"),
        ),
        (
            "peak under load (VmHWM)",
            _soak_mb(figures["peak_mb"]),
            _soak_target(results, "peak", "≤"),
        ),
        (f"first minute ({' / '.join(ids)})", _soak_level(figures, "first_minute"), "—"),
        (f"last minute ({' / '.join(ids)})", _soak_level(figures, "last_minute"), "—"),
        ("growth, first to last minute", growth, _soak_target(results, "growth", "<")),
        (
            "slope after the first minute",
            "—" if slope is None else f"{slope:+.2f} MB/min",
            "—",
        ),
        ("requests served", f"{figures['requests']:,}", "—"),
        ("errors", f"{figures['errors']:,}", "none" + _soak_met(verdicts["calls"])),
    ]
    lines = ["| server RSS (VmRSS) | measured | target |", "|---|---:|---|"]
    lines += [f"| {label} | {text} | {target} |" for label, text, target in rows]
    lines.append(f"| all targets met | {'yes' if verdicts['all'] else '**no**'} | |")
    phases = "; ".join(f"{p['id']}: {p['title']}" for p in results["phases"])
    checked = sum(p["check"]["replies_checked"] for p in results["phases"])
    calls = (
        f"{checked:,} first replies checked against onnxruntime in process (labels equal), every "
        "later reply equal to its first."
    )
    if not verdicts["calls"]:
        calls = "⚠ failed calls or replies: " + "; ".join(
            f"{p['id']}: {p['errors']} errors {p['errors_by_code']}, replies checked ok: "
            f"{p['check']['ok']}"
            for p in results["phases"]
            if p["errors"] or not p["check"]["ok"]
        )
    notes = [
        f"{settings['minutes']:g} minutes of load on `python -m server` (default flags), windows "
        f"of {settings['window_seconds']:g} s taking turns — {phases} — and VmRSS sampled every "
        f"{settings['sample_seconds']:g} s ({len(results['samples'])} samples) and at the end of "
        "each window. RSS swings with the phase, so a minute's figure is the mean over the "
        "phases of the median of their windows' end readings in that minute (each in "
        "parentheses), and the slope is a least-squares fit to the end readings with an "
        "intercept per phase. "
        f"{figures['after_load_mb']:.0f} MB {settings['sample_seconds']:g} s after the load "
        f"stopped; growth must stay under {targets['growth_pct']:g} %.",
        "",
        f"`{results['command']}`, {results['date'][:10]}: {machine['cpus']} cores "
        f"({machine['cpu_model']}), load average {machine['load_average_before'][0]:.1f} before, "
        f"Python {machine['python']}, onnxruntime {versions['onnxruntime']}, grpcio "
        f"{versions['grpcio']}, protobuf {versions['protobuf']}.",
        "",
        calls,
    ]
    wrapped = [textwrap.fill(note, WIDTH, break_on_hyphens=False) for note in notes]
    return "\n".join([*lines, "", *wrapped])


_SOAK_TARGETS = {
    "idle": ("idle_mb", " MB"),
    "peak": ("peak_mb", " MB"),
    "growth": ("growth_pct", " %"),
}


def _soak_target(results: dict[str, Any], verdict: str, relation: str) -> str:
    name, unit = _SOAK_TARGETS[verdict]
    limit = results["settings"]["targets"][name]
    return f"{relation} {limit:g}{unit}{_soak_met(results['verdicts'][verdict])}"


def _soak_met(verdict: bool | None) -> str:
    return " (not judged)" if verdict is None else (" ✓" if verdict else " ✗ missed")


def _soak_level(figures: dict[str, Any], minute: str) -> str:
    level = figures[f"{minute}_mb"]
    if level is None:
        return "—"
    phases = [p[f"{minute}_mb"] for p in figures["by_phase"].values()]
    each = " / ".join("—" if mb is None else f"{mb:.0f}" for mb in phases)
    return f"{level:.0f} MB ({each})"


def _soak_mb(value: float | None) -> str:
    return "—" if value is None else f"{value:.0f} MB"


def replace_block(text: str, block: str, name: str, marker: str = "serving") -> str:
    """`text` with what lies between the markers `<!-- bench:MARKER -->` and
    `<!-- /bench:MARKER -->` replaced by `block`."""
    begin, end_marker = f"<!-- bench:{marker} -->", f"<!-- /bench:{marker} -->"
    start, end = text.find(begin), text.find(end_marker)
    if start < 0 or end < start:
        raise ScratchnetError(f"{name} has no {begin} … {end_marker} block to rewrite")
    return text[: start + len(begin)] + "\n" + block + "\n" + text[end:]


_RENDERERS = {
    "serving": render,
    "scale": render_scale,
    "http": render_http,
    "batching": render_batching,
    "soak": render_soak,
}
_WRITERS = {
    "serving": ("bench/serving.py", RESULTS),
    "scale": ("bench/scale.py", SCALE_RESULTS),
    "http": ("bench/http_serving.py", HTTP_RESULTS),
    "batching": ("bench/batching.py", BATCHING_RESULTS),
    "soak": ("bench/soak.py", SOAK_RESULTS),
}
"""Each kind of results file: the script that writes it and its default --output."""


def _missing(path: Path) -> str:
    """What to say of a results file that does not exist."""
    for script, default in _WRITERS.values():
        if path == default:
            return f"{path} not found: run {script} first"
    return f"{path} not found"


def _read(path: Path) -> tuple[str, dict[str, Any]]:
    """A results file's kind (its "benchmark" field, else its name; serving if neither says)
    and its contents."""
    try:
        results = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ScratchnetError(
            f"{path}: not a results file: expected the JSON a bench script writes ({error})"
        ) from None
    except OSError as error:
        raise ScratchnetError(f"{path}: cannot read it ({error.strerror})") from None
    if not isinstance(results, dict):
        raise ScratchnetError(
            f"{path}: not a results file: expected a JSON object, got {type(results).__name__}"
        )
    kind = results.get("benchmark")
    if kind not in _RENDERERS:
        kind = path.stem if path.stem in _RENDERERS else "serving"
    return kind, results


def write_results(path: Path, results: dict[str, Any]) -> None:
    """Write a bench script's results as the JSON file this module renders, atomically (check
    the path with scratchnet.files.check_writable before the benchmark runs)."""
    with atomic_write(path) as handle:
        handle.write((json.dumps(results, indent=2) + "\n").encode())


def main() -> int:
    """Print the tables, or write them into a file's marked blocks."""
    parser = ArgumentParser(prog=PROGRAM, description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "results",
        nargs="*",
        type=Path,
        help=f"default: {RESULTS}, {SCALE_RESULTS}, {HTTP_RESULTS}, {SOAK_RESULTS} and "
        f"{BATCHING_RESULTS}, those that exist",
    )
    parser.add_argument("--write", type=Path, metavar="FILE.md", help="e.g. README.md")
    args = parser.parse_args()
    defaults = (RESULTS, SCALE_RESULTS, HTTP_RESULTS, SOAK_RESULTS, BATCHING_RESULTS)
    paths = args.results or [path for path in defaults if path.is_file()]
    if not paths:
        raise ScratchnetError(_missing(RESULTS))
    blocks = {}
    for path in paths:
        if not path.is_file():
            raise ScratchnetError(_missing(path))
        kind, results = _read(path)
        try:
            blocks[kind] = _RENDERERS[kind](results)
        except (KeyError, TypeError, ValueError) as error:
            detail = f"no field {error}" if isinstance(error, KeyError) else str(error)
            raise ScratchnetError(
                f"{path}: not what {_WRITERS[kind][0]} writes ({detail})"
            ) from None
    if args.write is not None and not args.write.is_file():
        raise ScratchnetError(f"{args.write} not found")
    if args.write is None:
        print("\n\n".join(blocks.values()))
        return 0
    text = args.write.read_text()
    for kind, block in blocks.items():
        text = replace_block(text, block, str(args.write), kind)
    with atomic_write(args.write) as handle:
        handle.write(text.encode())
    print(f"rewrote the {' and '.join(blocks)} tables in {args.write}")
    return 0


if __name__ == "__main__":
    run_cli(PROGRAM, main)
