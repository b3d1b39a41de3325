'use strict';

// Scoring a labelled set: accuracy and throughput of any predictor (gRPC v1, gRPC v2, onnxruntime).

const { performance } = require('node:perf_hooks');
const { InputError, ScratchnetError } = require('./errors');

/**
 * The result of scoring a set.
 * @typedef {object} Score
 * @property {number} accuracy fraction of images whose predicted label is the true one
 * @property {number} correct
 * @property {number} total
 * @property {number} seconds wall time of the predictions
 * @property {number} imagesPerSecond
 * @property {number[]} labels the predicted labels
 * @property {string | undefined} modelName the model that answered (a server's)
 * @property {string | undefined} modelVersion its version
 */

/**
 * Predict every image and compare with the true labels.
 * @param {(images: import('./tensor').ImageBatch) => Promise<{labels: number[]}>} predict
 * @param {import('./tensor').ImageBatch} images
 * @param {ArrayLike<number>} truth one true label per image
 * @returns {Promise<Score>}
 */
async function scoreSet(predict, images, truth) {
  const start = performance.now();
  const { labels, modelName, modelVersion, numClasses } = await predict(images);
  const seconds = (performance.now() - start) / 1000;
  // Labels the model cannot give would score as mistakes: a set meant for another model.
  const highest = truth.reduce((most, label) => Math.max(most, label), -1);
  if (numClasses !== undefined && highest >= numClasses) {
    throw new InputError(
      `the labels go up to ${highest}, but the model has only ${numClasses} classes: ` +
        'a labelled set for another model?',
    );
  }
  if (labels.length !== truth.length) {
    throw new ScratchnetError(
      `got ${labels.length} predictions for ${truth.length} images; expected one per image`,
    );
  }
  const correct = labels.reduce((n, label, i) => n + (label === truth[i] ? 1 : 0), 0);
  return {
    accuracy: correct / truth.length,
    correct,
    total: truth.length,
    seconds,
    imagesPerSecond: truth.length / seconds,
    labels,
    modelName,
    modelVersion,
  };
}

module.exports = { scoreSet };
