'use strict';

// Image files to predict on, recognised by their content: IDX (raw or gzip) or .npy.

const { ScratchnetError } = require('./errors');
const { parseIdx, readMaybeGzip } = require('./idx');
const { isNpy, parseNpy } = require('./npy');

/**
 * Read a file of images as a batch [N, H, W]; a single [H, W] image becomes a batch of one.
 * @param {string} file an IDX file (raw or .gz) of unsigned bytes, or a .npy of uint8 or float32
 * @returns {import('./tensor').ImageBatch}
 */
function readImages(file) {
  const bytes = readMaybeGzip(file);
  const { data, shape } = isNpy(bytes) ? parseNpy(bytes, file) : parseIdx(bytes, file);
  if (shape.length === 2) {
    return { data, shape: [1, ...shape] };
  }
  if (shape.length !== 3) {
    throw new ScratchnetError(`${file}: expected images of shape [N,H,W] or [H,W], got [${shape}]`);
  }
  return { data, shape };
}

module.exports = { readImages };
