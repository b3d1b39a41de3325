'use strict';

// Against a live `python -m server`: both APIs and onnxruntime-node give the Python client's
// labels on the same images; errors carry the right gRPC status; the CLI does what it says.

const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { after, before, describe, test } = require('node:test');
const { Client, OnnxModel, RpcError, convertImages, loadMnistSplit } = require('../lib');
const { sliceImages } = require('../lib/tensor');
const { assertOneLineError, cli: runCli, deadTarget } = require('./support/cli');
const { buildLayouts, buildModels, pythonLabels, REPO, startServer } = require('./support/live');
const { npyBytes, npyElements, tempDir, writeIdx } = require('./support/files');

const DATA = path.join(REPO, 'data', 'mnist');
const TEST_IMAGES = path.join(DATA, 't10k-images-idx3-ubyte.gz');
const INVALID_ARGUMENT = 3;
const UNAVAILABLE = 14;
const DEADLINE_EXCEEDED = 4;
// Bounds for a hung server or client, far above the seconds these normally take.
const SETUP_TIMEOUT = { timeout: 240_000 };
const SUITE_TIMEOUT = { timeout: 180_000 };

/** Run the CLI; resolves to {status, stdout, stderr}. */
function cli(...args) {
  return runCli(args);
}

let model;
let modelUint8;
let server;
let serverUint8;
let client;
let images;
let truth;
let expected;

before(async () => {
  ({ model, modelUint8 } = buildModels());
  [server, serverUint8] = await Promise.all([startServer(model), startServer(modelUint8)]);
  client = new Client(server.target, { timeoutMs: 30_000 });
  await client.waitForReady(60_000);
  ({ images, labels: truth } = loadMnistSplit(DATA, 'test'));
  expected = pythonLabels(server.target, TEST_IMAGES);
  assert.equal(expected.length, images.shape[0]);
}, SETUP_TIMEOUT);

after(async () => {
  client?.close();
  for (const running of [server, serverUint8]) {
    if (running) {
      assert.equal(await running.stop(), 0, `server did not exit cleanly:\n${running.stderr()}`);
    }
  }
}, SETUP_TIMEOUT);

describe('against a live server of model.onnx (float32 input)', SUITE_TIMEOUT, () => {
  test("v1 Predict gives the Python client's labels, uint8 and float32 on the wire", async () => {
    const asUint8 = await client.predict(images, { dtype: 'uint8' });
    assert.deepEqual(asUint8.labels, expected);
    const asFloat32 = await client.predict(images, { dtype: 'float32' });
    assert.deepEqual(asFloat32.labels, expected);
  });

  test("the Open Inference Protocol ModelInfer gives the Python client's labels", async () => {
    const { labels, outputs } = await client.infer(images);
    assert.deepEqual(labels, expected);
    assert.equal(outputs.label.datatype, 'INT64');
    assert.deepEqual(outputs.label.shape, [images.shape[0]]);
  });

  test("onnxruntime-node on model.onnx, no server, gives the Python client's labels", async () => {
    // Both exports: float32 input (pixels scaled here) and uint8 input (scaled in the graph).
    for (const file of [model, modelUint8]) {
      const onnx = await OnnxModel.load(file);
      try {
        assert.equal(onnx.inputType, file === model ? 'float32' : 'uint8');
        assert.deepEqual((await onnx.predict(images)).labels, expected, file);
      } finally {
        await onnx.release();
      }
    }
  });

  test('onnxruntime-node refuses the float pixels the server refuses, in its words', async () => {
    const [, height, width] = images.shape;
    const batch = (value) => ({
      data: new Float32Array(2 * height * width).fill(value),
      shape: [2, height, width],
    });
    // The rule itself, without who says it: from "pixels must" to the end or to "in image N".
    const rule = (message) => /((float )?pixels must .*?)(: divide|$)/.exec(message)[1];
    const onnx = await OnnxModel.load(model);
    try {
      assert.equal(onnx.inputScale, 1 / 255); // read from model.onnx's metadata_props
      for (const value of [NaN, Infinity, 255, -1]) {
        const local = await onnx.predict(batch(value)).then(
          () => assert.fail(`onnxruntime-node took pixels of ${value}`),
          (error) => error,
        );
        const remote = await client.predict(batch(value), { dtype: 'float32' }).then(
          () => assert.fail(`the server took pixels of ${value}`),
          (error) => error,
        );
        assert.equal(remote.code, INVALID_ARGUMENT);
        assert.equal(rule(local.message), rule(remote.message), String(value));
      }
    } finally {
      await onnx.release();
    }
    // The CLI on a .npy of NaN: refused as it is read, as the Python client does; exit 2.
    const file = path.join(tempDir(), 'nan.npy');
    const nan = new Float32Array(height * width).fill(NaN);
    fs.writeFileSync(file, npyBytes('<f4', [1, height, width], Buffer.from(nan.buffer)));
    assertOneLineError(await cli('onnx', '--model', model, file), 2, /pixels must be finite/);
  });

  test('v1 scores and probabilities: [N,C] rows whose argmax is the label', async () => {
    const [, height, width] = images.shape;
    const batch = { data: images.data.subarray(0, 5 * height * width), shape: [5, height, width] };
    const result = await client.predict(batch, { scores: true, probabilities: true });
    const classes = result.numClasses;
    assert.equal(result.scores.length, 5 * classes);
    assert.equal(result.probabilities.length, 5 * classes);
    for (let n = 0; n < 5; n += 1) {
      const row = Array.from(result.probabilities.subarray(n * classes, (n + 1) * classes));
      assert.ok(Math.abs(row.reduce((a, b) => a + b, 0) - 1) < 1e-5);
      assert.equal(row.indexOf(Math.max(...row)), result.labels[n]);
    }
    assert.deepEqual(result.labels, expected.slice(0, 5));
  });

  test('v2 raw FP32 outputs decode: argmax of scores is the INT64 label', async () => {
    const [, height, width] = images.shape;
    const batch = { data: images.data.subarray(0, 7 * height * width), shape: [7, height, width] };
    const { outputs } = await client.infer(batch, {
      outputs: ['label', 'scores', 'probabilities'],
    });
    const classes = outputs.scores.shape[1];
    assert.deepEqual(outputs.scores.shape, [7, classes]);
    assert.equal(outputs.probabilities.datatype, 'FP32');
    for (let n = 0; n < 7; n += 1) {
      const row = Array.from(outputs.scores.data.subarray(n * classes, (n + 1) * classes));
      assert.equal(row.indexOf(Math.max(...row)), outputs.label.data[n]);
    }
    assert.deepEqual(outputs.label.data, expected.slice(0, 7));
  });

  test("model info and metadata describe the data's image shape", async () => {
    const [, height, width] = images.shape;
    const info = await client.modelInfo();
    assert.deepEqual(info.input_shape, [-1, height, width]);
    assert.equal(info.class_labels.length, Number(info.num_classes));
    const metadata = await client.modelMetadata();
    assert.equal(metadata.name, 'scratchnet');
    assert.deepEqual(metadata.inputs[0].shape, [-1, height, width]);
  });

  test('a wrong shape is INVALID_ARGUMENT (3): Predict, PredictStream, ModelInfer', async () => {
    const [, height, width] = images.shape;
    const wrong = (count) => ({
      data: images.data.subarray(0, count * (height - 1) * width),
      shape: [count, height - 1, width],
    });
    const calls = {
      Predict: () => client.predict(wrong(2)),
      // More than one request's worth of pixels: the batches go over one PredictStream.
      PredictStream: () => client.predict(wrong(3000)),
      ModelInfer: () => client.infer(wrong(2)),
    };
    for (const [method, call] of Object.entries(calls)) {
      await assert.rejects(call, (error) => {
        assert.ok(error instanceof RpcError, String(error));
        assert.equal(error.method, method);
        assert.equal(error.code, INVALID_ARGUMENT);
        assert.equal(error.codeName, 'INVALID_ARGUMENT');
        assert.match(error.message, new RegExp(`${height - 1}`));
        return true;
      });
    }
  });

  test('an unreachable target is UNAVAILABLE (14) on both APIs, before the deadline', async () => {
    const dead = new Client(await deadTarget(), { timeoutMs: 20_000 });
    const start = Date.now();
    try {
      for (const call of [() => dead.predict(images), () => dead.infer(images)]) {
        await assert.rejects(call, (error) => {
          assert.ok(error instanceof RpcError, String(error));
          assert.equal(error.code, UNAVAILABLE);
          return true;
        });
      }
    } finally {
      dead.close();
    }
    assert.ok(Date.now() - start < 10_000);
  });

  test('CLI predict prints the same labels with --api v1 and --api v2', async () => {
    for (const api of ['v1', 'v2']) {
      const result = await cli(
        'predict',
        '--target',
        server.target,
        '--api',
        api,
        '--json',
        TEST_IMAGES,
      );
      assert.equal(result.status, 0, result.stderr);
      const { files } = JSON.parse(result.stdout);
      assert.deepEqual(files, [
        { file: TEST_IMAGES, labels: expected, model_name: 'scratchnet', model_version: '1' },
      ]);
    }
    const text = await cli('predict', '--target', server.target, TEST_IMAGES);
    const lines = text.stdout.trimEnd().split('\n');
    assert.equal(lines.length, expected.length);
    assert.equal(lines[3], `${TEST_IMAGES}[3]\t${expected[3]}`);
  });

  test("CLI score and onnx --data report the accuracy of the Python client's labels", async () => {
    const accuracy = expected.filter((label, i) => label === truth[i]).length / expected.length;
    for (const args of [
      ['score', '--target', server.target, '--data', DATA, '--json'],
      [
        'score',
        '--target',
        server.target,
        '--data',
        DATA,
        '--api',
        'v2',
        '--batch-size',
        '1000',
        '--json',
      ],
      ['onnx', '--model', model, '--data', DATA, '--json'],
    ]) {
      const result = await cli(...args);
      assert.equal(result.status, 0, result.stderr);
      const score = JSON.parse(result.stdout);
      assert.equal(score.accuracy, accuracy, args.join(' '));
      assert.equal(score.total, expected.length);
      assert.ok(score.images_per_second > 0);
      // The model that answered: a server's, none for the local onnx run.
      assert.equal(score.model_name, args[0] === 'onnx' ? undefined : 'scratchnet');
    }
    const text = await cli('score', '--target', server.target);
    assert.match(
      text.stdout,
      new RegExp(`^accuracy ${accuracy.toFixed(4)} \\(\\d+/${expected.length}\\)`),
    );
    assert.match(text.stdout, /\nimages\/s \d+ \(\d+ images in [\d.]+ s\)\n$/);
  });

  test('CLI errors: one line on stderr, exit 1 for a call, 2 for a file, no stack trace', async () => {
    assertOneLineError(
      await cli('predict', '--target', await deadTarget(), TEST_IMAGES),
      1,
      /UNAVAILABLE/,
    );
    const notImages = path.join(__dirname, '..', 'package.json');
    assertOneLineError(
      await cli('predict', '--target', server.target, notImages),
      2,
      /not an IDX file/,
    );
    assertOneLineError(
      await cli('score', '--target', server.target, '--data', __dirname),
      2,
      /no t10k-images-idx3-ubyte/,
    );
  });

  test("CLI: images not of the model's size are refused before any call, naming the file", async () => {
    const [, height, width] = images.shape;
    const dir = tempDir();
    const cropped = path.join(dir, 'cropped.npy');
    const count = 3;
    const pixels = new Uint8Array(count * (height - 1) * width);
    fs.writeFileSync(cropped, npyBytes('|u1', [count, height - 1, width], pixels));
    const message =
      `${cropped}: images of shape [${count},${height - 1},${width}], ` +
      `expected [${height},${width}] or [N,${height},${width}] (the model's image size)`;
    const runs = [
      ['predict', '--target', server.target, TEST_IMAGES, cropped],
      ['predict', '--target', server.target, '--api', 'v2', cropped],
      ['onnx', '--model', model, cropped],
    ];
    // Triton's statistics count every inference, refused ones included.
    const statistics = async () => (await client.unary('v2', 'ModelStatistics', {})).model_stats;
    const before = await statistics();
    for (const args of runs) {
      const result = await cli(...args);
      assertOneLineError(result, 2);
      assert.equal(result.stderr, `scratchnet: ${message}\n`, args.join(' '));
    }
    // No Predict or ModelInfer reached the server: not even the first file's.
    assert.deepEqual(await statistics(), before);
    // An MNIST-style folder of them too, for score.
    const folder = tempDir();
    writeIdx(path.join(folder, 't10k-images-idx3-ubyte'), [count, height - 1, width], pixels);
    writeIdx(path.join(folder, 't10k-labels-idx1-ubyte'), [count], new Uint8Array(count));
    for (const args of [
      ['score', '--target', server.target, '--data', folder],
      ['onnx', '--model', model, '--data', folder],
    ]) {
      assertOneLineError(
        await cli(...args),
        2,
        new RegExp(
          `^scratchnet: ${folder} \\(test split\\): images of shape \\[${count},${height - 1},`,
        ),
      );
    }
  });

  test("CLI score refuses labels beyond the model's classes, as the Python client does", async () => {
    const [, height, width] = images.shape;
    const count = 3;
    // Scored, they would read as mistakes: a labelled set meant for another model.
    const other = tempDir();
    const firstImages = images.data.subarray(0, count * height * width);
    writeIdx(path.join(other, 't10k-images-idx3-ubyte'), [count, height, width], firstImages);
    writeIdx(path.join(other, 't10k-labels-idx1-ubyte'), [count], new Uint8Array(count).fill(11));
    for (const args of [
      ['score', '--target', server.target, '--data', other],
      ['score', '--target', server.target, '--data', other, '--api', 'v2'],
      ['onnx', '--model', model, '--data', other],
    ]) {
      const result = await cli(...args);
      assertOneLineError(result, 2);
      assert.equal(
        result.stderr,
        'scratchnet: the labels go up to 11, but the model has only 10 classes: a labelled set ' +
          'for another model?\n',
        args.join(' '),
      );
    }
  });

  test('CLI: .npy files of other dtypes and byte orders give the labels of their pixels', async () => {
    const [, height, width] = images.shape;
    const count = 50;
    const shape = [count, height, width];
    const pixels = Array.from(images.data.subarray(0, count * height * width));
    const dir = tempDir();
    const files = {
      'big-endian-float64.npy': npyBytes(
        '>f8',
        shape,
        npyElements(
          '>f8',
          pixels.map((p) => p / 255),
        ),
      ),
      'int16.npy': npyBytes('<i2', shape, npyElements('<i2', pixels)),
      'uint64.npy': npyBytes('>u8', shape, npyElements('>u8', pixels.map(BigInt))),
    };
    for (const [name, bytes] of Object.entries(files)) {
      const file = path.join(dir, name);
      fs.writeFileSync(file, bytes);
      const result = await cli('predict', '--target', server.target, '--json', file);
      assert.equal(result.status, 0, result.stderr);
      assert.deepEqual(JSON.parse(result.stdout).files[0].labels, expected.slice(0, count), name);
    }
  });
});

describe('against a live server of the uint8-input export', SUITE_TIMEOUT, () => {
  let uint8Client;

  before(async () => {
    uint8Client = new Client(serverUint8.target, { timeoutMs: 30_000 });
    await uint8Client.waitForReady(60_000);
  });

  after(() => uint8Client?.close());

  test("v1 sends UINT8 and v2 sends a UINT8 tensor; labels equal the Python client's", async () => {
    const info = await uint8Client.modelInfo();
    assert.deepEqual(info.input_dtypes, ['DATA_TYPE_UINT8']);
    assert.deepEqual((await uint8Client.predict(images)).labels, expected);
    const metadata = await uint8Client.modelMetadata();
    assert.equal(metadata.inputs[0].datatype, 'UINT8');
    assert.deepEqual((await uint8Client.infer(images)).labels, expected);
  });

  test('float32 pixels for a uint8 model: INVALID_ARGUMENT (v1), refused by infer', async () => {
    await assert.rejects(
      () => uint8Client.predict(images, { dtype: 'float32' }),
      (error) => error instanceof RpcError && error.code === INVALID_ARGUMENT,
    );
    const floats = convertImages(images, 'float32');
    await assert.rejects(() => uint8Client.infer(floats), /expects uint8 pixels, got float32/);
  });
});

describe('models whose input is [N,1,H,W] or flat [N,H·W]', SUITE_TIMEOUT, () => {
  test('v2 and onnxruntime-node feed them in their layout, with v1 labels', async () => {
    const [height, width] = images.shape.slice(1);
    const repository = buildLayouts(height, width, 10);
    const layouts = await startServer(repository, {
      modelFlag: '--model-repository',
      args: ['--image-shape', `${height}x${width}`],
    });
    const few = sliceImages(images, 0, 200);
    try {
      for (const name of ['nchw', 'flat']) {
        const byV1 = new Client(layouts.target, { timeoutMs: 30_000, modelName: name });
        try {
          await byV1.waitForReady(60_000); // listening, and its models loaded
          const labels = (await byV1.predict(few)).labels; // the server lays the images out
          assert.deepEqual((await byV1.infer(few)).labels, labels, `${name} over v2`);
          const onnx = await OnnxModel.load(path.join(repository, name, '1', 'model.onnx'));
          try {
            assert.deepEqual((await onnx.predict(few)).labels, labels, `${name} in Node`);
          } finally {
            await onnx.release();
          }
        } finally {
          byV1.close();
        }
      }
    } finally {
      assert.equal(await layouts.stop(), 0, layouts.stderr());
    }
  });
});

describe('against a server that stops answering mid-stream', SUITE_TIMEOUT, () => {
  test('the stream fails after the timeout, not after the timeout times its batches', async () => {
    const frozen = await startServer(model);
    const slow = new Client(frozen.target, { timeoutMs: 2_000, batchSize: 1 });
    try {
      await slow.waitForReady(60_000);
      await slow.modelInfo(); // connected: the stream below starts at once
      frozen.process.kill('SIGSTOP');
      const started = Date.now();
      await assert.rejects(
        () => slow.predict(images, { dtype: 'uint8' }),
        (error) =>
          error instanceof RpcError &&
          error.code === DEADLINE_EXCEEDED &&
          /no answer within 2000 ms/.test(error.message),
      );
      // 10,000 batches of one: the whole-stream deadline alone would be 20,000 s.
      assert.ok(Date.now() - started < 15_000, `took ${Date.now() - started} ms`);
      // A unary call's deadline reads the same, not grpc-js's list of its internal stages.
      await assert.rejects(
        () => slow.modelInfo(),
        (error) =>
          error instanceof RpcError &&
          error.message ===
            'GetModelInfo failed: DEADLINE_EXCEEDED: no answer within 2000 ms (raise the ' +
              'timeout (--timeout, or timeoutMs) for a busy server)',
      );
    } finally {
      slow.close();
      frozen.process.kill('SIGCONT');
      assert.equal(await frozen.stop(), 0);
    }
  });
});
