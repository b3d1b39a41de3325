'use strict';

// NumPy .npy files (what numpy.save writes): a magic string, a version, a little header naming
// the dtype, the memory order and the shape, then the elements. Pixels are taken as the Python
// client takes them (scratchnet.datasets.as_pixels): integers of any size and byte order must lie
// in 0..255 and become uint8; floats of 2, 4 or 8 bytes must be finite and lie in [0, 1], and
// become the uint8 k where every one is exactly k/255 (so uint8 goes on the wire), else float32.

const { InputError } = require('./errors');

const MAGIC = Buffer.from('\x93NUMPY', 'latin1');
// The typed array of each kind and size of element a descriptor ('<f8') may name; float16 is
// read as its bits.
const ARRAYS = {
  u1: Uint8Array,
  i1: Int8Array,
  u2: Uint16Array,
  i2: Int16Array,
  u4: Uint32Array,
  i4: Int32Array,
  u8: BigUint64Array, // BigInts: exact in messages
  i8: BigInt64Array,
  f2: Uint16Array,
  f4: Float32Array,
  f8: Float64Array,
};
const ACCEPTED =
  'integers (u1, u2, u4, u8, i1, i2, i4, i8) of pixels 0..255 or floats (f2, f4, f8) in [0, 1], ' +
  'either byte order';
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
// The float32 nearest to each k/255: what exact uint8 pixels k look like as floats.
const FLOAT32_LEVELS = Float32Array.from({ length: 256 }, (_, k) => k / 255);

/**
 * Whether bytes start like a .npy file.
 * @param {Buffer} bytes
 * @returns {boolean}
 */
function isNpy(bytes) {
  return bytes.length >= MAGIC.length && bytes.subarray(0, MAGIC.length).equals(MAGIC);
}

/**
 * Parse a C-ordered .npy array of pixels: integers 0..255 as uint8, floats in [0, 1] as uint8
 * when exactly k/255, else as float32 (see the top of this file).
 * @param {Buffer} bytes the whole file
 * @param {string} name the file's name, for messages
 * @returns {{data: Uint8Array | Float32Array, shape: number[]}}
 */
function parseNpy(bytes, name) {
  if (!isNpy(bytes) || bytes.length < 10) {
    throw new InputError(`${name}: not a .npy file (expected the magic string \\x93NUMPY)`);
  }
  const major = bytes[6];
  const lengthSize = major === 1 ? 2 : 4;
  const headerLength = major === 1 ? bytes.readUInt16LE(8) : bytes.readUInt32LE(8);
  const dataStart = 8 + lengthSize + headerLength;
  const header = bytes.toString('latin1', 8 + lengthSize, dataStart);
  // A structured dtype's descriptor is a list of fields.
  const descr = /'descr':\s*(?:'([^']*)'|(\[))/.exec(header);
  const fortran = /'fortran_order':\s*(True|False)/.exec(header)?.[1];
  const shapeText = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1];
  if (descr === null || fortran === undefined || shapeText === undefined) {
    throw new InputError(`${name}: malformed .npy header ${JSON.stringify(header.trim())}`);
  }
  const [, order, kind] = /^([<>|=]?)([a-z]\d+)$/.exec(descr[1] ?? '') ?? [];
  const ArrayType = ARRAYS[kind];
  if (!ArrayType) {
    const found = descr[1] === undefined ? 'a structured dtype' : `dtype '${descr[1]}'`;
    throw new InputError(`${name}: .npy of ${found}, expected ${ACCEPTED}`);
  }
  if (fortran === 'True') {
    throw new InputError(
      `${name}: .npy array is in Fortran order; expected C order (numpy.ascontiguousarray)`,
    );
  }
  const shape = shapeText
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map(Number);
  const count = shape.reduce((a, b) => a * b, 1);
  const size = ArrayType.BYTES_PER_ELEMENT;
  const available = bytes.length - dataStart;
  if (available !== count * size) {
    throw new InputError(
      `${name}: .npy shape (${shape}) needs ${count * size} bytes of data, got ${available}`,
    );
  }
  // A copy, aligned for the typed array, in this machine's byte order.
  const copy = new Uint8Array(bytes.subarray(dataStart));
  if (size > 1 && (order === '<' || order === '>') && (order === '<') !== LITTLE_ENDIAN) {
    Buffer.from(copy.buffer)[`swap${8 * size}`]();
  }
  const values = new ArrayType(copy.buffer);
  if (kind === 'u1') {
    return { data: values, shape };
  }
  const data = kind.startsWith('f')
    ? floatPixels(kind === 'f2' ? Float32Array.from(values, halfToNumber) : values, kind, name)
    : integerPixels(values, name);
  return { data, shape };
}

/** Integers as uint8 pixels; InputError unless all lie in 0..255. */
function integerPixels(values, name) {
  const pixels = new Uint8Array(values.length);
  // BigInts (8-byte elements) compare with numbers: the extremes stay exact for the message.
  let lowest = Infinity;
  let highest = -Infinity;
  for (let i = 0; i < values.length; i += 1) {
    const value = values[i];
    lowest = value < lowest ? value : lowest;
    highest = value > highest ? value : highest;
    pixels[i] = Number(value);
  }
  if (lowest < 0 || highest > 255) {
    throw new InputError(
      `${name}: integer pixels range over ${lowest}..${highest}, expected 0..255`,
    );
  }
  return pixels;
}

/**
 * Floats (of the file's `kind`, f2 already widened), finite and in [0, 1], as uint8 k when every
 * one is exactly k/255 at the file's precision (as numpy computes k/255 in it), else as float32.
 */
function floatPixels(values, kind, name) {
  if (values.length === 0) {
    return new Float32Array(0);
  }
  let lowest = Infinity;
  let highest = -Infinity;
  let finite = true;
  for (let i = 0; i < values.length; i += 1) {
    const value = values[i];
    lowest = value < lowest ? value : lowest;
    highest = value > highest ? value : highest;
    finite &&= Number.isFinite(value);
  }
  if (!finite) {
    throw new InputError(`${name}: pixels must be finite (found NaN or inf)`);
  }
  if (lowest < 0 || highest > 1) {
    throw new InputError(
      `${name}: float pixels range over [${lowest}, ${highest}], expected [0, 1] ` +
        '(or uint8 0..255)',
    );
  }
  // k/255 at the file's precision: float32 and float64 have one each, but numpy's two ways to
  // float16 (from k/255 in float64, or dividing in float16 through float32) can round apart.
  const [first, second = first] = {
    f2: [(k) => halfNearest(k / 255), (k) => halfNearest(FLOAT32_LEVELS[k])],
    f4: [(k) => FLOAT32_LEVELS[k]],
    f8: [(k) => k / 255],
  }[kind].map((level) => Float64Array.from({ length: 256 }, (_, k) => level(k)));
  const pixels = new Uint8Array(values.length);
  for (let i = 0; i < values.length; i += 1) {
    const value = values[i];
    const k = Math.round(value * 255);
    if (value !== first[k] && value !== second[k]) {
      return values instanceof Float32Array ? values : Float32Array.from(values);
    }
    pixels[i] = k;
  }
  return pixels;
}

/** The number an IEEE 754 half-precision float's bits stand for. */
function halfToNumber(bits) {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >> 10) & 0x1f;
  const fraction = bits & 0x3ff;
  if (exponent === 0x1f) {
    return fraction ? NaN : sign * Infinity;
  }
  // Subnormals (exponent 0) have no implicit leading 1.
  return exponent === 0
    ? sign * fraction * 2 ** -24
    : sign * (1 + fraction / 1024) * 2 ** (exponent - 15);
}

/** `value` (in [0, 1]) rounded to the nearest half-precision float, ties to even, as numpy. */
function halfNearest(value) {
  let exponent = value >= 2 ** -14 ? Math.floor(Math.log2(value)) : -14;
  if (2 ** exponent > value && exponent > -14) {
    exponent -= 1; // log2 rounded up just below a power of two
  }
  const step = 2 ** (exponent - 10); // 11 significant bits
  const scaled = value / step;
  let rounded = Math.round(scaled);
  if (rounded - scaled === 0.5 && rounded % 2 === 1) {
    rounded -= 1; // a tie, which Math.round sends up: to even instead
  }
  return rounded * step;
}

module.exports = { isNpy, parseNpy };
