'use strict';

// Image files to predict on, recognised by their content: IDX (raw or gzip), .npy, or a PNG or
// JPEG photo. Photos are put in MNIST's form by the ES module the playground uses too
// (scratchnet/web/preprocess.mjs, the algorithm of docs/preprocessing.md).

const path = require('node:path');
const { ScratchnetError } = require('./errors');
const { parseIdx, readMaybeGzip } = require('./idx');
const { isNpy, parseNpy } = require('./npy');

/** The shared preprocessing module, in the repository this package lives in. */
const PREPROCESS = path.resolve(__dirname, '..', '..', '..', 'scratchnet', 'web', 'preprocess.mjs');

const PNG_MAGIC = Buffer.from([0x89, 0x50, 0x4e, 0x47]);
const JPEG_MAGIC = Buffer.from([0xff, 0xd8, 0xff]);

/** Whether `bytes` start like a PNG or a JPEG file. */
function isPhoto(bytes) {
  return bytes.subarray(0, 4).equals(PNG_MAGIC) || bytes.subarray(0, 3).equals(JPEG_MAGIC);
}

/**
 * Decode a PNG or JPEG file to RGBA pixels.
 * @param {Buffer} bytes
 * @param {string} file for messages
 * @returns {{width: number, height: number, data: Uint8Array}}
 */
function decodePhoto(bytes, file) {
  try {
    if (bytes.subarray(0, 4).equals(PNG_MAGIC)) {
      const { PNG } = require('pngjs');
      const { width, height, data } = PNG.sync.read(bytes);
      return { width, height, data };
    }
    const jpeg = require('jpeg-js');
    const { width, height, data } = jpeg.decode(bytes, { useTArray: true, formatAsRGBA: true });
    return { width, height, data };
  } catch (error) {
    throw new ScratchnetError(`${file}: not a readable image (${error.message})`);
  }
}

/**
 * A photo as one image [1, H, W] of uint8 pixels: in MNIST's form unless `preprocess` is false,
 * when it must already be H x W (it is then only made grayscale, and inverted if need be).
 */
async function readPhoto(bytes, file, { imageShape, preprocess = true, invert = 'auto' }) {
  const [height, width] = imageShape;
  const image = decodePhoto(bytes, file);
  const { mnistForm, grayOf, inverts } = await import(PREPROCESS);
  if (preprocess) {
    return { data: mnistForm(image, [height, width], { invert }), shape: [1, height, width] };
  }
  if (image.width !== width || image.height !== height) {
    throw new ScratchnetError(
      `${file}: a ${image.width}x${image.height} image, expected ${width}x${height} ` +
        '(the model\'s size) with --no-preprocess; drop the flag to have it fitted',
    );
  }
  const gray = grayOf(image);
  const flip = inverts(gray, width, height, invert);
  const data = Uint8Array.from(gray, (v) => Math.floor((flip ? 255 - v : v) + 0.5));
  return { data, shape: [1, height, width] };
}

/**
 * Read a file of images as a batch [N, H, W]; a single [H, W] image becomes a batch of one.
 * @param {string} file an IDX file (raw or .gz) of unsigned bytes, a .npy of uint8 or float32,
 *   or a PNG or JPEG photo
 * @param {object} [options] for photos
 * @param {() => Promise<[number, number]>} [options.imageShape] the model's [H, W], asked for
 *   only when a photo needs it
 * @param {boolean} [options.preprocess] put photos in MNIST's form (default true)
 * @param {'auto'|'yes'|'no'} [options.invert] whether photos are light paper (default auto)
 * @returns {Promise<import('./tensor').ImageBatch>}
 */
async function readImages(file, options = {}) {
  const bytes = readMaybeGzip(file);
  if (isPhoto(bytes)) {
    if (!options.imageShape) {
      throw new ScratchnetError(`${file}: a photo, but no model image size to fit it to`);
    }
    const imageShape = await options.imageShape();
    return readPhoto(bytes, file, { ...options, imageShape });
  }
  return arrayImages(bytes, file);
}

/**
 * Read an IDX or .npy file of images as a batch [N, H, W], synchronously.
 * @param {string} file
 * @returns {import('./tensor').ImageBatch}
 */
function readImageArray(file) {
  return arrayImages(readMaybeGzip(file), file);
}

function arrayImages(bytes, file) {
  const { data, shape } = isNpy(bytes) ? parseNpy(bytes, file) : parseIdx(bytes, file);
  if (shape.length === 2) {
    return { data, shape: [1, ...shape] };
  }
  if (shape.length !== 3) {
    throw new ScratchnetError(`${file}: expected images of shape [N,H,W] or [H,W], got [${shape}]`);
  }
  return { data, shape };
}

module.exports = { PREPROCESS, readImageArray, readImages };
