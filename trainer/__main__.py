"""`python -m trainer`: train the network on a data set and write the artifact.

With no flags it reproduces the article exactly on the bundled MNIST and writes
artifacts/model.npz; `--recipe modern` trains the better recipe. See docs/trainer.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, NoReturn

from tqdm import tqdm

from scratchnet.artifact import save_artifact
from scratchnet.cli import ArgumentParser, integer, positive_number, program_name, run_cli
from scratchnet.contract import DEFAULT_ARTIFACT
from scratchnet.datasets import load_dataset
from scratchnet.files import check_writable
from trainer.losses import LOSSES
from trainer.recipes import INITS, RECIPES, Hyperparameters
from trainer.schedules import SCHEDULES
from trainer.training import TrainingResult, train

__all__ = ["build_parser", "hyperparameters_from", "main"]

PROGRAM = program_name("python -m trainer")


def build_parser() -> ArgumentParser:
    """The trainer's command line."""
    parser = ArgumentParser(
        prog=PROGRAM,
        description="Train the single-layer network and write its artifact (an npz file).",
    )
    parser.add_argument(
        "--data",
        metavar="PATH",
        help="an IDX directory, the article's npz or a Keras mnist.npz (default: bundled MNIST)",
    )
    parser.add_argument(
        "-o",
        "--output",
        metavar="PATH",
        default=str(DEFAULT_ARTIFACT),
        help=f"where to write the artifact (default: {DEFAULT_ARTIFACT})",
    )
    parser.add_argument(
        "--recipe",
        choices=RECIPES,
        default="article",
        help="preset hyperparameters: article (exact reproduction, default) or modern",
    )
    overrides = parser.add_argument_group("recipe overrides", "each replaces the recipe's value")
    overrides.add_argument("--epochs", type=integer(1), help="passes over the training set")
    overrides.add_argument(
        "--batch-size", type=integer(1), help="samples per update (1: per-sample SGD)"
    )
    overrides.add_argument("--lr", type=positive_number, help="base learning rate")
    overrides.add_argument("--schedule", choices=SCHEDULES, help="learning-rate schedule")
    overrides.add_argument("--loss", choices=LOSSES, help="loss on the softmax")
    overrides.add_argument(
        "--shuffle", action=argparse.BooleanOptionalAction, help="reshuffle before every epoch"
    )
    overrides.add_argument("--seed", type=integer(0), help="seed for shuffling and init")
    overrides.add_argument("--init", choices=INITS, help="initial weights")
    parser.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    parser.add_argument(
        "--json", action="store_true", help="print the final metrics as one JSON object"
    )
    return parser


def hyperparameters_from(args: argparse.Namespace) -> Hyperparameters:
    """The chosen recipe with any explicit flags applied."""
    changes = {
        name: getattr(args, name)
        for name in RECIPES[args.recipe].as_dict()
        if getattr(args, name, None) is not None
    }
    return RECIPES[args.recipe].replace(**changes)


def _run(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    hyperparameters = hyperparameters_from(args)
    output = Path(args.output)
    check_writable(output)  # before training, not after it
    dataset = load_dataset(args.data)
    show_progress = not (args.quiet or args.json) and sys.stdout.isatty()
    with tqdm(
        total=len(dataset.train_labels) * hyperparameters.epochs,
        unit="img",
        unit_scale=True,
        desc="training",
        disable=not show_progress,
        leave=False,
    ) as bar:
        result = train(dataset, hyperparameters, bar.update if show_progress else None)
    save_artifact(output, result.artifact)
    if args.json:
        print(json.dumps(_summary(result, output)), flush=True)
    elif not args.quiet:
        _print_report(result, output)
    return 0


def _summary(result: TrainingResult, output: Path) -> dict[str, Any]:
    metadata = result.artifact.metadata
    return {
        "test_accuracy": metadata["test_accuracy"],
        "train_accuracy": metadata["train_accuracy"],
        "train_seconds": round(result.train_seconds, 4),
        "recipe": metadata["recipe"],
        "hyperparameters": metadata["hyperparameters"],
        "dataset": metadata["dataset"],
        "output": str(output),
    }


def _print_report(result: TrainingResult, output: Path) -> None:
    metadata = result.artifact.metadata
    height, width = metadata["input_shape"]
    print(
        f"trained recipe {metadata['recipe']} on {metadata['dataset']['name']} "
        f"({height}x{width} images, {result.artifact.num_classes} classes) "
        f"in {result.train_seconds:.2f} s"
    )
    print(f"train accuracy {metadata['train_accuracy']:.4f}")
    print(f"test accuracy {metadata['test_accuracy']:.4f}")
    print(f"wrote {output}", flush=True)


def main() -> NoReturn:
    """Entry point of `python -m trainer` and `scratchnet-train`."""
    run_cli(PROGRAM, _run)


if __name__ == "__main__":
    main()
