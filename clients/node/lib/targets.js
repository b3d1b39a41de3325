'use strict';

/**
 * Where calls go: one server, or several replicas behind gRPC's own client-side load balancing.
 * The same forms and semantics as the Python and C++ clients:
 *
 *   HOST:PORT                 one server, one connection (gRPC's default pick_first)
 *   HOST:PORT,HOST:PORT,...   replicas: each HOST resolved here, every address handed to gRPC as
 *                             one `ipv4:` (or `ipv6:`) target
 *   dns:///NAME:PORT          every address NAME resolves to (re-resolved by gRPC); also
 *   ipv4:A:P,A:P / ipv6:...   gRPC's own address lists
 *
 * Replicas get a service config, the Python client's (clients/targets.py): `round_robin`, and a
 * retry policy under which an idempotent unary call (Predict, ModelInfer, the describe and
 * readiness calls) failing with UNAVAILABLE is tried again, on the next replica, within the
 * call's deadline.
 */

const dns = require('node:dns/promises');
const net = require('node:net');
const { ScratchnetError } = require('./errors');

/** Tries of one call, the first included: gRPC caps maxAttempts at 5. */
const RETRY_ATTEMPTS = 5;
/**
 * gRPC retries a call only while it still holds the request (grpc-js keeps 1 MiB per call by
 * default, about one default batch): this covers the server's default message limit (64 MiB).
 */
const RETRY_BUFFER_BYTES = 64 * 1024 * 1024;
// Idempotent calls: answering twice gives the same reply, so a retry is always safe.
const RETRIED = {
  'scratchnet.v1.Classifier': ['Predict', 'GetModelInfo'],
  'inference.GRPCInferenceService': [
    'ModelInfer',
    'ModelMetadata',
    'ModelReady',
    'ServerLive',
    'ServerReady',
    'ServerMetadata',
  ],
};
/** The service config of a channel to replicas (gRPC's JSON form). */
const SERVICE_CONFIG = {
  loadBalancingConfig: [{ round_robin: {} }],
  methodConfig: [
    {
      name: Object.entries(RETRIED).flatMap(([service, methods]) =>
        methods.map((method) => ({ service, method })),
      ),
      retryPolicy: {
        maxAttempts: RETRY_ATTEMPTS,
        initialBackoff: '0.05s',
        maxBackoff: '1s',
        backoffMultiplier: 2,
        retryableStatusCodes: ['UNAVAILABLE'],
      },
    },
  ],
};
const SCHEMES = ['dns:', 'ipv4:', 'ipv6:', 'unix:', 'unix-abstract:'];
const EXPECTED =
  'expected HOST:PORT, several separated by commas (HOST:PORT,HOST:PORT), ' +
  'or a gRPC name such as dns:///HOST:PORT';

/**
 * A parsed --target, before any name is resolved.
 * @typedef {object} Targets
 * @property {string} text the target as written, for messages
 * @property {{text: string, host: string, port: number}[]} [addresses] the HOST:PORTs of a list
 *   (or of one), each as written too
 * @property {number | undefined} replicas addresses listed: 1 for HOST:PORT; undefined when a
 *   resolver decides (dns:///NAME:PORT)
 * @property {boolean} balanced whether calls may go to several servers: round robin, retries,
 *   unary calls instead of a stream pinned to one replica
 */

/**
 * Parse a --target; a malformed one throws ScratchnetError naming what was expected.
 * @param {string} text
 * @returns {Targets}
 */
function parseTargets(text) {
  if (typeof text !== 'string' || text === '') {
    throw new ScratchnetError(`target '${text}': ${EXPECTED}`);
  }
  if (SCHEMES.some((scheme) => text.startsWith(scheme))) {
    if (text.slice(text.indexOf(':') + 1).replace(/^\/+/, '') === '') {
      throw new ScratchnetError(`target '${text}': no address after the scheme; ${EXPECTED}`);
    }
    return { text, replicas: undefined, balanced: true };
  }
  const addresses = text.split(',').map((part) => hostPort(part.trim(), text));
  return { text, addresses, replicas: addresses.length, balanced: addresses.length > 1 };
}

/** {text, host, port} of "HOST:PORT" or "[V6]:PORT". */
function hostPort(part, text) {
  const colon = part.lastIndexOf(':');
  let host = part.slice(0, colon);
  const port = part.slice(colon + 1);
  if (host.startsWith('[') && host.endsWith(']')) {
    host = host.slice(1, -1);
  }
  if (
    colon < 0 ||
    host === '' ||
    !/^\d+$/.test(port) ||
    !(Number(port) > 0 && Number(port) < 65536)
  ) {
    throw new ScratchnetError(`target '${text}': ${EXPECTED}, e.g. 127.0.0.1:50051`);
  }
  return { text: part, host, port: Number(port) };
}

/**
 * What grpc-js connects to for `targets`, and the channel options that go with it. A list's
 * names are looked up now (all their addresses); one HOST:PORT and gRPC names go to grpc-js as
 * they are.
 * @param {Targets} targets
 * @returns {Promise<{channelTarget: string, channelOptions: object}>}
 */
async function channelFor(targets) {
  if (!targets.balanced) {
    return { channelTarget: targets.text, channelOptions: {} };
  }
  const channelOptions = {
    'grpc.service_config': JSON.stringify(SERVICE_CONFIG),
    // Ours, not one from a DNS TXT record.
    'grpc.service_config_disable_resolution': 1,
    'grpc.enable_retries': 1,
    'grpc.per_rpc_retry_buffer_size': RETRY_BUFFER_BYTES,
    'grpc.retry_buffer_size': 4 * RETRY_BUFFER_BYTES,
  };
  if (!targets.addresses) {
    return { channelTarget: targets.text, channelOptions };
  }
  const [first] = targets.addresses;
  if (net.isIP(first.host) === 0) {
    // TLS checks the server's certificate against the name written, not the address found.
    channelOptions['grpc.ssl_target_name_override'] = first.host;
  }
  return { channelTarget: await resolved(targets), channelOptions };
}

/** One `ipv4:` or `ipv6:` target listing every address of every HOST:PORT of a list. */
async function resolved(targets) {
  const found = { 4: [], 6: [] };
  const families = [];
  for (const { host, port } of targets.addresses) {
    const ips = await lookup(host, targets.text);
    families.push(new Set(ips.map(({ family }) => family)));
    for (const { address, family } of ips) {
      const entry = family === 6 ? `[${address}]:${port}` : `${address}:${port}`;
      if (!found[family].includes(entry)) {
        found[family].push(entry);
      }
    }
  }
  // One gRPC target has one scheme: IPv4 when every host has an IPv4 address, else IPv6.
  for (const family of [4, 6]) {
    if (families.every((have) => have.has(family))) {
      return `ipv${family}:${found[family].join(',')}`;
    }
  }
  throw new ScratchnetError(
    `target '${targets.text}': the hosts mix IPv4-only and IPv6-only addresses; list hosts of ` +
      'one family, or use a name with both',
  );
}

/** Every address of `host` (an IP literal is its own). */
async function lookup(host, text) {
  const family = net.isIP(host);
  if (family !== 0) {
    return [{ address: host, family }];
  }
  try {
    return await dns.lookup(host, { all: true });
  } catch (error) {
    throw new ScratchnetError(`target '${text}': cannot resolve '${host}' (${error.code})`);
  }
}

module.exports = { RETRY_ATTEMPTS, SERVICE_CONFIG, channelFor, parseTargets };
