'use strict';

const assert = require('node:assert/strict');
const { test } = require('node:test');
const {
  argmaxRows,
  checkImages,
  convertImages,
  decodeRaw,
  dtypeOf,
  parseInputScale,
  sliceImages,
  toRawBytes,
} = require('../lib/tensor');
const { RpcError, ScratchnetError, fromGrpcError } = require('../lib/errors');

const images = { data: Uint8Array.from([0, 51, 255, 128, 1, 2]), shape: [2, 1, 3] };

test('uint8 pixels become float32 pixel/255, rounded like numpy', () => {
  const scaled = convertImages(images, 'float32');
  assert.ok(scaled.data instanceof Float32Array);
  assert.deepEqual(scaled.shape, [2, 1, 3]);
  // numpy: (x / 255).astype(float32) rounds the float64 quotient once, as Math.fround does.
  assert.deepEqual(
    Array.from(scaled.data),
    Array.from(images.data, (p) => Math.fround(p / 255)),
  );
  assert.equal(scaled.data[2], 1);
  assert.equal(convertImages(images, 'uint8'), images);
});

test("uint8 pixels are scaled by the model's input_scale, as the server scales them", () => {
  // scratchnet.contract.scale_uint8: pixel / float32(1 / input_scale), in float32.
  const doubled = convertImages(images, 'float32', 2 / 255);
  assert.deepEqual(
    Array.from(doubled.data),
    Array.from(images.data, (p) => Math.fround(p / Math.fround(255 / 2))),
  );
  assert.equal(doubled.data[2], 2);
  const halved = convertImages(images, 'float32', 0.5);
  assert.deepEqual(Array.from(halved.data), [0, 25.5, 127.5, 64, 0.5, 1]);
  assert.equal(parseInputScale(undefined, 'm'), undefined);
  assert.equal(parseInputScale('0.5', 'm'), 0.5);
  for (const text of ['', ' ', '0', '-1', 'NaN', 'Infinity', 'x']) {
    assert.throws(
      () => parseInputScale(text, "model 'm'"),
      new RegExp(`^ScratchnetError: model 'm': metadata input_scale is '${text}', expected a `),
    );
  }
});

test('float32 pixels are not silently turned into uint8', () => {
  const floats = { data: new Float32Array(6), shape: [2, 1, 3] };
  assert.throws(() => convertImages(floats, 'uint8'), /expects uint8 pixels, got float32/);
});

test('raw bytes are little-endian: uint8 as is, float32 four bytes each', () => {
  assert.deepEqual([...toRawBytes(images.data)], [0, 51, 255, 128, 1, 2]);
  const floats = Float32Array.from([1, -2.5]);
  const raw = toRawBytes(floats);
  assert.equal(raw.length, 8);
  assert.equal(raw.readFloatLE(0), 1);
  assert.equal(raw.readFloatLE(4), -2.5);
  // A subarray's bytes start at its own offset.
  assert.deepEqual([...toRawBytes(images.data.subarray(3))], [128, 1, 2]);
});

test('slices share memory and keep H and W', () => {
  const second = sliceImages(images, 1, 2);
  assert.deepEqual(second.shape, [1, 1, 3]);
  assert.deepEqual([...second.data], [128, 1, 2]);
  assert.equal(second.data.buffer, images.data.buffer);
});

test('batches must be [N,H,W] typed arrays whose length matches the shape', () => {
  assert.equal(dtypeOf(images), 'uint8');
  assert.throws(
    () => dtypeOf({ data: [1, 2], shape: [1, 1, 2] }),
    /expected a Uint8Array or Float32Array, got Array/,
  );
  assert.throws(
    () => checkImages({ data: new Uint8Array(6), shape: [6] }),
    /expected shape \[N,H,W\]/,
  );
  assert.throws(
    () => checkImages({ data: new Uint8Array(6), shape: [0, 2, 3] }),
    /positive integers/,
  );
  assert.throws(
    () => checkImages({ data: new Uint8Array(5), shape: [1, 2, 3] }),
    /needs 6 pixels, got 5/,
  );
});

test('raw INT64 and FP32 outputs decode little-endian, by shape', () => {
  const int64 = Buffer.alloc(16);
  int64.writeBigInt64LE(7n, 0);
  int64.writeBigInt64LE(3n, 8);
  assert.deepEqual(decodeRaw('label', 'INT64', [2], int64), [7, 3]);
  const fp32 = Buffer.alloc(8);
  fp32.writeFloatLE(0.5, 0);
  fp32.writeFloatLE(-1, 4);
  // An odd byte offset, as protobuf bytes fields may have: decoding must not need alignment.
  const unaligned = Buffer.concat([Buffer.from([9]), fp32]).subarray(1);
  assert.deepEqual(Array.from(decodeRaw('scores', 'FP32', [1, 2], unaligned)), [0.5, -1]);
});

test('raw outputs of the wrong size or an unknown datatype are refused', () => {
  assert.throws(
    () => decodeRaw('label', 'INT64', [2], Buffer.alloc(8)),
    /output 'label': shape \[2\] of INT64 needs 16 bytes, got 8/,
  );
  assert.throws(() => decodeRaw('label', 'INT64', [2], undefined), /needs 16 bytes, got none/);
  assert.throws(
    () => decodeRaw('x', 'BF16', [1], Buffer.alloc(2)),
    /datatype BF16 is not supported/,
  );
});

test('argmax per row takes the first maximum', () => {
  assert.deepEqual(argmaxRows([0, 3, 3, 5, 1, 0], 3), [1, 0]);
});

test('gRPC errors become one-line RpcErrors with the status code', () => {
  const error = fromGrpcError('Predict', {
    code: 3,
    details: 'bad shape\n  expected [-1,28,28]',
    message: '',
  });
  assert.ok(error instanceof RpcError && error instanceof ScratchnetError);
  assert.equal(error.code, 3);
  assert.equal(error.codeName, 'INVALID_ARGUMENT');
  assert.equal(error.message, 'Predict failed: INVALID_ARGUMENT: bad shape expected [-1,28,28]');
  const plain = new TypeError('not grpc');
  assert.equal(fromGrpcError('Predict', plain), plain);
});
