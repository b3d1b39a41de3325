'use strict';

// How the client reaches a server, against live servers: which model and version it asks for
// (a model repository), TLS, mutual TLS and bearer tokens (a secured server), and replicas behind
// one --target (two servers, one of them killed mid-run). The expected labels are always those of
// onnxruntime-node on the very model file the server answered with.

const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { setTimeout: sleep } = require('node:timers/promises');
const { after, before, describe, test } = require('node:test');
const { Client, OnnxModel, RpcError, loadMnistSplit } = require('../lib');
const { assertOneLineError, cli, deadTarget } = require('./support/cli');
const { tempDir, writeIdx } = require('./support/files');
const { REPO, buildRepository, makeCertificates, startServer } = require('./support/live');

const DATA = path.join(REPO, 'data', 'mnist');
// Enough images for the two versions of digits2 to disagree on some, few enough to be quick.
const COUNT = 2000;
const NOT_FOUND = 5;
const UNAVAILABLE = 14;
const UNAUTHENTICATED = 16;
const TOKENS = ['first-token', 'second-token'];
const TIMEOUT = { timeout: 180_000 };
// The (model, version) pairs the repository serves, and what a client asks to reach each.
const CHOICES = [
  { asked: {}, name: 'digits', version: '1' },
  { asked: { modelName: 'digits2' }, name: 'digits2', version: '3' },
  { asked: { modelName: 'digits2', modelVersion: '2' }, name: 'digits2', version: '2' },
];

let article; // the article's model file
let repository; // the model repository's folder
let variant; // another model than the article's, under the same name and version
let repositoryServer;
let secured;
let replicas;
let pki;
let tokenFile;
let testSet; // the whole MNIST test set: {images, labels}
let images; // its first COUNT images
let imagesFile; // the same as an IDX file
// `${name}/${version}` -> labels of onnxruntime-node on that version's model.onnx (COUNT images),
// and 'article' -> on the whole test set.
const expected = {};

/** Labels of a model file on `batch`, run here. */
async function localLabels(file, batch) {
  const model = await OnnxModel.load(file);
  try {
    return (await model.predict(batch)).labels;
  } finally {
    await model.release();
  }
}

/** Fraction of `labels` equal to the test set's true labels. */
function accuracy(labels) {
  return labels.filter((label, i) => label === testSet.labels[i]).length / labels.length;
}

/** Client options for the secured server: the CA, a client certificate and a token. */
function securedOptions({ ca = 'ca', client = 'client', token = TOKENS[1] } = {}) {
  const tls = { ca: fs.readFileSync(pki[ca].cert) };
  if (client) {
    Object.assign(tls, {
      cert: fs.readFileSync(pki[client].cert),
      key: fs.readFileSync(pki[client].key),
    });
  }
  return { tls, token, timeoutMs: 10_000 };
}

/** Successful calls and images the server at `target` has answered (Triton's statistics). */
async function served(target) {
  const client = new Client(target);
  try {
    const reply = await client.unary('v2', 'ModelStatistics', {});
    return reply.model_stats.reduce(
      (sum, stats) => ({
        calls: sum.calls + Number(stats.inference_stats.success.count),
        images: sum.images + Number(stats.inference_count),
      }),
      { calls: 0, images: 0 },
    );
  } finally {
    client.close();
  }
}

/** Wait until a client with `options` gets ServerReady from `target`. */
async function ready(target, options = {}) {
  const client = new Client(target, options);
  try {
    await client.waitForReady(60_000);
  } finally {
    client.close();
  }
}

before(async () => {
  ({ repository, variant } = buildRepository());
  article = path.join(repository, 'digits', '1', 'model.onnx');
  pki = makeCertificates();
  tokenFile = path.join(tempDir(), 'tokens');
  fs.writeFileSync(tokenFile, `# one per line\n${TOKENS.join('\n')}\n`);
  const security = [
    ...['--tls-cert', pki.server.cert, '--tls-key', pki.server.key],
    ...['--tls-client-ca', pki['client-ca'].cert, '--auth-token-file', tokenFile],
  ];
  [repositoryServer, secured, ...replicas] = await Promise.all([
    startServer(repository, { modelFlag: '--model-repository', args: ['--model-name', 'digits'] }),
    startServer(article, { args: security }),
    startServer(article),
    startServer(article),
  ]);

  testSet = loadMnistSplit(DATA, 'test');
  const [, height, width] = testSet.images.shape;
  images = {
    data: testSet.images.data.subarray(0, COUNT * height * width),
    shape: [COUNT, height, width],
  };
  imagesFile = writeIdx(path.join(tempDir(), 'images.idx'), images.shape, images.data);
  for (const { name, version } of CHOICES) {
    const file = path.join(repository, name, version, 'model.onnx');
    expected[`${name}/${version}`] = await localLabels(file, images);
  }
  expected.article = await localLabels(article, testSet.images);
  // Otherwise a client ignoring the version could pass.
  assert.notDeepEqual(expected['digits2/3'], expected['digits2/2']);

  await Promise.all([
    ready(repositoryServer.target),
    ready(secured.target, securedOptions()),
    ...replicas.map((replica) => ready(replica.target)),
  ]);
}, TIMEOUT);

after(async () => {
  for (const running of [repositoryServer, secured, ...(replicas ?? [])]) {
    if (running && running.process.signalCode !== 'SIGKILL') {
      assert.equal(await running.stop(), 0, `server did not exit cleanly:\n${running.stderr()}`);
    }
  }
}, TIMEOUT);

describe('choosing the model and its version', TIMEOUT, () => {
  test('the library reaches each model and version on both APIs', async () => {
    for (const { asked, name, version } of CHOICES) {
      const client = new Client(repositoryServer.target, asked);
      try {
        const info = await client.modelInfo();
        assert.deepEqual([info.model_name, info.model_version], [name, version]);
        assert.equal((await client.modelMetadata()).name, name);
        for (const api of ['predict', 'infer']) {
          const result = await client[api](images);
          const label = `${api} with ${JSON.stringify(asked)}`;
          assert.deepEqual([result.modelName, result.modelVersion], [name, version], label);
          assert.deepEqual(result.labels, expected[`${name}/${version}`], label);
        }
        // Only the label was asked for, though Triton-style metadata declares it [-1, 1].
        assert.deepEqual(Object.keys((await client.infer(images)).outputs), ['label']);
      } finally {
        client.close();
      }
    }
  });

  test("uint8 pixels sent as float32 are scaled by the model's own input_scale", async () => {
    // The server scales UINT8 by the model's input_scale (2/255 here); the client must too
    // when it sends FLOAT32 (v1 dtype float32, v2 to an FP32 model) or runs the file itself.
    const client = new Client(repositoryServer.target, { modelName: 'scaled' });
    const onnx = await OnnxModel.load(path.join(repository, 'scaled', '1', 'model.onnx'));
    try {
      const served = await client.predict(images, { dtype: 'uint8', scores: true });
      const sent = await client.predict(images, { dtype: 'float32', scores: true });
      assert.deepEqual(sent.scores, served.scores);
      const { outputs } = await client.infer(images, { outputs: ['scores'] });
      assert.deepEqual(outputs.scores.data, served.scores);
      assert.deepEqual((await onnx.predict(images, { scores: true })).scores, served.scores);
      // Otherwise a client ignoring the scale could pass.
      const original = await OnnxModel.load(article);
      try {
        const unscaled = (await original.predict(images, { scores: true })).scores;
        assert.notDeepEqual(unscaled, served.scores);
      } finally {
        await original.release();
      }
    } finally {
      client.close();
      await onnx.release();
    }
  });

  test('an unknown model or version is NOT_FOUND on both APIs', async () => {
    for (const asked of [{ modelName: 'nope' }, { modelName: 'digits2', modelVersion: '1' }]) {
      const client = new Client(repositoryServer.target, asked);
      try {
        for (const call of [() => client.predict(images), () => client.infer(images)]) {
          await assert.rejects(call, (error) => {
            assert.ok(error instanceof RpcError, String(error));
            assert.equal(error.code, NOT_FOUND);
            assert.match(error.message, /unknown model: '(nope|digits2)'/);
            return true;
          });
        }
      } finally {
        client.close();
      }
    }
  });

  test('CLI --model and --model-version: the answering model and its labels', async () => {
    // The library covers every choice on both APIs; here, that the flags reach it.
    const runs = [
      [['--model', 'digits2', '--model-version', '2'], 'v1', CHOICES[2]],
      [['--model', 'digits2'], 'v2', CHOICES[1]],
    ];
    for (const [flags, api, { name, version }] of runs) {
      const args = ['predict', '--target', repositoryServer.target, '--api', api, ...flags];
      const result = await cli([...args, '--json', imagesFile]);
      assert.equal(result.status, 0, result.stderr);
      const [answer] = JSON.parse(result.stdout).files;
      assert.deepEqual([answer.model_name, answer.model_version], [name, version], args.join(' '));
      assert.deepEqual(answer.labels, expected[`${name}/${version}`], args.join(' '));
    }
    const info = await cli(['info', '--target', repositoryServer.target]);
    assert.equal(info.status, 0, info.stderr);
    const { model_name: name, model_version: version } = JSON.parse(info.stdout);
    assert.deepEqual([name, version], ['digits', '1']);
    assertOneLineError(
      await cli([
        'info',
        '--target',
        repositoryServer.target,
        '--model',
        'digits2',
        '--model-version',
        '7',
      ]),
      1,
      /GetModelInfo failed: NOT_FOUND: .*'digits2' version 7/,
    );
  });
});

describe("the model's max batch size", TIMEOUT, () => {
  test('requests stay within it on both APIs, whatever batch size is asked', async () => {
    // `small` takes at most 4 images a request (ModelConfig and GetModelInfo say so): 10 images
    // must go as three requests, or the server refuses them.
    const [, height, width] = images.shape;
    const ten = { data: images.data.subarray(0, 10 * height * width), shape: [10, height, width] };
    for (const options of [{}, { batchSize: 100 }]) {
      const client = new Client(repositoryServer.target, { modelName: 'small', ...options });
      try {
        for (const api of ['predict', 'infer']) {
          const { labels } = await client[api](ten);
          assert.deepEqual(
            labels,
            expected['digits/1'].slice(0, 10),
            `${api} ${options.batchSize}`,
          );
        }
      } finally {
        client.close();
      }
    }
    for (const api of ['v1', 'v2']) {
      const args = ['predict', '--target', repositoryServer.target, '--model', 'small'];
      const result = await cli([...args, '--api', api, '--json', imagesFile]);
      assert.equal(result.status, 0, result.stderr);
      assert.deepEqual(JSON.parse(result.stdout).files[0].labels, expected['digits/1'], api);
    }
  });
});

describe('TLS, mutual TLS and bearer tokens', TIMEOUT, () => {
  test('the right client is served on both APIs', async () => {
    const client = new Client(secured.target, securedOptions());
    try {
      assert.deepEqual((await client.predict(images)).labels, expected['digits/1']);
      assert.deepEqual((await client.infer(images)).labels, expected['digits/1']);
    } finally {
      client.close();
    }
  });

  test('CLI: --tls-ca, --tls-cert/--tls-key, and --token-file or SCRATCHNET_TOKEN', async () => {
    const tls = [
      '--tls-ca',
      pki.ca.cert,
      '--tls-cert',
      pki.client.cert,
      '--tls-key',
      pki.client.key,
    ];
    const token = path.join(tempDir(), 'token');
    fs.writeFileSync(token, `${TOKENS[0]}\n`);
    for (const [api, extra, env] of [
      ['v1', ['--token-file', token], {}],
      ['v2', [], { SCRATCHNET_TOKEN: TOKENS[1] }],
    ]) {
      const args = ['predict', '--target', secured.target, '--api', api, ...tls, ...extra];
      const result = await cli([...args, '--json', imagesFile], { env });
      assert.equal(result.status, 0, result.stderr);
      assert.equal(result.stderr, ''); // not even grpc-js's IP-address warning
      assert.deepEqual(JSON.parse(result.stdout).files[0].labels, expected['digits/1'], api);
    }
  });

  test('refusals: one line saying what to change, and the right status', async () => {
    const base = ['info', '--target', secured.target];
    const ca = (name) => ['--tls-ca', pki[name].cert];
    const client = (name) => ['--tls-cert', pki[name].cert, '--tls-key', pki[name].key];
    const withToken = { env: { SCRATCHNET_TOKEN: TOKENS[0] } };
    // prettier-ignore
    const cases = [
      ['plaintext', [], withToken, /UNAVAILABLE: .*If it requires TLS, pass --tls-ca FILE/],
      ['another CA', [...ca('other-ca'), ...client('client')], withToken,
        /UNAVAILABLE: .*over TLS.*is its certificate signed by the CA trusted \(--tls-ca\)/],
      ['no client certificate', ca('ca'), withToken,
        /UNAVAILABLE: .*accept clients without a certificate \(else pass --tls-cert FILE/],
      ['a stranger certificate', [...ca('ca'), ...client('stranger')], withToken,
        /UNAVAILABLE: .*accept this client certificate \(--tls-cert\)/],
      ['no token', [...ca('ca'), ...client('client')], { env: { SCRATCHNET_TOKEN: '' } },
        /UNAUTHENTICATED: missing or wrong bearer token.*no bearer token was sent: pass --token-file/],
      ['a wrong token', [...ca('ca'), ...client('client')], { env: { SCRATCHNET_TOKEN: 'guess' } },
        /UNAUTHENTICATED: .*the bearer token sent \(--token-file or SCRATCHNET_TOKEN\) was refused/],
    ];
    for (const [what, flags, options, pattern] of cases) {
      const result = await cli([...base, ...flags], options);
      assertOneLineError(result, 1, pattern);
      assert.doesNotMatch(result.stderr, /guess|first-token/, `${what}: the token is printed`);
    }
    const codes = [
      [securedOptions({ client: null }), UNAVAILABLE],
      [securedOptions({ token: 'guess' }), UNAUTHENTICATED],
    ];
    for (const [options, code] of codes) {
      const refused = new Client(secured.target, options);
      try {
        await assert.rejects(
          () => refused.modelInfo(),
          (error) => error.code === code,
        );
      } finally {
        refused.close();
      }
    }
  });

  test('a key that is not the certificate’s is named before connecting', async () => {
    const flags = [
      '--tls-ca',
      pki.ca.cert,
      '--tls-cert',
      pki.client.cert,
      '--tls-key',
      pki.stranger.key,
    ];
    assertOneLineError(
      await cli(['info', '--target', secured.target, ...flags]),
      2,
      /--tls-key .*stranger\.key is not the key of --tls-cert .*client\.crt/,
    );
  });
});

describe('replicas: several targets, round robin, retries', TIMEOUT, () => {
  test("both replicas get traffic; labels equal one server's, on both APIs", async () => {
    const targets = replicas.map((replica) => replica.target).join(',');
    const before = await Promise.all(replicas.map((replica) => served(replica.target)));
    const client = new Client(targets, { batchSize: 500 });
    try {
      assert.deepEqual((await client.predict(testSet.images)).labels, expected.article);
      assert.deepEqual((await client.infer(testSet.images)).labels, expected.article);
    } finally {
      client.close();
    }
    const after = await Promise.all(replicas.map((replica) => served(replica.target)));
    const calls = after.map((stats, i) => stats.calls - before[i].calls);
    const scored = after.reduce((sum, stats, i) => sum + stats.images - before[i].images, 0);
    assert.ok(
      calls.every((count) => count > 0),
      `calls per replica: ${calls}`,
    );
    assert.equal(scored, 2 * testSet.labels.length, 'each image scored once per API');
  });

  test('CLI score --target A,B: the accuracy of one server', async () => {
    const targets = replicas.map((replica) => replica.target).join(',');
    const result = await cli(['score', '--target', targets, '--json']);
    assert.equal(result.status, 0, result.stderr);
    const score = JSON.parse(result.stdout);
    assert.equal(score.accuracy, accuracy(expected.article));
    assert.equal(score.total, testSet.labels.length);
  });

  test('replicas must serve one model, and the tightest limits hold', async () => {
    // The article's model with tighter limits, and another model under the same name and version.
    const [tight, stranger] = await Promise.all([
      startServer(article, { args: ['--max-batch', '500', '--max-message-mb', '1'] }),
      startServer(variant),
    ]);
    const [, survivor] = replicas; // the other one is killed by the next test
    try {
      // A replica still loading its model answers UNAVAILABLE, and would be skipped.
      await Promise.all([ready(tight.target), ready(stranger.target)]);
      const dead = await deadTarget(); // down: skipped
      for (const listed of [
        [tight, survivor],
        [survivor, tight],
      ]) {
        const targets = `${listed.map((server) => server.target).join(',')},${dead}`;
        const client = new Client(targets, { batchSize: COUNT });
        try {
          const info = await client.modelInfo();
          assert.deepEqual([info.max_batch_size, info.max_message_bytes], [500, 1 << 20], targets);
          assert.equal(Number((await client.modelConfig()).max_batch_size), 500, targets);
          // Requests of 1,024 images (the other's limit) would pass neither limit of `tight`, and
          // 500 float32 images (1.5 MiB) not its message limit.
          for (const dtype of ['uint8', 'float32']) {
            const { labels } = await client.predict(images, { dtype });
            assert.deepEqual(labels, expected['digits/1'], `${targets} ${dtype}`);
          }
        } finally {
          client.close();
        }
      }
      const mixed = `${survivor.target},${stranger.target}`;
      const model = (server) => `${server.target}: artifact [0-9a-f]{12}, 28x28 images, 10 classes`;
      const refused = new RegExp(
        `the replicas of ${mixed} serve different models as 'scratchnet' version 1 ` +
          `\\(${model(survivor)}; ${model(stranger)}\\): expected the same model on every replica$`,
      );
      // v2 with --model asks ModelMetadata only (without, v1 GetModelInfo names the model).
      for (const flags of [
        ['--api', 'v1'],
        ['--api', 'v2', '--model', 'scratchnet'],
      ]) {
        assertOneLineError(await cli(['info', '--target', mixed, ...flags]), 1, refused);
      }
    } finally {
      assert.equal(await tight.stop(), 0);
      assert.equal(await stranger.stop(), 0);
    }
  });

  test('a replica killed with SIGKILL mid-run costs no image and no accuracy', async () => {
    const [victim, survivor] = replicas;
    const rounds = 5;
    const results = [];
    const client = new Client(`${victim.target},${survivor.target}`, { batchSize: 100 });
    let roundsBeforeKill;
    try {
      const start = await served(victim.target);
      const run = (async () => {
        for (let round = 0; round < rounds; round += 1) {
          results.push(await client.predict(testSet.images));
        }
      })();
      // Kill the victim once it has answered this run: the run is under way and uses both.
      while ((await served(victim.target)).calls === start.calls) {
        await sleep(5);
      }
      victim.process.kill('SIGKILL');
      roundsBeforeKill = results.length;
      await run;
    } finally {
      client.close();
    }
    assert.equal(await victim.stop(), null);
    assert.ok(roundsBeforeKill < rounds, 'the run ended before the replica was killed');
    assert.equal(results.length, rounds);
    for (const { labels } of results) {
      assert.deepEqual(labels, expected.article); // every image once, in order, as before
      assert.equal(accuracy(labels), accuracy(expected.article));
    }
  });
});
