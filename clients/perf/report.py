"""What perf prints: one run's report as text, and a sweep's table."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from clients.perf.load import LATE_SECONDS, RATE_CONCURRENCY, STAGES

__all__ = ["sweep_table", "text"]


def sweep_table(reports: Sequence[dict[str, Any]]) -> str:
    """One row per level (calls in flight, or calls a second asked for), as perf_analyzer's
    summary ends a sweep; with rates, how many calls started late and how many were not sent."""
    rates = reports[0]["request_rate"] is not None
    lines = [
        f"{'calls/s asked' if rates else 'concurrency':>13}  requests/s    images/s     p50 ms     "
        "p99 ms  client CPU ms/call  errors" + ("    late  unsent" if rates else "")
    ]
    for report in reports:
        latency = report["latency_ms"]
        cpu = report["client_cpu_ms_per_request"]
        level = f"{report['request_rate']:,g}" if rates else str(report["concurrency"])
        lines.append(
            f"{level:>13}  {report['requests_per_second']:>10,.1f}  "
            f"{report['images_per_second']:>10,.0f}  {latency.get('p50', math.nan):>9.3f}  "
            f"{latency.get('p99', math.nan):>9.3f}  "
            f"{'n/a' if cpu is None else f'{cpu:.3f}':>18}  {report['errors']:>6,}"
            + (f"  {report['late']:>6,}  {report['unsent']:>6,}" if rates else "")
        )
    return "\n".join(lines)


def text(report: dict[str, Any]) -> str:
    latency = report["latency_ms"]
    cpu = report["client_cpu_ms_per_request"]
    dims = ",".join(map(str, report["input"]["dims"]))
    via = " through shared memory" if report["shared_memory"] != "none" else ""
    lines = [
        f"{report['target']} {report['api']}: model '{report['model']['name']}' version "
        f"'{report['model']['version']}', input '{report['input']['name']}' "
        f"{report['input']['datatype']} [{report['batch']},{dims}]{via}, outputs "
        f"{','.join(report['outputs'])}",
        f"{_load(report)} for {report['seconds']:.2f} s after {report['warmup_seconds']:g} s of "
        "warm-up" + _windows(report),
        f"throughput  {report['requests_per_second']:,.1f} requests/s, "
        f"{report['images_per_second']:,.0f} images/s ({report['requests']:,} requests)",
        *_schedule(report),
        "latency     "
        + ", ".join(f"{name} {ms:.3f} ms" for name, ms in latency.items())
        + ("" if latency else "none answered"),
    ]
    server = report["server_ms"]
    if server:
        stages = ", ".join(f"{stage} {server[stage]:.3f}" for stage in STAGES)
        lines.append(
            f"server      {server['total']:.3f} ms per request in the server: {stages} "
            f"(its statistics, {server['requests']:,.0f} request(s))"
        )
    errors = report["errors_by_code"]
    lines.append("errors      " + (", ".join(f"{c} {n:,}" for c, n in errors.items()) or "none"))
    for code, message in report["error_messages"].items():
        lines.append(f"  first {code}: {message}")
    if cpu is None:
        lines.append("client CPU  n/a")
    else:
        busy = report["client_cpu_cores"] >= _BUSY_CLIENT
        lines.append(
            f"client CPU  {cpu:.3f} ms per call, {report['client_cpu_cores']:.2f} cores"
            + (" (near a whole core: the client may be the bottleneck)" if busy else "")
        )
    return "\n".join(lines)


def _load(report: dict[str, Any]) -> str:
    """The load the run applied, for the report's second line."""
    if report["request_rate"] is None:
        return f"{report['concurrency']} call(s) in flight"
    return f"{report['request_rate']:,g} calls/s asked ({report['request_distribution']})"


def _schedule(report: dict[str, Any]) -> list[str]:
    """How a request rate's calls went out: on time, late, or not at all (none without one)."""
    if report["request_rate"] is None:
        return []
    scheduled, late, unsent = report["scheduled"], report["late"], report["unsent"]
    sent = scheduled - unsent
    line = (
        f"schedule    {scheduled:,} calls due in the window, "
        f"{f'{sent:,} ({sent / scheduled:.0%})' if unsent else 'all'} sent, {late:,} of them more "
        f"than {LATE_SECONDS * 1000:g} ms late"
    )
    if unsent:
        line += (
            f"; {unsent:,} not sent by its end: behind schedule, the client too slow for the "
            f"rate or {RATE_CONCURRENCY:,} calls already in flight"
        )
    return [line]


def _windows(report: dict[str, Any]) -> str:
    """What the stability passes found, for the report's second line ("" without them)."""
    if report["stable"] is None:
        return ""
    agreed = f"within {report['stability_percent']:g} %"
    if report["stable"]:
        return f": the last 3 of {report['windows']} windows, which agree {agreed}"
    return f": the last 3 of {report['windows']} windows, NOT stable ({agreed} asked)"


_BUSY_CLIENT = 0.8
"""Client cores from which the report warns that the client may be what limits the run."""
