'use strict';

// Writers for test inputs: IDX and .npy files built byte by byte, so the readers are checked
// against the formats' definitions rather than against themselves.

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const zlib = require('node:zlib');

const made = [];
process.on('exit', () => made.forEach((dir) => fs.rmSync(dir, { recursive: true, force: true })));

/** A fresh temporary folder, removed when the process exits. */
function tempDir() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'scratchnet-node-'));
  made.push(dir);
  return dir;
}

/** IDX bytes: 00 00 <type> <dims>, big-endian uint32 dimensions, then the data. */
function idxBytes(shape, data, type = 0x08) {
  const header = Buffer.alloc(4 + 4 * shape.length);
  header[2] = type;
  header[3] = shape.length;
  shape.forEach((d, i) => header.writeUInt32BE(d, 4 + 4 * i));
  return Buffer.concat([header, Buffer.from(data)]);
}

/** Write an IDX file, gzip-compressed when asked. */
function writeIdx(file, shape, data, { gzip = false } = {}) {
  const bytes = idxBytes(shape, data);
  fs.writeFileSync(file, gzip ? zlib.gzipSync(bytes) : bytes);
  return file;
}

/** .npy (version 1.0) bytes of a C-ordered array; a structured `descr` is a list: "[('a', '<f4')]". */
function npyBytes(descr, shape, payload) {
  const shapeText = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`;
  const descrText = descr.startsWith('[') ? descr : `'${descr}'`;
  let header = `{'descr': ${descrText}, 'fortran_order': False, 'shape': ${shapeText}, }`;
  // Pad so that magic (6) + version (2) + length (2) + header ends on a 64-byte boundary.
  header += ' '.repeat(63 - ((10 + header.length) % 64)) + '\n';
  const prefix = Buffer.alloc(10);
  Buffer.from('\x93NUMPY', 'latin1').copy(prefix);
  prefix[6] = 1;
  prefix.writeUInt16LE(header.length, 8);
  return Buffer.concat([prefix, Buffer.from(header, 'latin1'), Buffer.from(payload)]);
}

/**
 * The bytes of `values` as .npy elements of `descr` ('>i4', '<f8', ...): numbers, BigInts for
 * 8-byte integers, and the bits of each float16 for 'f2'.
 */
function npyElements(descr, values) {
  const little = descr[0] !== '>';
  const kind = descr.slice(1);
  const size = Number(kind.slice(1));
  const setter = {
    u1: 'setUint8',
    i1: 'setInt8',
    u2: 'setUint16',
    i2: 'setInt16',
    u4: 'setUint32',
    i4: 'setInt32',
    u8: 'setBigUint64',
    i8: 'setBigInt64',
    f2: 'setUint16',
    f4: 'setFloat32',
    f8: 'setFloat64',
  }[kind];
  const bytes = Buffer.alloc(values.length * size);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  values.forEach((value, i) => view[setter](i * size, value, little));
  return bytes;
}

module.exports = { idxBytes, npyBytes, npyElements, tempDir, writeIdx };
