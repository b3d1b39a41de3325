'use strict';

// The CLI's handling of bad flags and files, before any server is involved: one line on stderr,
// exit 2 for the caller's mistakes (flags, files, the environment), never a stack trace.

const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { Writable } = require('node:stream');
const { test } = require('node:test');
const { main } = require('../lib/cli');
const { Client } = require('../lib/client');
const { ScratchnetError } = require('../lib/errors');
const { tempDir } = require('./support/files');

/** Run the CLI in-process, capturing its output. */
async function run(...args) {
  const captured = { stdout: '', stderr: '' };
  const sink = (name) =>
    new Writable({
      write(chunk, _encoding, done) {
        captured[name] += chunk;
        done();
      },
    });
  const status = await main(args, { stdout: sink('stdout'), stderr: sink('stderr') });
  return { status, ...captured };
}

/** Run the CLI in-process with `variables` set in process.env meanwhile. */
async function runWith(variables, ...args) {
  const saved = Object.fromEntries(Object.keys(variables).map((name) => [name, process.env[name]]));
  Object.assign(process.env, variables);
  try {
    return await run(...args);
  } finally {
    for (const [name, value] of Object.entries(saved)) {
      if (value === undefined) {
        delete process.env[name];
      } else {
        process.env[name] = value;
      }
    }
  }
}

/** Assert one stderr line matching `pattern` and exit status `status`. */
async function assertFails(args, status, pattern) {
  const result = await run(...args);
  assert.equal(result.status, status, `${args.join(' ')}: ${result.stderr}`);
  assert.equal(result.stdout, '');
  assert.match(result.stderr, /^scratchnet: [^\n]+\n$/);
  assert.match(result.stderr, pattern);
}

test('--help prints the usage and exits 0', async () => {
  const result = await run('--help');
  assert.equal(result.status, 0);
  assert.match(result.stdout, /scratchnet predict --target TARGET/);
  for (const flag of ['--model NAME', '--model-version V', '--tls-ca FILE', '--tls-cert FILE']) {
    assert.ok(result.stdout.includes(flag), flag);
  }
  assert.match(result.stdout, /--token-file FILE .*\n.*SCRATCHNET_TOKEN/);
  assert.match(result.stdout, /scratchnet onnx/);
});

test('bad flags exit 2 with one line saying what was expected', async () => {
  await assertFails([], 2, /no command given: expected predict, score, info or onnx/);
  await assertFails(['train'], 2, /unknown command 'train'/);
  await assertFails(['predict', 'x.idx'], 2, /predict: --target is required/);
  await assertFails(['predict', '--target', 'h:1', '--bogus'], 2, /Unknown option '--bogus'/);
  await assertFails(
    ['predict', '--target', 'h:1', '--api', 'v3', 'x'],
    2,
    /--api v3: expected v1 or v2/,
  );
  await assertFails(
    ['predict', '--target', 'nohost', 'x'],
    2,
    /target 'nohost': expected HOST:PORT/,
  );
  await assertFails(
    ['score', '--target', 'h:1', '--batch-size', '0'],
    2,
    /--batch-size 0: expected a positive integer/,
  );
  await assertFails(
    ['score', '--target', 'h:1', '--timeout', 'soon'],
    2,
    /--timeout soon: expected a positive number/,
  );
  await assertFails(['predict', '--target', 'h:1'], 2, /no FILE given/);
  await assertFails(['score', '--target', 'h:1', 'x.idx'], 2, /score takes no FILE/);
  await assertFails(['onnx', 'x.idx'], 2, /onnx: --model is required/);
  await assertFails(
    ['onnx', '--model', 'm.onnx', '--data', '.', 'x.idx'],
    2,
    /FILE\.\.\. or --data DIR, not both/,
  );
  await assertFails(
    ['onnx', '--model', 'm.onnx', '--tls-ca', 'ca.pem', 'x'],
    2,
    /--tls-ca does not apply/,
  );
  await assertFails(
    ['predict', '--target', 'h:1', '--threads', '2', 'x'],
    2,
    /--threads does not apply/,
  );
  await assertFails(
    ['onnx', '--model', 'm.onnx', '--threads', '100000', 'x'],
    2,
    /--threads 100000: expected an integer between 1 and 256/,
  );
  await assertFails(
    ['info', '--target', 'h:1', '--model', ''],
    2,
    /--model and --model-version take a non-empty value/,
  );
});

test('--timeout is at most a day and finite, in the CLI and the library', async () => {
  // Longer deadlines crash grpc-js (10^12 s) or fail every call at once (past the largest Date).
  for (const seconds of ['86401', '1e12', '1e13', '9e15']) {
    await assertFails(
      ['info', '--target', 'h:1', '--timeout', seconds],
      2,
      new RegExp(`--timeout ${seconds}: expected at most 86400 seconds \\(a day\\)`),
    );
  }
  for (const seconds of ['1e400', 'Infinity', 'NaN']) {
    await assertFails(
      ['info', '--target', 'h:1', '--timeout', seconds],
      2,
      new RegExp(`--timeout ${seconds}: expected a positive number`),
    );
  }
  for (const timeoutMs of [86_400_001, 1e15, Infinity, NaN, 0, -1, '30']) {
    assert.throws(
      () => new Client('h:1', { timeoutMs }),
      (error) =>
        error instanceof ScratchnetError &&
        /expected a positive number of milliseconds, at most 86400000 \(a day\)/.test(
          error.message,
        ),
      String(timeoutMs),
    );
  }
  assert.equal(new Client('h:1', { timeoutMs: 86_400_000 }).timeoutMs, 86_400_000);
  await assert.rejects(
    () => new Client('h:1').waitForReady(Infinity),
    /timeout Infinity ms: expected a positive number/,
  );
});

test('a negative number is refused as any bad value; another dash value says how to give it', async () => {
  // parseArgs would call '-1' an ambiguous option rather than a value.
  for (const timeout of [['--timeout', '-1'], ['--timeout=-1']]) {
    await assertFails(
      ['info', '--target', 'h:1', ...timeout],
      2,
      /^scratchnet: --timeout -1: expected a positive number$/m,
    );
  }
  await assertFails(['info', '--target', 'h:1', '--timeout', '-.5'], 2, /--timeout -\.5: expected/);
  for (const batchSize of [['--batch-size', '-5'], ['--batch-size=-5']]) {
    await assertFails(
      ['score', '--target', 'h:1', ...batchSize],
      2,
      /--batch-size -5: expected a positive integer/,
    );
  }
  await assertFails(
    ['info', '--target', 'h:1', '--model', '-x'],
    2,
    /Option '--model' argument is ambiguous: to specify an option argument starting with a dash use '--model=-XYZ'$/m,
  );
  // After '--', '--model' and '-1' are FILEs, not a flag and its value.
  await assertFails(
    ['predict', '--target', 'h:1', '--', '--model', '-1'],
    2,
    /^scratchnet: --model: cannot read it \(ENOENT\)$/m,
  );
});

test('a flag the command does not take, or a value it cannot use, exits 2', async () => {
  const model = ['onnx', '--model', 'm.onnx'];
  const cases = [
    [
      [...model, '--api', 'v9', 'x'],
      /onnx FILE\.\.\.: --api does not apply here; expected only --model,/,
    ],
    [[...model, '--split', 'foo', 'x'], /onnx FILE\.\.\.: --split does not apply here/],
    [[...model, '--timeout', '5', 'x'], /--timeout does not apply here/],
    [[...model, '--data', '.', '--invert', 'yes'], /onnx --data: --invert does not apply here/],
    [[...model, '--data', '.', '--no-preprocess'], /--no-preprocess does not apply here/],
    [['info', '--target', 'h:1', '--json'], /info: --json does not apply here/],
    [['info', '--target', 'h:1', '--split', 'train'], /info: --split does not apply here/],
    [['predict', '--target', 'h:1', '--data', '.', 'x'], /predict: --data does not apply here/],
    [['score', '--target', 'h:1', '--invert', 'no'], /score: --invert does not apply here/],
    [['score', '--target', 'h:1', '--split', 'foo'], /--split foo: expected test or train/],
    [[...model, '--data', '.', '--split', 'foo'], /--split foo: expected test or train/],
  ];
  for (const [args, pattern] of cases) {
    await assertFails(args, 2, pattern);
  }
});

test('a malformed list of targets exits 2 saying what is expected', async () => {
  for (const target of ['h:1,', 'h:1,nohost', 'h:1,h:0', 'dns:///']) {
    await assertFails(
      ['info', '--target', target],
      2,
      /expected HOST:PORT, several separated by commas \(HOST:PORT,HOST:PORT\)/,
    );
  }
});

test('TLS and token files and variable: pairs, unreadable or wrong ones exit 2, never the token', async () => {
  const dir = tempDir();
  const notPem = path.join(__dirname, 'cli.test.js');
  const empty = path.join(dir, 'empty');
  const twoLines = path.join(dir, 'two-lines');
  fs.writeFileSync(empty, '\n');
  fs.writeFileSync(twoLines, 'secret-one\nsecret-two\n');
  const info = ['info', '--target', '127.0.0.1:9'];
  await assertFails([...info, '--tls-cert', 'c.pem'], 2, /--tls-cert and --tls-key go together/);
  await assertFails([...info, '--tls-key', 'k.pem'], 2, /--tls-cert and --tls-key go together/);
  await assertFails(
    [...info, '--tls-ca', path.join(dir, 'nope.pem')],
    2,
    /--tls-ca .*nope\.pem: cannot read it \(ENOENT\)/,
  );
  await assertFails(
    [...info, '--tls-ca', notPem],
    2,
    /--tls-ca .*cli\.test\.js: not a PEM certificate/,
  );
  await assertFails(
    [...info, '--tls-cert', notPem, '--tls-key', notPem],
    2,
    /--tls-cert .*cli\.test\.js: not a PEM certificate/,
  );
  await assertFails(
    [...info, '--token-file', empty],
    2,
    /--token-file .*empty holds no token: expected one token on one line/,
  );
  const result = await run(...info, '--token-file', twoLines);
  assert.equal(result.status, 2);
  assert.match(result.stderr, /--token-file .*two-lines: expected one token on one line/);
  assert.doesNotMatch(result.stderr, /secret/);
  const variable = await runWith({ SCRATCHNET_TOKEN: 'secret one' }, ...info);
  assert.equal(variable.status, 2);
  assert.match(variable.stderr, /^scratchnet: SCRATCHNET_TOKEN: expected one token on one line/);
  assert.doesNotMatch(variable.stderr, /secret/);
});

test('a missing file or model exits 2 naming it', async () => {
  const missing = path.join(__dirname, 'no-such-file.idx');
  await assertFails(
    ['predict', '--target', '127.0.0.1:9', missing],
    2,
    /no-such-file\.idx: cannot read it \(ENOENT\)/,
  );
  const missingModel = path.join(__dirname, 'no-such-model.onnx');
  await assertFails(
    ['onnx', '--model', missingModel, missing],
    2,
    /no-such-model\.onnx: onnxruntime-node cannot load it/,
  );
  await assertFails(
    ['onnx', '--model', path.join(__dirname, 'cli.test.js'), missing],
    2,
    /cannot load it/,
  );
});

test('a standard output that cannot be written is one line and exit 1, not a stack trace', () => {
  const { spawnSync } = require('node:child_process');
  const full = fs.openSync('/dev/full', 'w');
  try {
    const script = path.join(__dirname, '..', 'bin', 'scratchnet.js');
    const result = spawnSync(process.execPath, [script, '--help'], {
      stdio: ['ignore', full, 'pipe'],
      encoding: 'utf8',
    });
    assert.equal(result.status, 1);
    assert.equal(result.stderr, 'scratchnet: cannot write to standard output (ENOSPC)\n');
  } finally {
    fs.closeSync(full);
  }
});
