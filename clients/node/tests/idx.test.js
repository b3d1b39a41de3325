'use strict';

const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { test } = require('node:test');
const { parseIdx, readIdx, readIdxLabels } = require('../lib/idx');
const { readImages } = require('../lib/images');
const { loadMnistSplit } = require('../lib/mnist');
const { InputError, ScratchnetError } = require('../lib/errors');
const { idxBytes, npyBytes, npyElements, tempDir, writeIdx } = require('./support/files');

const REPO = path.resolve(__dirname, '..', '..', '..');
const dir = tempDir();
const pixels = Uint8Array.from({ length: 2 * 3 * 4 }, (_, i) => i * 10);

test('raw and gzip IDX files read to the same shape and pixels', () => {
  const raw = writeIdx(path.join(dir, 'raw-idx3'), [2, 3, 4], pixels);
  const gz = writeIdx(path.join(dir, 'packed-idx3.gz'), [2, 3, 4], pixels, { gzip: true });
  for (const file of [raw, gz]) {
    const { data, shape } = readIdx(file);
    assert.deepEqual(shape, [2, 3, 4]);
    assert.deepEqual(Array.from(data), Array.from(pixels));
  }
});

test('a 2-D IDX image becomes a batch of one', async () => {
  const file = writeIdx(path.join(dir, 'one-image'), [3, 4], pixels.subarray(0, 12));
  const images = await readImages(file);
  assert.deepEqual(images.shape, [1, 3, 4]);
  assert.ok(images.data instanceof Uint8Array);
});

test('malformed IDX files are refused with a one-line message naming the file', () => {
  const cases = [
    [Buffer.from([1, 2, 3, 4]), /not an IDX file/],
    [idxBytes([2], [1, 2], 0x0d), /element type 0x0d is not supported; expected 0x08/],
    [Buffer.from([0, 0, 8, 3, 0, 0]), /header truncated/],
    [idxBytes([2, 3, 4], pixels.subarray(0, 20)), /needs 24 bytes of data, got 20/],
  ];
  for (const [bytes, pattern] of cases) {
    assert.throws(
      () => parseIdx(bytes, 'bad.idx'),
      (error) => {
        assert.ok(error instanceof ScratchnetError);
        assert.match(error.message, /^bad\.idx: /);
        assert.match(error.message, pattern);
        assert.doesNotMatch(error.message, /\n/);
        return true;
      },
    );
  }
});

test('a missing file and a corrupt gzip file are ScratchnetErrors', () => {
  assert.throws(() => readIdx(path.join(dir, 'nope')), /nope: cannot read it \(ENOENT\)/);
  const corrupt = path.join(dir, 'corrupt.gz');
  fs.writeFileSync(corrupt, Buffer.from([0x1f, 0x8b, 8, 0, 1, 2, 3]));
  assert.throws(() => readIdx(corrupt), /starts like gzip but does not decompress/);
});

test('labels must be one-dimensional and images at most three', async () => {
  const images = writeIdx(path.join(dir, 'images-idx3'), [2, 3, 4], pixels);
  assert.throws(() => readIdxLabels(images), /expected IDX labels of shape \[N\], got \[2,3,4\]/);
  const four = writeIdx(path.join(dir, 'four-d'), [1, 2, 3, 4], pixels);
  await assert.rejects(
    () => readImages(four),
    /four-d: expected images of shape \[N,H,W\] or \[H,W\] with N, H, W ≥ 1, got \[1,2,3,4\]/,
  );
});

test('files of zero images, or of images of size 0, are refused naming the file', async () => {
  const files = [
    writeIdx(path.join(dir, 'no-images-idx3'), [0, 28, 28], []),
    writeIdx(path.join(dir, 'empty-image-idx2'), [28, 0], []),
  ];
  const npy = path.join(dir, 'no-images.npy');
  fs.writeFileSync(npy, npyBytes('|u1', [0, 28, 28], []));
  files.push(npy);
  for (const file of files) {
    await assert.rejects(
      () => readImages(file),
      (error) => {
        assert.ok(error instanceof ScratchnetError);
        assert.ok(error.message.startsWith(`${file}: expected images of shape`), error.message);
        assert.match(error.message, /with N, H, W ≥ 1, got \[(0,28,28|28,0)\]$/);
        return true;
      },
    );
  }
  // The test set of an MNIST folder too: its images file is named.
  const folder = tempDir();
  const empty = writeIdx(path.join(folder, 't10k-images-idx3-ubyte'), [0, 28, 28], []);
  writeIdx(path.join(folder, 't10k-labels-idx1-ubyte'), [0], []);
  assert.throws(
    () => loadMnistSplit(folder, 'test'),
    (error) => error.message.startsWith(`${empty}: expected images of shape`),
  );
});

/** Write a .npy of `values` as elements of `descr`, shaped [2, 3, 4] unless said; its path. */
function writeNpy(descr, values, shape = [2, 3, 4]) {
  const file = path.join(
    dir,
    `${descr.replace(/[<>|]/g, (c) => ({ '<': 'le', '>': 'be', '|': '' })[c])}.npy`,
  );
  fs.writeFileSync(file, npyBytes(descr, shape, npyElements(descr, values)));
  return file;
}

test('.npy files of integers of any size and byte order read as uint8 pixels', async () => {
  for (const descr of ['|u1', '|i1', '<u2', '>u2', '<i2', '>i4', '<u4', '<i8', '>u8']) {
    const values = Array.from(pixels, (p) => (descr.endsWith('8') ? BigInt(p) : p));
    const file = writeNpy(descr, descr === '|i1' ? values.map((p) => p % 128) : values);
    const read = await readImages(file);
    assert.ok(read.data instanceof Uint8Array, descr);
    const expected = descr === '|i1' ? pixels.map((p) => p % 128) : pixels;
    assert.deepEqual(read, { data: expected, shape: [2, 3, 4] }, descr);
  }
});

test('.npy files of floats: exactly k/255 read as uint8 k, others as float32 (any byte order)', async () => {
  for (const descr of ['<f4', '>f4', '<f8', '>f8']) {
    const exact = await readImages(
      writeNpy(
        descr,
        Array.from(pixels, (p) => p / 255),
      ),
    );
    assert.deepEqual(exact, { data: pixels, shape: [2, 3, 4] }, descr);
    const values = [0.1, 0.5, 1, 0, 2 / 3, 0.25];
    const other = await readImages(writeNpy(descr, values, [2, 3]));
    assert.ok(other.data instanceof Float32Array, descr);
    assert.deepEqual(Array.from(other.data), values.map(Math.fround), descr);
  }
  // float16 by its bits: 0, 1 and 128/255 (0x3804, as numpy rounds it) are exact; 0.5 is not.
  for (const descr of ['<f2', '>f2']) {
    const exact = await readImages(writeNpy(descr, [0, 0x3c00, 0x3804], [1, 3]));
    assert.deepEqual(exact, { data: Uint8Array.from([0, 255, 128]), shape: [1, 1, 3] }, descr);
    const other = await readImages(writeNpy(descr, [0x3800, 0x3c00, 0, 0x2e66], [2, 2]));
    assert.deepEqual(Array.from(other.data), [0.5, 1, 0, 0.0999755859375], descr);
  }
});

test('.npy pixels out of range, dtypes without pixels, Fortran order: one line naming the file', async () => {
  const accepted =
    'expected integers (u1, u2, u4, u8, i1, i2, i4, i8) of pixels 0..255 or floats (f2, f4, f8) ' +
    'in [0, 1], either byte order';
  const cases = [
    [
      writeNpy('<i2', [0, -3, 300, 7], [2, 2]),
      'integer pixels range over -3..300, expected 0..255',
    ],
    [
      writeNpy('>u8', [1n, 2n ** 64n - 1n], [1, 2]),
      'integer pixels range over 1..18446744073709551615, expected 0..255',
    ],
    [writeNpy('<f8', [0.5, NaN], [1, 2]), 'pixels must be finite (found NaN or inf)'],
    [writeNpy('>f4', [-Infinity, 0], [1, 2]), 'pixels must be finite (found NaN or inf)'],
    [
      writeNpy('<f4', [0, 1.5, 0.25, 1], [2, 2]),
      'float pixels range over [0, 1.5], expected [0, 1] (or uint8 0..255)',
    ],
  ];
  for (const [descr, bytes] of [
    ['|b1', Buffer.from([1])],
    ['<c8', Buffer.alloc(8)],
    ['<U2', Buffer.alloc(8)],
  ]) {
    const file = path.join(dir, `kind-${descr.slice(1)}.npy`);
    fs.writeFileSync(file, npyBytes(descr, [1, 1], bytes));
    cases.push([file, `.npy of dtype '${descr}', ${accepted}`]);
  }
  const structured = path.join(dir, 'structured.npy');
  fs.writeFileSync(structured, npyBytes("[('a', '<f4')]", [1, 1], Buffer.alloc(4)));
  cases.push([structured, `.npy of a structured dtype, ${accepted}`]);
  const fortran = path.join(dir, 'fortran.npy');
  const ordered = npyBytes('|u1', [2, 2], [1, 2, 3, 4])
    .toString('latin1')
    .replace('False', 'True ');
  fs.writeFileSync(fortran, Buffer.from(ordered, 'latin1'));
  cases.push([
    fortran,
    '.npy array is in Fortran order; expected C order (numpy.ascontiguousarray)',
  ]);
  for (const [file, message] of cases) {
    await assert.rejects(
      () => readImages(file),
      (error) => {
        assert.ok(error instanceof InputError, String(error));
        assert.equal(error.message, `${file}: ${message}`);
        return true;
      },
    );
  }
});

test('the bundled MNIST test split: 10000 images with one label each', () => {
  const { images, labels } = loadMnistSplit(path.join(REPO, 'data', 'mnist'), 'test');
  assert.equal(images.shape[0], 10000);
  assert.equal(images.shape.length, 3);
  assert.equal(labels.length, 10000);
  assert.ok(labels.every((label) => label < 10));
});

test('an MNIST folder with missing files or mismatched counts is refused', () => {
  const folder = tempDir();
  assert.throws(
    () => loadMnistSplit(folder, 'test'),
    /no t10k-images-idx3-ubyte or t10k-images-idx3-ubyte\.gz/,
  );
  writeIdx(path.join(folder, 't10k-images-idx3-ubyte'), [2, 3, 4], pixels);
  writeIdx(path.join(folder, 't10k-labels-idx1-ubyte.gz'), [3], [1, 2, 3], { gzip: true });
  assert.throws(() => loadMnistSplit(folder, 'test'), /3 labels for 2 images/);
  assert.throws(() => loadMnistSplit(folder, 'valid'), /split 'valid': expected 'test' or 'train'/);
  assert.throws(() => loadMnistSplit(path.join(folder, 'absent'), 'test'), /not a folder/);
});
