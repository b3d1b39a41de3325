'use strict';

// --target without a server: one server or replicas, the gRPC target and service config each
// gives, and the messages for malformed ones.

const assert = require('node:assert/strict');
const { test } = require('node:test');
const { ScratchnetError } = require('../lib/errors');
const { SERVICE_CONFIG, channelFor, parseTargets } = require('../lib/targets');
const { python } = require('./support/live');

test('one HOST:PORT is one server: pick_first, no service config', async () => {
  const targets = parseTargets('127.0.0.1:50051');
  assert.equal(targets.balanced, false);
  assert.equal(targets.replicas, 1);
  assert.deepEqual(await channelFor(targets), {
    channelTarget: '127.0.0.1:50051',
    channelOptions: {},
  });
});

test('a list becomes one ipv4: target with round robin and retries on UNAVAILABLE', async () => {
  const targets = parseTargets('127.0.0.1:5001, 127.0.0.1:5002');
  assert.equal(targets.balanced, true);
  assert.equal(targets.replicas, 2);
  const { channelTarget, channelOptions } = await channelFor(targets);
  assert.equal(channelTarget, 'ipv4:127.0.0.1:5001,127.0.0.1:5002');
  const config = JSON.parse(channelOptions['grpc.service_config']);
  assert.deepEqual(config, SERVICE_CONFIG);
  assert.deepEqual(config.loadBalancingConfig, [{ round_robin: {} }]);
  const [{ name, retryPolicy }] = config.methodConfig;
  assert.deepEqual(retryPolicy.retryableStatusCodes, ['UNAVAILABLE']);
  for (const method of ['Predict', 'ModelInfer']) {
    assert.ok(
      name.some((entry) => entry.method === method),
      method,
    );
  }
  assert.ok(!name.some((entry) => entry.method === 'PredictStream'), 'streams are not retried');
  assert.equal(channelOptions['grpc.ssl_target_name_override'], undefined);
});

test('names in a list are resolved here; TLS checks the first name written', async () => {
  const { channelTarget, channelOptions } = await channelFor(
    parseTargets('localhost:5001,127.0.0.1:5002'),
  );
  assert.match(channelTarget, /^ipv4:127\.0\.0\.1:5001,127\.0\.0\.1:5002$/);
  assert.equal(channelOptions['grpc.ssl_target_name_override'], 'localhost');
  const v6 = await channelFor(parseTargets('[::1]:5001,[::1]:5002'));
  assert.equal(v6.channelTarget, 'ipv6:[::1]:5001,[::1]:5002');
});

test('gRPC names go as they are, balanced: a resolver decides the replicas', async () => {
  const targets = parseTargets('dns:///scratchnet-headless:50051');
  assert.deepEqual([targets.balanced, targets.replicas], [true, undefined]);
  const { channelTarget, channelOptions } = await channelFor(targets);
  assert.equal(channelTarget, 'dns:///scratchnet-headless:50051');
  assert.ok(channelOptions['grpc.service_config']);
});

test('malformed targets and unknown names: one line saying what was expected', async () => {
  for (const text of ['', 'nohost', 'h:', ':1', 'h:0', 'h:65536', 'h:1,', 'ipv4:']) {
    assert.throws(() => parseTargets(text), ScratchnetError, text);
  }
  assert.throws(() => parseTargets('h:x'), /target 'h:x': expected HOST:PORT, several/);
  await assert.rejects(
    channelFor(parseTargets('no-such-host.invalid:1,127.0.0.1:2')),
    /target 'no-such-host\.invalid:1,127\.0\.0\.1:2': cannot resolve 'no-such-host\.invalid'/,
  );
  await assert.rejects(
    channelFor(parseTargets('127.0.0.1:1,[::1]:2')),
    /mix IPv4-only and IPv6-only addresses/,
  );
});

test("the service config is the Python client's", () => {
  const script =
    'import json; from clients.targets import SERVICE_CONFIG; print(json.dumps(SERVICE_CONFIG))';
  assert.deepEqual(JSON.parse(python(['-c', script])), SERVICE_CONFIG);
});
