'use strict';

// NumPy .npy files (what numpy.save writes): a magic string, a version, a little header naming
// the dtype, the memory order and the shape, then the elements.

const os = require('node:os');
const { InputError } = require('./errors');

const MAGIC = Buffer.from('\x93NUMPY', 'latin1');
// dtype descriptors this reader accepts, each mapped to a typed array.
const DESCRIPTORS = { '|u1': Uint8Array, '<u1': Uint8Array, '<f4': Float32Array };

/**
 * Whether bytes start like a .npy file.
 * @param {Buffer} bytes
 * @returns {boolean}
 */
function isNpy(bytes) {
  return bytes.length >= MAGIC.length && bytes.subarray(0, MAGIC.length).equals(MAGIC);
}

/**
 * Parse a C-ordered uint8 or little-endian float32 .npy array.
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
  const descr = /'descr':\s*'([^']*)'/.exec(header)?.[1];
  const fortran = /'fortran_order':\s*(True|False)/.exec(header)?.[1];
  const shapeText = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1];
  if (descr === undefined || fortran === undefined || shapeText === undefined) {
    throw new InputError(`${name}: malformed .npy header ${JSON.stringify(header.trim())}`);
  }
  const ArrayType = DESCRIPTORS[descr];
  if (!ArrayType) {
    throw new InputError(
      `${name}: .npy dtype '${descr}' is not supported; expected uint8 or float32 (little-endian)`,
    );
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
  const available = bytes.length - dataStart;
  if (available !== count * ArrayType.BYTES_PER_ELEMENT) {
    throw new InputError(
      `${name}: .npy shape (${shape}) needs ${count * ArrayType.BYTES_PER_ELEMENT} bytes ` +
        `of data, got ${available}`,
    );
  }
  // Copy: the data offset need not be aligned for a Float32Array view.
  const data = new ArrayType(count);
  Buffer.from(data.buffer).set(bytes.subarray(dataStart));
  if (ArrayType === Float32Array && os.endianness() !== 'LE') {
    data.forEach((_, i) => {
      data[i] = bytes.readFloatLE(dataStart + 4 * i);
    });
  }
  return { data, shape };
}

module.exports = { isNpy, parseNpy };
