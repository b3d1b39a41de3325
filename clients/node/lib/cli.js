'use strict';

// The `scratchnet` command: predict files and score a test set over gRPC (either API), or run
// model.onnx locally with onnxruntime-node. Bad input is one line on stderr and a non-zero exit.

const path = require('node:path');
const { parseArgs } = require('node:util');
const { Client, MAX_TIMEOUT_MS } = require('./client');
const { TOKEN_VARIABLE, loadCredentials } = require('./credentials');
const { InputError, ScratchnetError } = require('./errors');
const { checkImageShape, readImages } = require('./images');
const { loadMnistSplit } = require('./mnist');
const { scoreSet } = require('./score');

// As the server's --threads: each is a thread, and a typo of 100000 would start them until the
// machine's process limit stops every other program.
const MAX_THREADS = 256;

const PROGRAM = 'scratchnet';
const DEFAULT_DATA = path.resolve(__dirname, '..', '..', '..', 'data', 'mnist');

const USAGE = `usage:
  ${PROGRAM} predict --target TARGET [--api v1|v2] [--json] [--no-preprocess]
                     [--invert auto|yes|no] FILE...
  ${PROGRAM} score   --target TARGET [--api v1|v2] [--data DIR] [--split test|train]
                     [--batch-size N] [--json]
  ${PROGRAM} info    --target TARGET [--api v1|v2]
  ${PROGRAM} onnx    --model MODEL.onnx [--threads N] [--json] [--no-preprocess]
                     [--invert auto|yes|no] FILE...
  ${PROGRAM} onnx    --model MODEL.onnx --data DIR [--split test|train] [--threads N] [--json]

TARGET: HOST:PORT; replicas, balanced round robin with retries: HOST:PORT,HOST:PORT,... or
dns:///NAME:PORT (every address of NAME).
FILE: IDX images [N,H,W] or [H,W] (raw or .gz), a .npy of integers 0-255 or floats in [0, 1]
(either byte order), each of the model's HxW; or a PNG or JPEG photo, put in MNIST's form
(inverted if on light paper, cropped to the ink, fitted into the model's HxW in MNIST's
proportions, 20x20 of 28x28, centred by mass; docs/preprocessing.md) unless --no-preprocess
(then only made gray and resized to HxW).
DIR: an MNIST-style folder (t10k-images-idx3-ubyte[.gz], ...); default ${DEFAULT_DATA}.
Server options (predict, score, info):
  --model NAME          the model to ask (default: the server's default model)
  --model-version V     its version (default: the newest the server has)
  --tls-ca FILE         use TLS, trusting the CA certificate(s) in FILE (PEM)
  --tls-cert FILE       client certificate (PEM) for mutual TLS, with --tls-key FILE; implies TLS
  --token-file FILE     send 'authorization: Bearer <token>' with the token in FILE
                        (default: the ${TOKEN_VARIABLE} environment variable, if set)
  --timeout SECONDS     deadline of each call (default 30, at most 86400: a day)
Exit status: 0 ok; 1 a call failed (server unreachable or refusing, deadline, wrong reply,
output not written); 2 the caller's mistake, found before any call (flags, files, environment).`;

const OPTIONS = {
  target: { type: 'string' },
  api: { type: 'string', default: 'v1' },
  data: { type: 'string' },
  split: { type: 'string', default: 'test' },
  model: { type: 'string' },
  'model-version': { type: 'string' },
  'tls-ca': { type: 'string' },
  'tls-cert': { type: 'string' },
  'tls-key': { type: 'string' },
  'token-file': { type: 'string' },
  'batch-size': { type: 'string' },
  timeout: { type: 'string', default: '30' },
  threads: { type: 'string' },
  json: { type: 'boolean', default: false },
  'no-preprocess': { type: 'boolean', default: false },
  invert: { type: 'string', default: 'auto' },
  help: { type: 'boolean', short: 'h', default: false },
};

/** Parse a flag that must be a positive (finite) number. */
function positive(name, text, integer) {
  const value = Number(text);
  if (!(Number.isFinite(value) && value > 0) || (integer && !Number.isInteger(value))) {
    throw new InputError(
      `--${name} ${text}: expected a positive ${integer ? 'integer' : 'number'}`,
    );
  }
  return value;
}

/** A positive integer flag of at most `limit`. */
function atMost(name, text, limit) {
  const value = positive(name, text, true);
  if (value > limit) {
    throw new InputError(`--${name} ${text}: expected an integer between 1 and ${limit}`);
  }
  return value;
}

/** --timeout in milliseconds: positive, and at most a day as in the Python client. */
function timeoutMs(text) {
  const seconds = positive('timeout', text, false);
  if (seconds * 1000 > MAX_TIMEOUT_MS) {
    throw new InputError(
      `--timeout ${text}: expected at most ${MAX_TIMEOUT_MS / 1000} seconds (a day)`,
    );
  }
  return seconds * 1000;
}

/** The flags of the commands that talk to a server. */
const SERVER_FLAGS = [
  'target',
  'api',
  'model',
  'model-version',
  'tls-ca',
  'tls-cert',
  'tls-key',
  'token-file',
  'timeout',
];
const PHOTO_FLAGS = ['no-preprocess', 'invert'];
/** The flags each command (and form of onnx) takes; --help goes with any. */
const COMMAND_FLAGS = {
  predict: [...SERVER_FLAGS, 'batch-size', 'json', ...PHOTO_FLAGS],
  score: [...SERVER_FLAGS, 'data', 'split', 'batch-size', 'json'],
  info: SERVER_FLAGS,
  'onnx FILE...': ['model', 'threads', 'json', ...PHOTO_FLAGS],
  'onnx --data': ['model', 'threads', 'json', 'data', 'split'],
};

/**
 * Check that each name in `required` was given, that every flag given is one the command takes
 * (parseArgs knows every command's flags, so it cannot refuse one that is another command's),
 * and --split, before any work is done.
 * @param {string} form the command, a key of COMMAND_FLAGS
 * @param {object} values parsed flags
 * @param {Set<string>} given the flags on the command line (values holds defaults too)
 * @param {string[]} required
 */
function expectFlags(form, values, given, required) {
  const [command] = form.split(' ');
  for (const name of required) {
    if (values[name] === undefined) {
      throw new InputError(`${command}: --${name} is required`);
    }
  }
  const takes = COMMAND_FLAGS[form];
  for (const name of given) {
    if (name !== 'help' && !takes.includes(name)) {
      throw new InputError(
        `${form}: --${name} does not apply here; expected only ` +
          takes.map((flag) => `--${flag}`).join(', '),
      );
    }
  }
  if (!['test', 'train'].includes(values.split)) {
    throw new InputError(`--split ${values.split}: expected test or train`);
  }
}

/** TLS material and token from the flags (and SCRATCHNET_TOKEN). */
function credentials(values) {
  if ((values['tls-cert'] === undefined) !== (values['tls-key'] === undefined)) {
    throw new InputError('--tls-cert and --tls-key go together: give both or neither');
  }
  return loadCredentials({
    tlsCa: values['tls-ca'],
    tlsCert: values['tls-cert'],
    tlsKey: values['tls-key'],
    tokenFile: values['token-file'],
  });
}

/** A Client for --target, and its predict and describe functions for --api. */
function connect(values) {
  if (!['v1', 'v2'].includes(values.api)) {
    throw new InputError(`--api ${values.api}: expected v1 or v2`);
  }
  if (values.model === '' || values['model-version'] === '') {
    throw new InputError(
      '--model and --model-version take a non-empty value (omit them for the defaults)',
    );
  }
  const options = {
    timeoutMs: timeoutMs(values.timeout),
    modelName: values.model,
    modelVersion: values['model-version'],
    batchSize:
      values['batch-size'] === undefined
        ? undefined
        : positive('batch-size', values['batch-size'], true),
    ...credentials(values),
  };
  let client;
  try {
    client = new Client(values.target, options);
  } catch (error) {
    throw error instanceof ScratchnetError ? new InputError(error.message) : error;
  }
  const v1 = values.api === 'v1';
  return {
    client,
    predict: v1 ? (images) => client.predict(images) : (images) => client.infer(images),
    describe: v1 ? () => client.modelInfo() : () => client.modelMetadata(),
    // What predictions need from the server before the first one (score times predictions only).
    prepare: v1 ? () => client.modelInfo() : () => client.modelConfig(),
    // Asked once per file: the first answer serves the rest, and the predictions after them.
    imageShape: v1
      ? async () => lastTwo((client.cachedInfo ?? (await client.modelInfo())).input_shape)
      : async () =>
          lastTwo((client.cachedMetadata ?? (await client.modelMetadata())).inputs[0].shape),
  };
}

/** Load a local model for `onnx`. */
async function loadOnnx(values) {
  const { OnnxModel } = require('./onnx');
  const threads =
    values.threads === undefined ? undefined : atMost('threads', values.threads, MAX_THREADS);
  const model = await OnnxModel.load(values.model, { threads });
  return {
    model,
    predict: (images) => model.predict(images),
    imageShape: async () => lastTwo(model.inputShape),
  };
}

/**
 * [H, W]: the last two sizes of an input shape [N, H, W] (or [N, 1, H, W]); unknown (NaN) for a
 * flat input [N, H·W], whose pixel count the server or onnxruntime checks.
 */
function lastTwo(shape) {
  return shape.length >= 3 ? shape.slice(-2).map(Number) : [NaN, NaN];
}

/** What readImages needs for photos, from the flags. */
function photoOptions(values, imageShape) {
  if (!['auto', 'yes', 'no'].includes(values.invert)) {
    throw new InputError(`--invert ${values.invert}: expected auto, yes or no`);
  }
  return { imageShape, preprocess: !values['no-preprocess'], invert: values.invert };
}

/** Print the labels of each file. */
async function predictFiles(predict, files, json, out, photos) {
  if (files.length === 0) {
    throw new InputError('no FILE given: expected one or more image files');
  }
  // Every file is read, and checked against the model's image size, before the first
  // prediction: a bad one is the caller's mistake (exit 2), found before any is sent.
  const batches = [];
  for (const file of files) {
    batches.push(await readImages(file, photos));
  }
  const results = [];
  for (const [i, file] of files.entries()) {
    const { labels, modelName, modelVersion } = await predict(batches[i]);
    results.push({ file, labels, ...answeredBy(modelName, modelVersion) });
  }
  if (json) {
    out.write(`${JSON.stringify({ files: results })}\n`);
    return;
  }
  const lines = results.flatMap(({ file, labels }) =>
    labels.map((label, i) => `${file}[${i}]\t${label}\n`),
  );
  out.write(lines.join(''));
}

/** {model_name, model_version} of the model that answered (nothing for a local model). */
function answeredBy(modelName, modelVersion) {
  return modelName === undefined ? {} : { model_name: modelName, model_version: modelVersion };
}

/**
 * Score a split and print accuracy and throughput. `prepare` runs before the clock starts (it
 * connects and fetches what predict needs), so images/s measures predictions only; images not
 * of the model's size are refused before any is sent.
 */
async function scoreData({ predict, imageShape, prepare }, values, source, out) {
  const data = values.data ?? DEFAULT_DATA;
  const { images, labels } = loadMnistSplit(data, values.split);
  await prepare?.();
  checkImageShape(images.shape, await imageShape(), `${data} (${values.split} split)`);
  const score = await scoreSet(predict, images, labels);
  const model = answeredBy(score.modelName, score.modelVersion);
  if (values.json) {
    const { labels: _predicted, imagesPerSecond, modelName, modelVersion, ...rest } = score;
    out.write(
      `${JSON.stringify({ ...rest, images_per_second: imagesPerSecond, source, ...model })}\n`,
    );
    return;
  }
  const answered =
    score.modelName === undefined ? '' : `, model ${score.modelName} version ${score.modelVersion}`;
  out.write(
    `accuracy ${score.accuracy.toFixed(4)} (${score.correct}/${score.total}) from ${source}${answered}\n`,
  );
  out.write(
    `images/s ${Math.round(score.imagesPerSecond)} ` +
      `(${score.total} images in ${score.seconds.toFixed(3)} s)\n`,
  );
}

/**
 * argv with each `--flag -1` written `--flag=-1`, for the flags that take a value: parseArgs takes
 * a value starting with a dash for an option and calls it ambiguous, where a negative number is
 * only a bad value, refused with the flag's own message ("expected a positive number").
 */
function joinNegativeValues(argv) {
  const joined = [];
  for (let i = 0; i < argv.length; i += 1) {
    if (argv[i] === '--') {
      return [...joined, ...argv.slice(i)]; // the rest are FILEs
    }
    const takesValue = argv[i].startsWith('--') && OPTIONS[argv[i].slice(2)]?.type === 'string';
    if (takesValue && /^-[\d.]/.test(argv[i + 1] ?? '')) {
      joined.push(`${argv[i]}=${argv[i + 1]}`);
      i += 1;
    } else {
      joined.push(argv[i]);
    }
  }
  return joined;
}

/** Run one command line; resolves to the exit status. */
async function run(argv, out) {
  let parsed;
  try {
    parsed = parseArgs({
      args: joinNegativeValues(argv),
      options: OPTIONS,
      allowPositionals: true,
      strict: true,
      tokens: true,
    });
  } catch (error) {
    throw new InputError(parseArgsMessage(error));
  }
  const { values, positionals, tokens } = parsed;
  const given = new Set(tokens.filter((token) => token.kind === 'option').map((t) => t.name));
  const [command, ...files] = positionals;
  if (values.help || command === 'help') {
    out.write(`${USAGE}\n`);
    return 0;
  }
  if (command === 'predict' || command === 'score' || command === 'info') {
    expectFlags(command, values, given, ['target']);
    const { client, predict, describe, prepare, imageShape } = connect(values);
    try {
      if (command === 'predict') {
        await predictFiles(predict, files, values.json, out, photoOptions(values, imageShape));
      } else if (command === 'score') {
        if (files.length) {
          throw new InputError(`score takes no FILE (got ${files[0]}); use --data DIR`);
        }
        const source = `${values.target} (${values.api})`;
        await scoreData({ predict, imageShape, prepare }, values, source, out);
      } else {
        out.write(`${JSON.stringify(await describe(), null, 2)}\n`);
      }
    } finally {
      client.close();
    }
    return 0;
  }
  if (command === 'onnx') {
    if (values.data !== undefined && files.length) {
      throw new InputError('onnx: give FILE... or --data DIR, not both');
    }
    expectFlags(values.data === undefined ? 'onnx FILE...' : 'onnx --data', values, given, [
      'model',
    ]);
    const { model, predict, imageShape } = await loadOnnx(values);
    try {
      if (values.data !== undefined) {
        await scoreData({ predict, imageShape }, values, `${values.model} (onnxruntime-node)`, out);
      } else {
        await predictFiles(predict, files, values.json, out, photoOptions(values, imageShape));
      }
    } finally {
      await model.release();
    }
    return 0;
  }
  throw new InputError(
    command === undefined
      ? 'no command given: expected predict, score, info or onnx (see --help)'
      : `unknown command '${command}': expected predict, score, info or onnx (see --help)`,
  );
}

/**
 * One line from a parseArgs error. Most say it all in their first sentence; a value starting
 * with a dash ('--model -x') gets three lines, whose last says how to pass one.
 */
function parseArgsMessage(error) {
  const sentences = error.message.split(/(?<=[.?])\s+/);
  const first = sentences[0].replace(/\.$/, '');
  if (error.code !== 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' || sentences.length === 1) {
    return first;
  }
  const last = sentences[sentences.length - 1].replace(/\.$/, '');
  return `${first}: ${last[0].toLowerCase()}${last.slice(1)}`;
}

/**
 * The CLI's entry point: runs argv, prints errors a user caused as one line on stderr.
 * @param {string[]} argv the arguments after the program name
 * @param {{stdout: NodeJS.WritableStream, stderr: NodeJS.WritableStream}} [io]
 * @returns {Promise<number>} the exit status
 */
async function main(argv, io = process) {
  try {
    return await run(argv, io.stdout);
  } catch (error) {
    if (!(error instanceof ScratchnetError)) {
      throw error;
    }
    io.stderr.write(`${PROGRAM}: ${error.message}\n`);
    return error instanceof InputError ? 2 : 1;
  }
}

module.exports = { main };
