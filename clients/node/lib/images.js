'use strict';

// Image files to predict on, recognised by their content: IDX (raw or gzip), .npy, or a PNG or
// JPEG photo. Photos are put in MNIST's form by the ES module the playground uses too
// (scratchnet/web/preprocess.mjs, the algorithm of docs/preprocessing.md).

const path = require('node:path');
const { InputError } = require('./errors');
const { parseIdx, readMaybeGzip } = require('./idx');
const { isNpy, parseNpy } = require('./npy');

/** The shared preprocessing module, in the repository this package lives in. */
const PREPROCESS = path.resolve(__dirname, '..', '..', '..', 'scratchnet', 'web', 'preprocess.mjs');

const KINDS = 'a complete PNG or JPEG photo, a .npy array or an IDX image file';
const PNG_MAGIC = Buffer.from([0x89, 0x50, 0x4e, 0x47]);
const JPEG_MAGIC = Buffer.from([0xff, 0xd8, 0xff]);
// The most pixels a photo may have: Pillow's MAX_IMAGE_PIXELS, the Python client's limit. A small
// file can declare a huge image (a decompression bomb), and decoding it takes 4 bytes a pixel.
const MAX_PIXELS = 89_478_485;
// jpeg-js refuses images needing more memory than this (default 512 MB, which a photo well within
// MAX_PIXELS exceeds): its coefficients, components and RGBA output take up to ~14 bytes a pixel.
const JPEG_MAX_MEMORY_MB = Math.ceil((MAX_PIXELS * 16) / 2 ** 20);

/** Whether `bytes` start like a PNG or a JPEG file. */
function isPhoto(bytes) {
  return bytes.subarray(0, 4).equals(PNG_MAGIC) || bytes.subarray(0, 3).equals(JPEG_MAGIC);
}

/**
 * Decode a PNG or JPEG file to RGBA pixels.
 * @param {Buffer} bytes
 * @param {string} file for messages
 * @returns {Promise<{width: number, height: number, data: Uint8Array}>}
 */
async function decodePhoto(bytes, file) {
  const png = bytes.subarray(0, 4).equals(PNG_MAGIC);
  const size = png ? pngSize(bytes) : jpegSize(bytes);
  if (size && size.width * size.height > MAX_PIXELS) {
    throw new InputError(
      `${file}: a ${size.width}x${size.height} image (${size.width * size.height} pixels), ` +
        `expected at most ${MAX_PIXELS} pixels`,
    );
  }
  try {
    if (png) {
      const { width, height, data } = await decodePng(bytes);
      return { width, height, data };
    }
    const jpeg = require('jpeg-js');
    const { width, height, data } = jpeg.decode(bytes, {
      useTArray: true,
      formatAsRGBA: true,
      // In case jpegSize missed the frame header: jpeg-js checks its own.
      maxResolutionInMP: MAX_PIXELS / 1e6,
      maxMemoryUsageInMB: JPEG_MAX_MEMORY_MB,
    });
    return { width, height, data };
  } catch (error) {
    const reason = String(error.message).split('\n')[0];
    throw new InputError(
      `${file}: not a readable ${png ? 'PNG' : 'JPEG'} image (${reason}), expected ${KINDS}`,
    );
  }
}

/**
 * A PNG decoded by pngjs's parser. Not PNG.sync.read: its reader throws "unrecognised content at
 * end of stream" (or "read requests waitng on finished stream") for any malformed file, hiding
 * the parser's reason ("Crc error", "Unexpected end of input").
 * @param {Buffer} bytes
 * @returns {Promise<{width: number, height: number, data: Buffer}>}
 */
function decodePng(bytes) {
  const { PNG } = require('pngjs');
  return new Promise((resolve, reject) => {
    const png = new PNG();
    // parse() listens once: a second error from the same stream would otherwise be uncaught.
    png.on('error', () => {});
    png.parse(bytes, (error, decoded) => (error ? reject(error) : resolve(decoded)));
  });
}

/** {width, height} from a PNG's IHDR chunk (the first), or undefined if it has none. */
function pngSize(bytes) {
  if (bytes.length < 24 || bytes.toString('latin1', 12, 16) !== 'IHDR') {
    return undefined; // pngjs says what is wrong
  }
  return { width: bytes.readUInt32BE(16), height: bytes.readUInt32BE(20) };
}

/**
 * {width, height} from a JPEG's frame header (SOFn), or undefined if none is found: the segments
 * before it are skipped by their lengths.
 */
function jpegSize(bytes) {
  let offset = 2; // after the start-of-image marker
  while (offset + 9 <= bytes.length && bytes[offset] === 0xff) {
    const marker = bytes[offset + 1];
    // SOF0–SOF15 but DHT (C4), JPG (C8) and DAC (CC), which share the range.
    if (marker >= 0xc0 && marker <= 0xcf && ![0xc4, 0xc8, 0xcc].includes(marker)) {
      return { height: bytes.readUInt16BE(offset + 5), width: bytes.readUInt16BE(offset + 7) };
    }
    offset += marker === 0xff ? 1 : 2 + bytes.readUInt16BE(offset + 2); // 0xff: a fill byte
  }
  return undefined;
}

/**
 * A photo as one image [1, H, W] of uint8 pixels: in MNIST's form unless `preprocess` is false,
 * when it is only made grayscale, resized to H x W and inverted if need be.
 */
async function readPhoto(bytes, file, { imageShape, preprocess = true, invert = 'auto' }) {
  const [height, width] = imageShape;
  const image = await decodePhoto(bytes, file);
  const { mnistForm, plainForm } = await import(PREPROCESS);
  const form = preprocess ? mnistForm : plainForm;
  return { data: form(image, [height, width], { invert }), shape: [1, height, width] };
}

/**
 * Read a file of images as a batch [N, H, W]; a single [H, W] image becomes a batch of one.
 * @param {string} file an IDX file (raw or .gz) of unsigned bytes, a .npy of integers 0–255 or
 *   floats in [0, 1] (lib/npy.js), or a PNG or JPEG photo
 * @param {object} [options]
 * @param {() => Promise<[number, number]>} [options.imageShape] the model's [H, W]: photos are
 *   fitted to it, and arrays of another size refused (InputError)
 * @param {boolean} [options.preprocess] put photos in MNIST's form (default true)
 * @param {'auto'|'yes'|'no'} [options.invert] whether photos are light paper (default auto)
 * @returns {Promise<import('./tensor').ImageBatch>}
 */
async function readImages(file, options = {}) {
  const bytes = readMaybeGzip(file);
  if (isPhoto(bytes)) {
    if (!options.imageShape) {
      throw new InputError(`${file}: a photo, but no model image size to fit it to`);
    }
    const imageShape = await options.imageShape();
    if (!imageShape.every((size) => size > 0)) {
      throw new InputError(
        `${file}: a photo, but the model's input does not say its image size (a flat input): ` +
          'send images of its size as .npy or IDX, or call it over scratchnet.v1 (--api v1)',
      );
    }
    return readPhoto(bytes, file, { ...options, imageShape });
  }
  const images = arrayImages(bytes, file);
  if (options.imageShape) {
    checkImageShape(images.shape, await options.imageShape(), file);
  }
  return images;
}

/**
 * Refuse images [N, H, W] whose H x W is not the model's [H, W] (a size it leaves open, not a
 * positive number, takes any), naming `file`: the server would refuse them without naming it.
 * @param {number[]} shape
 * @param {[number, number]} imageShape
 * @param {string} file
 */
function checkImageShape(shape, imageShape, file) {
  const [height, width] = imageShape;
  const fits = (size, expected) => !(expected > 0) || size === expected;
  if (!fits(shape[1], height) || !fits(shape[2], width)) {
    throw new InputError(
      `${file}: images of shape [${shape}], expected [${height},${width}] or ` +
        `[N,${height},${width}] (the model's image size)`,
    );
  }
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
  // Checked here, not only by checkImages later, so that the message names the file.
  if (!(shape.length === 2 || shape.length === 3) || shape.includes(0)) {
    throw new InputError(
      `${file}: expected images of shape [N,H,W] or [H,W] with N, H, W ≥ 1, got [${shape}]`,
    );
  }
  return { data, shape: shape.length === 2 ? [1, ...shape] : shape };
}

module.exports = { PREPROCESS, checkImageShape, readImageArray, readImages };
