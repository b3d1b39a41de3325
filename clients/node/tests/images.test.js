'use strict';

// Photos: PNG and JPEG files are decoded only when their headers declare a size within Pillow's
// limit, the Python client's, so that a small file cannot make the CLI decode a huge image.

const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const zlib = require('node:zlib');
const { test } = require('node:test');
const { PNG } = require('pngjs');
const { InputError, ScratchnetError } = require('../lib/errors');
const { readImages } = require('../lib/images');
const { npyBytes, tempDir, writeIdx } = require('./support/files');

const dir = tempDir();
const MNIST = { imageShape: async () => [28, 28] };
const LIMIT = 89_478_485; // Pillow's Image.MAX_IMAGE_PIXELS

/**
 * PNG bytes: the signature, an IHDR of width x height (8-bit gray), `idat`, IEND. The CRCs are
 * left 0: a file this big must be refused from its header, before any chunk is checked.
 */
function pngBytes(width, height, idat) {
  const chunk = (type, data) => {
    const length = Buffer.alloc(4);
    length.writeUInt32BE(data.length);
    return Buffer.concat([length, Buffer.from(type), data, Buffer.alloc(4)]);
  };
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header[8] = 8; // bit depth; colour type 0 (gray), deflate, no filter, no interlace
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', header),
    chunk('IDAT', idat),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

/** JPEG bytes up to a baseline frame header (SOF0) of width x height, after an APP0 segment. */
function jpegHeader(width, height) {
  const app0 = Buffer.from([
    0xff,
    0xe0,
    0,
    16,
    ...Buffer.from('JFIF\0'),
    1,
    1,
    0,
    0,
    1,
    0,
    1,
    0,
    0,
  ]);
  const sof0 = Buffer.from([0xff, 0xc0, 0, 11, 8, 0, 0, 0, 0, 1, 1, 0x11, 0]);
  sof0.writeUInt16BE(height, 5);
  sof0.writeUInt16BE(width, 7);
  return Buffer.concat([Buffer.from([0xff, 0xd8]), app0, sof0, Buffer.from([0xff, 0xd9])]);
}

test('a photo of more pixels than the limit is refused from its header, naming it', async () => {
  // Neither file holds its pixels: decoding would fail differently, so these pass only if the
  // size is checked before decoding (a real 24000x24000 PNG is 600 KB and needs 12 GB decoded).
  const cases = [
    ['bomb.png', pngBytes(24000, 24000, zlib.deflateSync(Buffer.alloc(10))), '24000x24000'],
    ['bomb.jpg', jpegHeader(9500, 9500), '9500x9500'],
  ];
  for (const [name, bytes, size] of cases) {
    const file = path.join(dir, name);
    fs.writeFileSync(file, bytes);
    await assert.rejects(
      () => readImages(file, MNIST),
      (error) => {
        assert.ok(error instanceof ScratchnetError, String(error));
        const [width, height] = size.split('x').map(Number);
        assert.equal(
          error.message,
          `${file}: a ${size} image (${width * height} pixels), expected at most ${LIMIT} pixels`,
        );
        return true;
      },
    );
  }
});

test('a photo within the limit is decoded and put in MNIST form', async () => {
  const png = new PNG({ width: 40, height: 30 });
  png.data.fill(255); // white paper...
  for (let y = 10; y < 20; y += 1) {
    for (let x = 15; x < 25; x += 1) {
      png.data.fill(0, 4 * (y * 40 + x), 4 * (y * 40 + x) + 3); // ...with a black square
    }
  }
  const file = path.join(dir, 'square.png');
  fs.writeFileSync(file, PNG.sync.write(png));
  const images = await readImages(file, MNIST);
  assert.deepEqual(images.shape, [1, 28, 28]);
  assert.ok(images.data.some((pixel) => pixel > 0));
});

test('a truncated or damaged photo is one line naming the file and what was expected', async () => {
  const png = new PNG({ width: 40, height: 30 });
  png.data.fill(255);
  const whole = PNG.sync.write(png);
  const damaged = Buffer.from(whole);
  damaged.write('XXXX', 37, 'latin1'); // IDAT's type: a chunk pngjs does not know
  const expected = 'expected a complete PNG or JPEG photo, a .npy array or an IDX image file';
  const cases = [
    ['cut.png', whole.subarray(0, whole.length - 20), 'Unexpected end of input'],
    ['header-only.png', whole.subarray(0, 30), 'Unexpected end of input'],
    ['damaged.png', damaged, 'Unsupported critical chunk type XXXX'],
  ];
  for (const [name, bytes, reason] of cases) {
    const file = path.join(dir, name);
    fs.writeFileSync(file, bytes);
    await assert.rejects(
      () => readImages(file, MNIST),
      (error) => {
        assert.ok(error instanceof InputError, String(error));
        assert.equal(error.message, `${file}: not a readable PNG image (${reason}), ${expected}`);
        return true;
      },
    );
  }
});

test("arrays not of the model's image size are refused naming the file and both sizes", async () => {
  const idx = writeIdx(path.join(dir, 'small-idx3'), [2, 27, 28], new Uint8Array(2 * 27 * 28));
  const npy = path.join(dir, 'wide.npy');
  fs.writeFileSync(npy, npyBytes('|u1', [28, 30], new Uint8Array(28 * 30)));
  for (const [file, shape] of [
    [idx, '2,27,28'],
    [npy, '1,28,30'],
  ]) {
    await assert.rejects(
      () => readImages(file, MNIST),
      (error) => {
        assert.ok(error instanceof InputError, String(error));
        assert.equal(
          error.message,
          `${file}: images of shape [${shape}], expected [28,28] or [N,28,28] (the model's image size)`,
        );
        return true;
      },
    );
  }
  // The size comes from the model, whatever it is; one it leaves open (-1) takes any.
  assert.deepEqual(
    (await readImages(idx, { imageShape: async () => [27, 28] })).shape,
    [2, 27, 28],
  );
  assert.deepEqual(
    (await readImages(npy, { imageShape: async () => [-1, 30] })).shape,
    [1, 28, 30],
  );
});
