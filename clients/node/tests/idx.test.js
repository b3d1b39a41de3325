'use strict';

const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { test } = require('node:test');
const { parseIdx, readIdx, readIdxLabels } = require('../lib/idx');
const { readImages } = require('../lib/images');
const { loadMnistSplit } = require('../lib/mnist');
const { ScratchnetError } = require('../lib/errors');
const { idxBytes, npyBytes, tempDir, writeIdx } = require('./support/files');

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

test('.npy files of uint8 and float32 read like IDX', async () => {
  const u8 = path.join(dir, 'u8.npy');
  fs.writeFileSync(u8, npyBytes('|u1', [2, 3, 4], pixels));
  assert.deepEqual(await readImages(u8), { data: pixels, shape: [2, 3, 4] });
  const values = Float32Array.from(pixels, (p) => p / 255);
  const f32 = path.join(dir, 'f32.npy');
  fs.writeFileSync(f32, npyBytes('<f4', [2, 3, 4], Buffer.from(values.buffer)));
  const read = await readImages(f32);
  assert.ok(read.data instanceof Float32Array);
  assert.deepEqual(Array.from(read.data), Array.from(values));
});

test('.npy files of other dtypes or Fortran order are refused', async () => {
  const f64 = path.join(dir, 'f64.npy');
  fs.writeFileSync(f64, npyBytes('<f8', [1], Buffer.alloc(8)));
  await assert.rejects(() => readImages(f64), /dtype '<f8' is not supported; expected uint8 or float32/);
  const fortran = path.join(dir, 'fortran.npy');
  const text = npyBytes('|u1', [2, 2], [1, 2, 3, 4]).toString('latin1').replace('False', 'True ');
  fs.writeFileSync(fortran, Buffer.from(text, 'latin1'));
  await assert.rejects(() => readImages(fortran), /Fortran order/);
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
