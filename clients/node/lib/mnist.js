'use strict';

// MNIST-style folders: t10k-* (test) and train-* (train) IDX files of images and labels, each
// raw or gzip-compressed, as in the repository's data/mnist.

const fs = require('node:fs');
const path = require('node:path');
const { InputError } = require('./errors');
const { readIdxLabels } = require('./idx');
const { readImageArray } = require('./images');

/**
 * The file of an MNIST-style set in `dir`: `<stem>` or `<stem>.gz`, whichever exists.
 * @param {string} dir
 * @param {string} stem e.g. "t10k-images-idx3-ubyte"
 * @returns {string}
 */
function findSetFile(dir, stem) {
  for (const candidate of [stem, `${stem}.gz`]) {
    const file = path.join(dir, candidate);
    if (fs.existsSync(file)) {
      return file;
    }
  }
  throw new InputError(
    `${dir}: no ${stem} or ${stem}.gz in it (expected an MNIST-style IDX folder)`,
  );
}

/**
 * Load one split of an MNIST-style folder (t10k-* for "test", train-* for "train").
 * @param {string} dir
 * @param {'test' | 'train'} [split]
 * @returns {{images: import('./tensor').ImageBatch, labels: Uint8Array}}
 */
function loadMnistSplit(dir, split = 'test') {
  const prefix = { test: 't10k', train: 'train' }[split];
  if (!prefix) {
    throw new InputError(`split '${split}': expected 'test' or 'train'`);
  }
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) {
    throw new InputError(`${dir}: not a folder (expected an MNIST-style IDX folder)`);
  }
  const imagesFile = findSetFile(dir, `${prefix}-images-idx3-ubyte`);
  const labelsFile = findSetFile(dir, `${prefix}-labels-idx1-ubyte`);
  const images = readImageArray(imagesFile);
  const labels = readIdxLabels(labelsFile);
  if (labels.length !== images.shape[0]) {
    throw new InputError(
      `${labelsFile}: ${labels.length} labels for ${images.shape[0]} images in ` +
        `${imagesFile}; expected one per image`,
    );
  }
  return { images, labels };
}

module.exports = { loadMnistSplit };
