'use strict';

// Image batches and their wire encodings: the one table from element type to typed array, the
// names each protocol gives it, and little-endian raw bytes in both directions.

const os = require('node:os');
const { ScratchnetError } = require('./errors');

/**
 * A batch of images: `data` holds product(shape) pixels, row-major; shape is [N, H, W].
 * Uint8Array pixels are 0–255; Float32Array pixels are already scaled to [0, 1].
 * @typedef {{data: Uint8Array | Float32Array, shape: number[]}} ImageBatch
 */

/** Element types: typed array, bytes per element, scratchnet.v1 DataType, OIP datatype. */
const DTYPES = {
  uint8: { array: Uint8Array, itemsize: 1, v1: 'DATA_TYPE_UINT8', v2: 'UINT8' },
  float32: { array: Float32Array, itemsize: 4, v1: 'DATA_TYPE_FLOAT32', v2: 'FP32' },
};

/** OIP output datatypes this client decodes from raw_output_contents. */
const RAW_READERS = {
  INT64: { itemsize: 8, read: (buf, offset) => Number(buf.readBigInt64LE(offset)), array: Array },
  FP32: { itemsize: 4, read: (buf, offset) => buf.readFloatLE(offset), array: Float32Array },
};

const PIXEL_MAX = 255;
/** What a model that declares no input_scale takes: pixel / 255, as the server assumes. */
const INPUT_SCALE = 1 / PIXEL_MAX;
const LITTLE_ENDIAN = os.endianness() === 'LE';

/**
 * The element type name ("uint8" or "float32") of a batch's typed array.
 * @param {ImageBatch} images
 * @returns {'uint8' | 'float32'}
 */
function dtypeOf(images) {
  for (const [name, { array }] of Object.entries(DTYPES)) {
    if (images.data instanceof array) {
      return /** @type {'uint8' | 'float32'} */ (name);
    }
  }
  const got = images.data?.constructor?.name ?? typeof images.data;
  throw new ScratchnetError(`images: expected a Uint8Array or Float32Array, got ${got}`);
}

/** Number of elements of a shape. @param {number[]} shape @returns {number} */
function product(shape) {
  return shape.reduce((a, b) => a * b, 1);
}

/**
 * Check that a batch is [N, H, W] with N ≥ 1 and as many pixels as its shape says.
 * @param {ImageBatch} images
 * @returns {ImageBatch} the same batch
 */
function checkImages(images) {
  dtypeOf(images);
  const { shape } = images;
  if (
    !Array.isArray(shape) ||
    shape.length !== 3 ||
    !shape.every((d) => Number.isInteger(d) && d > 0)
  ) {
    throw new ScratchnetError(
      `images: expected shape [N,H,W] of positive integers, got ${JSON.stringify(shape)}`,
    );
  }
  if (images.data.length !== product(shape)) {
    throw new ScratchnetError(
      `images: shape [${shape}] needs ${product(shape)} pixels, got ${images.data.length}`,
    );
  }
  return images;
}

/**
 * A model's `input_scale` metadata as a number (float input = uint8 pixel × input_scale), or
 * undefined when it declares none; a value that is not a positive number is refused.
 * @param {string | undefined} text the metadata value
 * @param {string} where names the model in the message
 * @returns {number | undefined}
 */
function parseInputScale(text, where) {
  if (text === undefined) {
    return undefined;
  }
  const scale = Number(text);
  if (!(Number.isFinite(scale) && scale > 0) || text.trim() === '') {
    throw new ScratchnetError(
      `${where}: metadata input_scale is '${text}', expected a positive number`,
    );
  }
  return scale;
}

/**
 * The shape a batch of images [N, H, W] takes for a model whose input has `inputDims` (batch
 * first), as the server lays out scratchnet.v1 images: [N, 1, H, W] for a channel of one,
 * [N, H·W] for a flat input, else [N, H, W]. The pixels are row-major in every layout, so only
 * the shape changes.
 * @param {number[]} shape [N, H, W]
 * @param {Array<number|string>} inputDims the model input's dims, e.g. [-1, 1, 28, 28]
 * @returns {number[]}
 */
function inModelLayout(shape, inputDims) {
  const [n, height, width] = shape;
  if (inputDims.length === 4) return [n, 1, height, width];
  if (inputDims.length === 2) return [n, height * width];
  return shape;
}

/**
 * The batch with pixels of element type `dtype`: uint8 → float32 multiplies by the model's
 * `inputScale` (1/255 unless it declares another); float32 → uint8 is refused, since it would
 * lose precision.
 * @param {ImageBatch} images
 * @param {'uint8' | 'float32'} dtype
 * @param {number} [inputScale] the model's input_scale (default 1/255)
 * @returns {ImageBatch}
 */
function convertImages(images, dtype, inputScale = INPUT_SCALE) {
  const from = dtypeOf(images);
  if (from === dtype) {
    return images;
  }
  if (from === 'float32') {
    throw new ScratchnetError(
      `images: the model expects ${dtype} pixels, got float32 ones; pass uint8 pixels 0–255`,
    );
  }
  // As the server scales (scratchnet.contract.scale_uint8): pixel / float32(1 / input_scale),
  // the double quotient rounded once to float32 on assignment, as numpy's float32 division.
  const divisor = Math.fround(1 / inputScale);
  const scaled = new Float32Array(images.data.length);
  for (let i = 0; i < scaled.length; i += 1) {
    scaled[i] = images.data[i] / divisor;
  }
  return { data: scaled, shape: images.shape };
}

/**
 * Raw little-endian bytes of a typed array (a view, without copying, on little-endian machines).
 * @param {Uint8Array | Float32Array} data
 * @returns {Buffer}
 */
function toRawBytes(data) {
  if (data instanceof Uint8Array || LITTLE_ENDIAN) {
    return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  }
  const out = Buffer.alloc(data.length * 4);
  data.forEach((value, i) => out.writeFloatLE(value, i * 4));
  return out;
}

/**
 * Rows [start, end) of a batch, sharing its memory.
 * @param {ImageBatch} images
 * @param {number} start
 * @param {number} end
 * @returns {ImageBatch}
 */
function sliceImages(images, start, end) {
  const [, height, width] = images.shape;
  const size = height * width;
  return {
    data: images.data.subarray(start * size, end * size),
    shape: [end - start, height, width],
  };
}

/**
 * Decode one OIP output from its raw bytes (INT64 → Array of numbers, FP32 → Float32Array).
 * @param {string} name output name, for messages
 * @param {string} datatype OIP datatype
 * @param {number[]} shape
 * @param {Buffer} raw the matching raw_output_contents entry
 * @returns {number[] | Float32Array}
 */
function decodeRaw(name, datatype, shape, raw) {
  const reader = RAW_READERS[datatype];
  if (!reader) {
    throw new ScratchnetError(
      `output '${name}': datatype ${datatype} is not supported; ` +
        `expected one of ${Object.keys(RAW_READERS).join(', ')}`,
    );
  }
  const count = product(shape);
  if (!raw || raw.length !== count * reader.itemsize) {
    throw new ScratchnetError(
      `output '${name}': shape [${shape}] of ${datatype} needs ${count * reader.itemsize} ` +
        `bytes, got ${raw ? raw.length : 'none'}`,
    );
  }
  const out = new reader.array(count);
  for (let i = 0; i < count; i += 1) {
    out[i] = reader.read(raw, i * reader.itemsize);
  }
  return out;
}

/**
 * Index of the largest value of each row of a row-major [N, C] matrix (first one on ties).
 * @param {ArrayLike<number>} values
 * @param {number} columns C
 * @returns {number[]}
 */
function argmaxRows(values, columns) {
  const labels = [];
  for (let start = 0; start < values.length; start += columns) {
    let best = 0;
    for (let c = 1; c < columns; c += 1) {
      if (values[start + c] > values[start + best]) {
        best = c;
      }
    }
    labels.push(best);
  }
  return labels;
}

module.exports = {
  DTYPES,
  INPUT_SCALE,
  PIXEL_MAX,
  argmaxRows,
  checkImages,
  convertImages,
  decodeRaw,
  dtypeOf,
  inModelLayout,
  parseInputScale,
  sliceImages,
  toRawBytes,
};
