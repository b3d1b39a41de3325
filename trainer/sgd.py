"""Stochastic gradient descent for the single-layer network, on uint8 images scaled block by block.

Per-sample SGD (batch size 1, the article's way) uses an exact blocked formulation. Within a block
of consecutive samples x_0..x_{B-1}, each update is a rank-one change, so the scores sample i sees
are those at the block's start corrected by the updates of the samples before it:

    h_i = x_i W0^T + b0 - sum_{j<i} lr_j (x_i . x_j + 1) g_j        (g_j = dloss/dscores of j)

Two matrix products per block (X W0^T and the Gram matrix X X^T) leave only C-sized work per
sample; W -= (lr G)^T X is then applied once per block. The result equals the sample-by-sample
loop up to rounding (~1e-14). Mini-batches (batch size > 1) take the usual averaged gradient step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import numpy as np
from numpy.typing import NDArray
from threadpoolctl import threadpool_limits

from scratchnet.forward import scale_pixels
from trainer.losses import LOSSES, RowGradient
from trainer.recipes import INITS, Hyperparameters
from trainer.schedules import learning_rates

__all__ = ["SAMPLE_BLOCK", "train_parameters"]

# Samples per block of per-sample SGD: the Gram matrix costs B per sample, the per-block numpy
# calls 1/B; 32 was fastest here, 48-64 within 5% (bench/train_speed.py --block-sizes measures it).
SAMPLE_BLOCK = 32
# Rows scaled to float64 at once for mini-batch SGD: a few MB, whatever the data set's size.
_CHUNK = 2048

Progress = Callable[[int], object]


def train_parameters(
    images: NDArray[np.uint8] | NDArray[np.float32],
    labels: NDArray[np.int64],
    num_classes: int,
    hyperparameters: Hyperparameters,
    progress: Progress | None = None,
    sample_block: int = SAMPLE_BLOCK,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Train weights [C, H, W] and biases [C]; `progress(n)` is told of every n samples done."""
    hp = hyperparameters
    count, height, width = images.shape
    flat = images.reshape(count, height * width)
    rng = np.random.default_rng(hp.seed)
    weights: NDArray[np.float64] = np.zeros((num_classes, height * width))
    if INITS[hp.init]:
        weights = rng.normal(0.0, INITS[hp.init], size=weights.shape)
    biases = np.zeros(num_classes)
    steps = math.ceil(count / hp.batch_size)
    rates = learning_rates(hp.schedule, hp.lr, steps * hp.epochs)
    loss = LOSSES[hp.loss]
    # Mini-batches are cut from larger blocks so that scaling to float64 is one call per block.
    block = sample_block if hp.batch_size == 1 else max(1, _CHUNK // hp.batch_size) * hp.batch_size
    # One BLAS thread: the products are too small to share out, and BLAS threads spinning for
    # cores other processes hold made training 2-5x slower on a busy machine (same bytes).
    with threadpool_limits(1, user_api="blas"):
        for epoch in range(hp.epochs):
            order = rng.permutation(count) if hp.shuffle else np.arange(count)
            blocks = _scaled_blocks(flat, labels, order, block, progress)
            epoch_rates = rates[epoch * steps : (epoch + 1) * steps]
            if hp.batch_size == 1:
                _per_sample_epoch(weights, biases, blocks, epoch_rates, loss.row_gradient)
            else:
                _minibatch_epoch(weights, biases, blocks, epoch_rates, hp.batch_size, loss.gradient)
    return weights.reshape(num_classes, height, width), biases


def _scaled_blocks(
    flat: NDArray[np.uint8] | NDArray[np.float32],
    labels: NDArray[np.int64],
    order: NDArray[np.intp],
    size: int,
    progress: Progress | None,
) -> Iterator[tuple[int, NDArray[np.float64], NDArray[np.int64]]]:
    """(index of the first sample, pixels [B, D] in [0, 1], labels [B]) for blocks in `order`;
    `progress` hears of each block once it has been used."""
    for start in range(0, len(order), size):
        rows = order[start : start + size]
        yield start, scale_pixels(flat[rows]), labels[rows]
        if progress is not None:
            progress(len(rows))


def _per_sample_epoch(
    weights: NDArray[np.float64],
    biases: NDArray[np.float64],
    blocks: Iterator[tuple[int, NDArray[np.float64], NDArray[np.int64]]],
    rates: NDArray[np.float64],
    row_gradient: RowGradient,
) -> None:
    classes = len(biases)
    for start, x, y in blocks:
        size = len(x)
        rate = rates[start : start + size]
        # state stacks the block's starting scores over the gradients found so far (zero rows
        # for samples not yet reached); coupling row i = [e_i, -lr_j (x_i . x_j + 1)], so that
        # coupling[i] @ state is exactly h_i above, with no masking needed.
        state = np.zeros((2 * size, classes))
        np.matmul(x, weights.T, out=state[:size])
        state[:size] += biases
        coupling = np.zeros((size, 2 * size))
        coupling[:, :size].flat[:: size + 1] = 1.0
        gram = coupling[:, size:]
        np.matmul(x, x.T, out=gram)
        gram += 1.0
        gram *= -rate
        for i, (row, label) in enumerate(zip(coupling, y.tolist(), strict=True)):
            state[size + i] = row_gradient((row @ state).tolist(), label)
        steps = state[size:] * rate[:, None]
        weights -= steps.T @ x
        biases -= steps.sum(axis=0)


def _minibatch_epoch(
    weights: NDArray[np.float64],
    biases: NDArray[np.float64],
    blocks: Iterator[tuple[int, NDArray[np.float64], NDArray[np.int64]]],
    rates: NDArray[np.float64],
    batch_size: int,
    gradient: Callable[[NDArray[np.float64], NDArray[np.int64]], NDArray[np.float64]],
) -> None:
    for block_start, block_x, block_y in blocks:
        for start in range(0, len(block_x), batch_size):
            x = block_x[start : start + batch_size]
            scores = x @ weights.T
            scores += biases
            g = gradient(scores, block_y[start : start + batch_size])
            g *= rates[(block_start + start) // batch_size] / len(x)
            weights -= g.T @ x
            biases -= g.sum(axis=0)
