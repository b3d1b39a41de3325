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

/** .npy (version 1.0) bytes of a C-ordered array. */
function npyBytes(descr, shape, payload) {
  const shapeText = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`;
  let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${shapeText}, }`;
  // Pad so that magic (6) + version (2) + length (2) + header ends on a 64-byte boundary.
  header += ' '.repeat(63 - ((10 + header.length) % 64)) + '\n';
  const prefix = Buffer.alloc(10);
  Buffer.from('\x93NUMPY', 'latin1').copy(prefix);
  prefix[6] = 1;
  prefix.writeUInt16LE(header.length, 8);
  return Buffer.concat([prefix, Buffer.from(header, 'latin1'), Buffer.from(payload)]);
}

module.exports = { idxBytes, npyBytes, tempDir, writeIdx };
