'use strict';

// IDX files (the MNIST format), raw or gzip-compressed: a big-endian header — two zero bytes, an
// element-type byte, the number of dimensions, then one uint32 per dimension — and the elements.

const fs = require('node:fs');
const zlib = require('node:zlib');
const { InputError } = require('./errors');

const UNSIGNED_BYTE = 0x08;
const GZIP_MAGIC = [0x1f, 0x8b];

/**
 * A file's bytes, gunzipped when they start with the gzip magic number.
 * @param {string} file
 * @returns {Buffer}
 */
function readMaybeGzip(file) {
  let bytes;
  try {
    bytes = fs.readFileSync(file);
  } catch (error) {
    throw new InputError(`${file}: cannot read it (${error.code ?? error.message})`);
  }
  if (bytes[0] !== GZIP_MAGIC[0] || bytes[1] !== GZIP_MAGIC[1]) {
    return bytes;
  }
  try {
    return zlib.gunzipSync(bytes);
  } catch (error) {
    throw new InputError(`${file}: starts like gzip but does not decompress (${error.message})`);
  }
}

/**
 * Parse IDX bytes of unsigned bytes into {data, shape}.
 * @param {Buffer} bytes the whole (decompressed) file
 * @param {string} name the file's name, for messages
 * @returns {{data: Uint8Array, shape: number[]}}
 */
function parseIdx(bytes, name) {
  if (bytes.length < 4 || bytes[0] !== 0 || bytes[1] !== 0) {
    throw new InputError(`${name}: not an IDX file (expected the magic bytes 00 00 at the start)`);
  }
  if (bytes[2] !== UNSIGNED_BYTE) {
    throw new InputError(
      `${name}: IDX element type 0x${bytes[2].toString(16).padStart(2, '0')} is not supported; ` +
        'expected 0x08 (unsigned byte)',
    );
  }
  const dims = bytes[3];
  const headerSize = 4 + 4 * dims;
  if (dims === 0 || bytes.length < headerSize) {
    throw new InputError(
      `${name}: IDX header truncated (${dims} dimensions, ${bytes.length} bytes)`,
    );
  }
  const shape = [];
  for (let i = 0; i < dims; i += 1) {
    shape.push(bytes.readUInt32BE(4 + 4 * i));
  }
  const expected = shape.reduce((a, b) => a * b, 1);
  if (bytes.length - headerSize !== expected) {
    throw new InputError(
      `${name}: IDX shape [${shape}] needs ${expected} bytes of data, ` +
        `got ${bytes.length - headerSize}`,
    );
  }
  return { data: new Uint8Array(bytes.buffer, bytes.byteOffset + headerSize, expected), shape };
}

/**
 * Read an IDX file (raw or .gz) of any rank.
 * @param {string} file
 * @returns {{data: Uint8Array, shape: number[]}}
 */
function readIdx(file) {
  return parseIdx(readMaybeGzip(file), file);
}

/**
 * Read an IDX file of labels: one dimension.
 * @param {string} file
 * @returns {Uint8Array}
 */
function readIdxLabels(file) {
  const { data, shape } = readIdx(file);
  if (shape.length !== 1) {
    throw new InputError(`${file}: expected IDX labels of shape [N], got [${shape}]`);
  }
  return data;
}

module.exports = { parseIdx, readIdx, readIdxLabels, readMaybeGzip };
