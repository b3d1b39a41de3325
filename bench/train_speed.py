"""Trainer benchmark: article-exact training against a plain transcription of the article's loop,
the modern recipe's time and accuracy over several seeds, and the peak RSS of `python -m trainer`.

    .venv/bin/python bench/train_speed.py [--repeats 5] [--seeds 5] [--block-sizes 16,32,64,128]

Every figure comes from this one run, side by side, on the bundled MNIST; times are medians.
"""

from __future__ import annotations

import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TypeVar

import numpy as np
from article_reference import train_article_plain

from scratchnet.cli import ArgumentParser, integer, integers, run_cli
from scratchnet.datasets import Dataset, load_dataset
from trainer.recipes import RECIPES
from trainer.sgd import SAMPLE_BLOCK, train_parameters
from trainer.training import accuracy, train

REPO = Path(__file__).resolve().parent.parent
PROGRAM = "bench/train_speed.py"
T = TypeVar("T")


def timed(function: Callable[[], T]) -> tuple[float, float, T]:
    """Wall-clock and CPU seconds taken by `function()`, and its result."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = function()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def article_speed(data: Dataset, repeats: int) -> None:
    """Plain transcription vs the blocked trainer, interleaved so both see the same load.

    CPU time is printed too: on a shared machine it moves less with other jobs than wall time.
    """
    article = RECIPES["article"]
    images, labels, classes = data.train_images, data.train_labels, data.num_classes
    plain: dict[str, list[float]] = {"wall": [], "cpu": []}
    fast: dict[str, list[float]] = {"wall": [], "cpu": []}
    for _ in range(repeats):
        wall, cpu, (plain_w, plain_b) = timed(lambda: train_article_plain(images, labels, classes))
        plain["wall"].append(wall)
        plain["cpu"].append(cpu)
        wall, cpu, (fast_w, fast_b) = timed(
            lambda: train_parameters(images, labels, classes, article)
        )
        fast["wall"].append(wall)
        fast["cpu"].append(cpu)
    runs = f"{repeats} run{'' if repeats == 1 else 's'}"
    print(f"article recipe, one pass over {len(labels):,} images (median of {runs})")
    for clock in ("wall", "cpu"):
        p, f = statistics.median(plain[clock]), statistics.median(fast[clock])
        pairs = statistics.median(a / b for a, b in zip(plain[clock], fast[clock], strict=True))
        print(f"  {clock} time")
        print(f"    plain transcription     {p:.3f} s   (runs: {_list(plain[clock])})")
        print(f"    trainer (blocked, B={SAMPLE_BLOCK}) {f:.3f} s   (runs: {_list(fast[clock])})")
        print(
            f"    speed-up                {p / f:.2f}x   (median of per-run ratios {pairs:.2f}x; "
            "target >= 3x)"
        )
    print(
        f"  max |dW| {np.abs(fast_w - plain_w).max():.2e}, max |db| "
        f"{np.abs(fast_b - plain_b).max():.2e}   (target <= 1e-9)"
    )
    print(f"  test accuracy {accuracy(fast_w, fast_b, data.test_images, data.test_labels):.4f}")


def block_sizes(data: Dataset, sizes: list[int], repeats: int) -> None:
    """Time the blocked trainer for each block size."""
    print("article recipe, blocked trainer by block size B (medians)")
    for size in sizes:
        run = partial(
            train_parameters,
            data.train_images,
            data.train_labels,
            data.num_classes,
            RECIPES["article"],
            sample_block=size,
        )
        runs = [timed(run) for _ in range(repeats)]
        wall = statistics.median(timing[0] for timing in runs)
        cpu = statistics.median(timing[1] for timing in runs)
        print(f"  B={size:<4d} {wall:.3f} s wall, {cpu:.3f} s CPU")


def modern_recipe(data: Dataset, seeds: int) -> None:
    """The modern recipe with its documented seed, then the spread over seeds 0..seeds-1."""
    recipe = RECIPES["modern"]
    results = [train(data, recipe.replace(seed=seed)) for seed in range(seeds)]
    accuracies = [result.artifact.metadata["test_accuracy"] for result in results]
    times = [result.train_seconds for result in results]
    print(f"modern recipe ({_describe(recipe.as_dict())})")
    print(
        f"  seed {recipe.seed}: test accuracy {accuracies[0]:.4f} in {times[0]:.2f} s "
        "(target >= 0.925 within 3 s)"
    )
    print(
        f"  seeds 0..{seeds - 1}: test accuracy min {min(accuracies):.4f}, median "
        f"{statistics.median(accuracies):.4f}, max {max(accuracies):.4f}; "
        f"time median {statistics.median(times):.2f} s, max {max(times):.2f} s"
    )


def peak_rss(args: list[str]) -> float:
    """Peak resident memory in MB of `python -m trainer ARGS` (via /usr/bin/time -v if present)."""
    with tempfile.TemporaryDirectory() as folder:
        command = [sys.executable, "-m", "trainer", "--quiet", "-o", f"{folder}/m.npz", *args]
        time_tool = shutil.which("time", path="/usr/bin")
        if time_tool:
            done = subprocess.run(
                [time_tool, "-v", *command], cwd=REPO, capture_output=True, text=True, check=True
            )
            match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
            assert match, done.stderr
            return int(match.group(1)) / 1024
        subprocess.run(command, cwd=REPO, check=True)
        return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def _list(values: list[float]) -> str:
    return ", ".join(f"{value:.3f}" for value in values)


def _describe(hyperparameters: dict[str, object]) -> str:
    return ", ".join(f"{key} {value}" for key, value in hyperparameters.items())


def main() -> None:
    """Run every measurement and print the figures."""
    parser = ArgumentParser(prog=PROGRAM, description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=integer(1), default=5, help="runs per timing (default 5)")
    parser.add_argument(
        "--seeds", type=integer(1), default=5, help="modern-recipe seeds (default 5)"
    )
    parser.add_argument(
        "--block-sizes",
        type=integers(1),
        default=[],
        help="also time these block sizes, e.g. 16,32,64,128",
    )
    args = parser.parse_args()
    print(f"python {platform.python_version()}, numpy {np.__version__}, {platform.machine()}")
    data = load_dataset(None)
    article_speed(data, args.repeats)
    if args.block_sizes:
        block_sizes(data, args.block_sizes, args.repeats)
    modern_recipe(data, args.seeds)
    print(
        "peak RSS of `python -m trainer` (article recipe, defaults) "
        f"{peak_rss([]):.0f} MB (target <= 250 MB)"
    )
    print(
        f"peak RSS of `python -m trainer --recipe modern` {peak_rss(['--recipe', 'modern']):.0f} MB"
    )


if __name__ == "__main__":
    run_cli(PROGRAM, main)
