"""Scraping a metrics endpoint in tests: GET it, parse the exposition with prometheus_client's
parser, add up the samples a test asks about."""

from __future__ import annotations

import ssl
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from tests.server.calls import CALL_SECONDS

Samples = list[tuple[str, dict[str, str], float]]


def parse(text: str) -> Samples:
    """Every sample of a text exposition, as (name, labels, value)."""
    return [
        (sample.name, sample.labels, sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples called `name` whose labels include `labels` (0 if none)."""
    return sum(
        found
        for sample, sample_labels, found in samples
        if sample == name and all(sample_labels.get(k) == v for k, v in labels.items())
    )


def names(samples: Samples) -> set[str]:
    """The names of the samples."""
    return {name for name, _, _ in samples}


def scrape(
    url: str,
    context: ssl.SSLContext | None = None,
    token: str | None = None,
    timeout: float = CALL_SECONDS,
) -> Samples:
    """GET `url` and parse the exposition."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
        assert response.status == 200
        return parse(response.read().decode())
