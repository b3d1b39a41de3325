'use strict';

// A client of the scratchnet server: both of its APIs on one channel — scratchnet.v1.Classifier
// (Predict, PredictStream, GetModelInfo) and the Open Inference Protocol's
// inference.GRPCInferenceService (ServerReady, ModelMetadata, ModelInfer, ...).

const { once } = require('node:events');
const grpc = require('@grpc/grpc-js');
const { TOKEN_VARIABLE, parseToken } = require('./credentials');
const { RpcError, ScratchnetError, fromGrpcError } = require('./errors');
const { loadServices } = require('./protos');
const { channelFor, parseTargets } = require('./targets');
const {
  DTYPES,
  argmaxRows,
  checkImages,
  convertImages,
  decodeRaw,
  dtypeOf,
  inModelLayout,
  parseInputScale,
  sliceImages,
  toRawBytes,
} = require('./tensor');

const DEFAULT_TIMEOUT_MS = 30_000;
// The longest timeout taken, a day, as the Python client's MAX_TIMEOUT: grpc-js throws on deadlines
// past 10^8 hours and fails calls at once past the largest Date, so longer ones must be refused.
const MAX_TIMEOUT_MS = 86_400_000;
// Without a batch size from the caller, a request carries at most this many bytes of pixels:
// far below gRPC's default 4 MB message limit, large enough to amortise a call.
const DEFAULT_BATCH_BYTES = 1 << 20;
// The Open Inference Protocol does not say how many images a model takes per request: Triton's
// ModelConfig extension does, and is asked first. Without it, or a batch size from the caller, v2
// requests stay at or below this — below scratchnet's default --max-batch (1024) and Triton's
// usual limits.
const V2_MAX_BATCH = 256;
// ModelInfer calls in flight at once when a batch is split: keeps the server's workers busy
// without queueing the whole set.
const V2_CONCURRENCY = 4;
// Predict calls in flight per replica when batches go to several (at least two replicas' worth
// when a resolver decides): each replica works on one batch while the next one travels.
const CALLS_PER_REPLICA = 2;
const READY_POLL_MS = 50;
// Bytes of a Predict request or reply besides its pixels, labels and scores (fields, lengths,
// names), generously rounded up; what one image costs in a reply: its label (a varint of at most
// 10 bytes) and a float per class per matrix asked for. The Python client's sizes.
const MESSAGE_OVERHEAD = 4096;
const LABEL_BYTES = 10;
const FLOAT_BYTES = 4;

/**
 * What a prediction returns. `scores` and `probabilities` are row-major [N, numClasses].
 * @typedef {object} Prediction
 * @property {number[]} labels predicted class index of each image
 * @property {Float32Array | undefined} scores
 * @property {Float32Array | undefined} probabilities
 * @property {number} numClasses
 * @property {string} modelName
 * @property {string} modelVersion
 * @property {Record<string, {datatype: string, shape: number[], data: number[] | Float32Array}>}
 *   [outputs] every output returned (Open Inference Protocol only)
 */

/** Concatenate Float32Arrays (undefined when there are none). @param {Float32Array[]} parts */
function concatFloats(parts) {
  if (parts.length === 0 || parts.some((p) => p === undefined)) {
    return undefined;
  }
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/** Run `task(i)` for i in [0, count) with at most `limit` pending; results in order. */
async function mapConcurrent(count, limit, task) {
  const results = new Array(count);
  let next = 0;
  let failed = false;
  async function worker() {
    while (next < count && !failed) {
      const i = next;
      next += 1;
      try {
        results[i] = await task(i);
      } catch (error) {
        failed = true; // start no more tasks: the first error is the answer
        throw error;
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, count) }, worker));
  return results;
}

/**
 * A scratchnet server, or replicas of one (see targets.js), over one channel: plaintext, or TLS
 * when `tls` is given; every call carries the bearer token when `token` is given.
 */
class Client {
  #token;
  #connection;
  #closed = false;

  /**
   * @param {string} target HOST:PORT; replicas: HOST:PORT,HOST:PORT,... or dns:///NAME:PORT
   * @param {object} [options]
   * @param {number} [options.timeoutMs] deadline of each call (a stream gets it once per batch,
   *   and each of its answers must come within it)
   * @param {string} [options.modelName] the model to ask (both APIs); default: the server's
   *   default model (for the Open Inference Protocol, the one GetModelInfo names)
   * @param {string} [options.modelVersion] its version; default "": the newest the server has
   * @param {number} [options.batchSize] images per request when a batch is split
   * @param {true | {ca?: Buffer, cert?: Buffer, key?: Buffer}} [options.tls] TLS: the PEM CA(s)
   *   to trust (default: the system's), and a client certificate and key for mutual TLS
   * @param {string} [options.token] bearer token, sent as `authorization: Bearer <token>`
   * @param {string} [options.protoDir] folder of the .proto files (default: the repository's)
   * @param {object} [options.channelOptions] grpc-js channel options
   */
  constructor(target, options = {}) {
    this.targets = parseTargets(target);
    this.target = target;
    this.timeoutMs = checkTimeout(options.timeoutMs ?? DEFAULT_TIMEOUT_MS);
    this.modelName = options.modelName || undefined;
    this.modelVersion = options.modelVersion ?? '';
    this.batchSize = options.batchSize;
    if (this.batchSize !== undefined && !(Number.isInteger(this.batchSize) && this.batchSize > 0)) {
      throw new ScratchnetError(`batch size ${this.batchSize}: expected a positive integer`);
    }
    const tls = options.tls === true ? {} : options.tls;
    if (tls && Boolean(tls.cert) !== Boolean(tls.key)) {
      throw new ScratchnetError('tls.cert and tls.key go together: give both or neither');
    }
    this.tls = tls;
    this.#token = options.token === undefined ? undefined : parseToken('token', options.token);
    this.protoDir = options.protoDir;
    this.channelOptions = options.channelOptions;
    this.cachedInfo = undefined;
    this.cachedMetadata = undefined;
    this.cachedConfig = undefined;
  }

  /**
   * The two stubs, sharing one channel (made on first use: a list of replicas' names is looked
   * up then).
   * @returns {Promise<{v1: grpc.Client, v2: grpc.Client}>}
   */
  connection() {
    this.#connection ??= (async () => {
      const { Classifier, GRPCInferenceService } = loadServices(this.protoDir);
      const { channelTarget, channelOptions } = await channelFor(this.targets);
      if (this.#closed) {
        throw new ScratchnetError(`the client of ${this.target} is closed`);
      }
      const credentials = this.tls
        ? grpc.credentials.createSsl(
            this.tls.ca ?? null,
            this.tls.key ?? null,
            this.tls.cert ?? null,
          )
        : grpc.credentials.createInsecure();
      const v1 = new Classifier(channelTarget, credentials, {
        ...channelOptions,
        ...this.channelOptions,
      });
      // Both stubs share the first one's channel: one connection for both APIs.
      const v2 = new GRPCInferenceService(channelTarget, credentials, {
        channelOverride: v1.getChannel(),
      });
      return { v1, v2 };
    })();
    return this.#connection;
  }

  /** Close the channel. */
  close() {
    this.#closed = true;
    this.#connection?.then(
      ({ v1 }) => v1.close(),
      () => {},
    );
  }

  /** @param {number} [ms] @returns {Date} */
  deadline(ms = this.timeoutMs) {
    return new Date(Date.now() + ms);
  }

  /** Metadata of every call: the bearer token, if any. @returns {grpc.Metadata} */
  metadata() {
    const metadata = new grpc.Metadata();
    if (this.#token !== undefined) {
      metadata.set('authorization', `Bearer ${this.#token}`);
    }
    return metadata;
  }

  /**
   * A failed call as an RpcError, with a hint when the cause is likely in how we connect.
   * @param {string} method
   * @param {Error} error what grpc-js reported
   * @returns {Error}
   */
  failure(method, error) {
    const hints = {
      [grpc.status.UNAUTHENTICATED]:
        this.#token === undefined
          ? `no bearer token was sent: pass --token-file FILE or set ${TOKEN_VARIABLE}`
          : `the bearer token sent (--token-file or ${TOKEN_VARIABLE}) was refused`,
      [grpc.status.UNAVAILABLE]: this.tls
        ? `over TLS to ${this.target}: is the server up, does it serve TLS, is its certificate ` +
          'signed by the CA trusted (--tls-ca), and does it accept ' +
          (this.tls.cert
            ? 'this client certificate (--tls-cert)?'
            : 'clients without a ' + 'certificate (else pass --tls-cert FILE --tls-key FILE)?')
        : `is the server at ${this.target} up? If it requires TLS, pass --tls-ca FILE (and ` +
          '--tls-cert FILE --tls-key FILE if it requires a client certificate)',
    };
    if (error.code === grpc.status.DEADLINE_EXCEEDED) {
      // grpc-js's own details list its internal stages ("name resolution: 0.008s,…").
      return new RpcError(
        method,
        error.code,
        `no answer within ${this.timeoutMs} ms`,
        'raise the timeout (--timeout, or timeoutMs) for a busy server',
      );
    }
    return fromGrpcError(method, error, hints[error.code]);
  }

  /**
   * One unary call, its error turned into an RpcError.
   * @param {'v1' | 'v2'} api which stub
   * @param {string} method
   * @param {object} request
   * @returns {Promise<any>}
   */
  async unary(api, method, request) {
    const stub = (await this.connection())[api];
    return new Promise((resolve, reject) => {
      stub[method](request, this.metadata(), { deadline: this.deadline() }, (error, response) => {
        if (error) {
          reject(this.failure(method, error));
        } else {
          resolve(response);
        }
      });
    });
  }

  /**
   * A bidirectional stream: send every request (respecting back-pressure), collect the responses.
   * @param {'v1' | 'v2'} api which stub
   * @param {string} method
   * @param {object[]} requests
   * @returns {Promise<any[]>}
   */
  async stream(api, method, requests) {
    const stub = (await this.connection())[api];
    const call = stub[method](this.metadata(), {
      deadline: this.deadline(this.timeoutMs * requests.length),
    });
    const responses = [];
    let idle;
    const finished = new Promise((resolve, reject) => {
      // Each answer gets the timeout anew: a server that stops answering fails the call after
      // it, not after the whole stream's deadline (the timeout times the batches).
      const wait = () => {
        clearTimeout(idle);
        idle = setTimeout(() => {
          reject(
            new RpcError(
              method,
              grpc.status.DEADLINE_EXCEEDED,
              `no answer within ${this.timeoutMs} ms (${responses.length} of ` +
                `${requests.length} batches answered)`,
            ),
          );
          call.cancel();
        }, this.timeoutMs);
      };
      wait();
      call.on('data', (response) => {
        responses.push(response);
        wait();
      });
      call.on('error', (error) => {
        clearTimeout(idle);
        reject(this.failure(method, error));
      });
      call.on('end', () => {
        clearTimeout(idle);
        resolve();
      });
    });
    // The writer stops at the first error; `finished` reports it.
    const writing = (async () => {
      for (const request of requests) {
        if (!call.write(request)) {
          await Promise.race([once(call, 'drain'), finished]);
        }
      }
      call.end();
    })();
    await Promise.all([finished, writing]);
    if (responses.length !== requests.length) {
      throw new RpcError(
        method,
        grpc.status.INTERNAL,
        `${responses.length} responses to ${requests.length} requests`,
      );
    }
    return responses;
  }

  /**
   * The model's description from scratchnet.v1 GetModelInfo: name and version, input dtypes and
   * shape, classes, class labels, max batch size, ONNX metadata. Over listed replicas, every one
   * that answers must serve the same model, and the tightest of their limits is given.
   * @returns {Promise<object>}
   */
  async modelInfo() {
    const info = await this.unary('v1', 'GetModelInfo', {
      model_name: this.modelName ?? '',
      model_version: this.modelVersion,
    });
    this.cachedInfo = this.listsReplicas() ? await this.agreedInfo(info) : info;
    return this.cachedInfo;
  }

  /**
   * `info`, checked against each listed replica on its own: round robin would otherwise mix the
   * answers of different models served under one name and version (every export is version 1),
   * and size batches by one replica's limits only. Each is asked for the model and version
   * `info` names.
   */
  async agreedInfo(info) {
    const pinned = { model_name: info.model_name, model_version: info.model_version };
    const answers = await this.eachReplica((replica) =>
      replica.unary('v1', 'GetModelInfo', pinned),
    );
    this.checkSameModel(info.model_name, info.model_version, answers, (found) => {
      const labels = found.class_labels;
      return identity(found.metadata.artifact_sha256, found.input_shape, labels, labels.length);
    });
    const all = [info, ...answers.values()];
    return {
      ...info,
      max_batch_size: tightest(all.map((found) => found.max_batch_size)),
      max_message_bytes: tightest(all.map((found) => found.max_message_bytes)),
    };
  }

  /** Whether the target lists several replicas, each of which can be asked on its own. */
  listsReplicas() {
    return (this.targets.addresses?.length ?? 0) > 1;
  }

  /**
   * `ask(client)` of each listed replica, through a client of its address alone; a Map from the
   * address as listed to the answer. Replicas that are down (UNAVAILABLE) are left out: calls go
   * to the others, and gRPC tries them again later.
   */
  async eachReplica(ask) {
    const answers = await Promise.all(
      this.targets.addresses.map(async ({ text }) => {
        const replica = new Client(text, {
          timeoutMs: this.timeoutMs,
          tls: this.tls,
          token: this.#token,
          protoDir: this.protoDir,
          channelOptions: this.channelOptions,
        });
        try {
          return [[text, await ask(replica)]];
        } catch (error) {
          if (error.code !== grpc.status.UNAVAILABLE) {
            throw error;
          }
          return [];
        } finally {
          replica.close();
        }
      }),
    );
    return new Map(answers.flat());
  }

  /** Throw, naming each replica's model, when the `answers` describe more than one model. */
  checkSameModel(name, version, answers, identityOf) {
    const identities = [...answers].map(([address, found]) => [address, identityOf(found)]);
    if (new Set(identities.map(([, { key }]) => key)).size > 1) {
      const shown = identities.map(([address, { text }]) => `${address}: ${text}`).join('; ');
      throw new ScratchnetError(
        `the replicas of ${this.target} serve different models as '${name}' version ${version} ` +
          `(${shown}): expected the same model on every replica`,
      );
    }
  }

  /**
   * The name of the model to ask over the Open Inference Protocol, which has no default model:
   * the one given, else the one scratchnet.v1 GetModelInfo names.
   * @returns {Promise<string>}
   */
  async v2ModelName() {
    if (this.modelName !== undefined) {
      return this.modelName;
    }
    try {
      return (this.cachedInfo ?? (await this.modelInfo())).model_name;
    } catch (error) {
      if (error.code === grpc.status.UNIMPLEMENTED) {
        throw new ScratchnetError(
          `the server at ${this.target} has no scratchnet.v1.Classifier to name its default ` +
            'model: pass the model name (--model NAME)',
        );
      }
      throw error;
    }
  }

  /**
   * The model's metadata from the Open Inference Protocol (ModelMetadata): inputs, outputs,
   * versions, platform, properties.
   * @returns {Promise<object>}
   */
  async modelMetadata() {
    const metadata = await this.unary('v2', 'ModelMetadata', {
      name: await this.v2ModelName(),
      version: this.modelVersion,
    });
    if (this.listsReplicas()) {
      // As agreedInfo, for the model ModelInfer calls will name.
      const pinned = { name: metadata.name, version: this.modelVersion };
      const answers = await this.eachReplica((replica) =>
        replica.unary('v2', 'ModelMetadata', pinned),
      );
      const version = this.modelVersion || metadata.versions.join(', ');
      this.checkSameModel(metadata.name, version, answers, (found) => {
        const { artifact_sha256: sha, class_labels: labels = '' } = found.properties ?? {};
        const scores = found.outputs.find((o) => o.datatype === 'FP32' && o.shape.length === 2);
        return identity(sha, found.inputs[0].shape, labels, Number(scores?.shape[1] ?? 0));
      });
    }
    this.cachedMetadata = metadata;
    return metadata;
  }

  /**
   * The model's configuration from Triton's model configuration extension (ModelConfig), whose
   * max_batch_size the Open Inference Protocol's metadata lacks; null when the server does not
   * offer the extension (UNIMPLEMENTED).
   * @returns {Promise<object | null>}
   */
  async modelConfig() {
    const name = (this.cachedMetadata ?? (await this.modelMetadata())).name;
    const ask = async (client) => {
      try {
        return (await client.unary('v2', 'ModelConfig', { name, version: this.modelVersion }))
          .config;
      } catch (error) {
        if (error.code !== grpc.status.UNIMPLEMENTED) {
          throw error;
        }
        return null;
      }
    };
    let config = await ask(this);
    if (config && this.listsReplicas()) {
      // The tightest max_batch_size of the replicas, whichever is listed first.
      const all = [config, ...(await this.eachReplica(ask)).values()];
      config = { ...config, max_batch_size: tightest(all.map((found) => found?.max_batch_size)) };
    }
    this.cachedConfig = config;
    return config;
  }

  /** Whether the server is live (OIP ServerLive). @returns {Promise<boolean>} */
  async serverLive() {
    return (await this.unary('v2', 'ServerLive', {})).live;
  }

  /** Whether the server is ready (OIP ServerReady). @returns {Promise<boolean>} */
  async serverReady() {
    return (await this.unary('v2', 'ServerReady', {})).ready;
  }

  /** ServerReady; on a server without the Open Inference Protocol, whether GetModelInfo works. */
  async readyNow() {
    try {
      return await this.serverReady();
    } catch (error) {
      if (error.code !== grpc.status.UNIMPLEMENTED) {
        throw error;
      }
      await this.modelInfo();
      return true;
    }
  }

  /**
   * Wait until the server answers ServerReady with true: the channel connects, then the model
   * loads. Rejects with an RpcError DEADLINE_EXCEEDED after `timeoutMs`.
   * @param {number} [timeoutMs]
   * @returns {Promise<void>}
   */
  async waitForReady(timeoutMs = this.timeoutMs) {
    checkTimeout(timeoutMs);
    const end = Date.now() + timeoutMs;
    const { v2 } = await this.connection();
    let last = 'no answer';
    while (Date.now() < end) {
      try {
        await new Promise((resolve, reject) => {
          v2.waitForReady(new Date(end), (error) => (error ? reject(error) : resolve()));
        });
        if (await this.readyNow()) {
          return;
        }
        last = 'ServerReady answered false';
      } catch (error) {
        last = error.message;
      }
      await new Promise((resolve) => setTimeout(resolve, READY_POLL_MS));
    }
    throw new RpcError(
      'ServerReady',
      grpc.status.DEADLINE_EXCEEDED,
      `${this.target} not ready after ${timeoutMs} ms (${last})`,
    );
  }

  /**
   * Split a batch into requests of at most `maxBatch` images (the model's limit): `batchSize`
   * images, or else ≤ 1 MB of pixels and ≤ `defaultLimit`.
   */
  batches(images, maxBatch = Infinity, defaultLimit = maxBatch) {
    const [, height, width] = images.shape;
    const bytesPerImage = height * width * images.data.BYTES_PER_ELEMENT;
    // A batch size above the model's limit is capped, as the Python client does: the server
    // would refuse every request.
    const size = Math.min(
      maxBatch,
      this.batchSize ??
        Math.max(1, Math.min(defaultLimit, Math.floor(DEFAULT_BATCH_BYTES / bytesPerImage))),
    );
    const parts = [];
    for (let start = 0; start < images.shape[0]; start += size) {
      parts.push(sliceImages(images, start, Math.min(start + size, images.shape[0])));
    }
    return parts;
  }

  /**
   * Classify images with scratchnet.v1 Predict: one call per request, or, when they span several,
   * one PredictStream to one server, or several Predict calls in flight to replicas.
   * @param {import('./tensor').ImageBatch} images [N, H, W] uint8 (0–255) or float32 ([0, 1])
   * @param {object} [options]
   * @param {boolean} [options.scores] also return scores
   * @param {boolean} [options.probabilities] also return probabilities
   * @param {'auto' | 'uint8' | 'float32'} [options.dtype] wire type; "auto" sends uint8 pixels as
   *   uint8 when the model accepts them, float32 otherwise
   * @returns {Promise<Prediction>}
   */
  async predict(images, options = {}) {
    checkImages(images);
    const info = this.cachedInfo ?? (await this.modelInfo());
    let dtype = options.dtype ?? 'auto';
    if (dtype === 'auto') {
      const accepted = new Set(info.input_dtypes);
      dtype = dtypeOf(images) === 'uint8' && accepted.has(DTYPES.uint8.v1) ? 'uint8' : 'float32';
    }
    if (!DTYPES[dtype]) {
      throw new ScratchnetError(`dtype '${dtype}': expected auto, uint8 or float32`);
    }
    const scale = parseInputScale(info.metadata?.input_scale, `model '${info.model_name}'`);
    const converted = convertImages(images, dtype, scale);
    const [, height, width] = converted.shape;
    const imageBytes = height * width * converted.data.BYTES_PER_ELEMENT;
    const matrices = [options.scores, options.probabilities].filter(Boolean).length;
    const replyBytes = LABEL_BYTES + matrices * FLOAT_BYTES * Number(info.num_classes);
    // Requests and replies stay under the server's message limit too (RESOURCE_EXHAUSTED else).
    const room = Number(info.max_message_bytes) - MESSAGE_OVERHEAD;
    const fitting =
      room > 0 ? Math.max(1, Math.floor(room / Math.max(imageBytes, replyBytes))) : Infinity;
    const limit = Math.min(Number(info.max_batch_size) || Infinity, fitting);
    const { balanced, replicas } = this.targets;
    // Replicas are asked for the model and version the first one described, so that a replica
    // serving another version fails the call (NOT_FOUND) instead of answering.
    const model = balanced
      ? { model_name: info.model_name, model_version: info.model_version }
      : { model_name: this.modelName ?? '', model_version: this.modelVersion };
    const requests = this.batches(converted, limit).map((batch) => ({
      images: { dtype: DTYPES[dtype].v1, shape: batch.shape, data: toRawBytes(batch.data) },
      return_scores: Boolean(options.scores),
      return_probabilities: Boolean(options.probabilities),
      ...model,
    }));
    let responses;
    if (requests.length === 1) {
      responses = [await this.unary('v1', 'Predict', requests[0])];
    } else if (balanced) {
      // A stream is one call, pinned to one replica: losing it would lose every batch still in
      // it. One call per batch lets gRPC retry each batch on another replica.
      const window = CALLS_PER_REPLICA * Math.max(2, replicas ?? 2);
      responses = await mapConcurrent(requests.length, window, (i) =>
        this.unary('v1', 'Predict', requests[i]),
      );
    } else {
      responses = await this.stream('v1', 'PredictStream', requests);
    }
    const first = responses[0];
    return {
      labels: responses.flatMap((r) => r.labels),
      scores: options.scores
        ? concatFloats(responses.map((r) => Float32Array.from(r.scores)))
        : undefined,
      probabilities: options.probabilities
        ? concatFloats(responses.map((r) => Float32Array.from(r.probabilities)))
        : undefined,
      numClasses: Number(first.num_classes),
      modelName: first.model_name,
      modelVersion: first.model_version,
    };
  }

  /**
   * Classify images with the Open Inference Protocol's ModelInfer (raw_input_contents), several
   * calls in flight when they span several requests.
   * @param {import('./tensor').ImageBatch} images [N, H, W] uint8 (0–255) or float32 ([0, 1])
   * @param {object} [options]
   * @param {string[]} [options.outputs] outputs to ask for; default: the model's INT64 label
   *   output, or every output when it has none
   * @returns {Promise<Prediction>}
   */
  async infer(images, options = {}) {
    checkImages(images);
    const metadata = this.cachedMetadata ?? (await this.modelMetadata());
    const input = metadata.inputs[0];
    const dtype = Object.keys(DTYPES).find((name) => DTYPES[name].v2 === input.datatype);
    if (!dtype) {
      throw new ScratchnetError(
        `input '${input.name}' of model '${metadata.name}': datatype ${input.datatype} ` +
          'is not supported; expected UINT8 or FP32',
      );
    }
    const labelOutput = metadata.outputs.find(isLabelOutput);
    const wanted = options.outputs ?? (labelOutput ? [labelOutput.name] : []);
    const config = this.cachedConfig === undefined ? await this.modelConfig() : this.cachedConfig;
    // 0 (or no ModelConfig) says nothing about the model's limit: stay under V2_MAX_BATCH then.
    const maxBatch = Number(config?.max_batch_size) || Infinity;
    // The server scales uint8 pixels by the model's input_scale; these are scaled here, alike.
    const scale = parseInputScale(metadata.properties?.input_scale, `model '${metadata.name}'`);
    const parts = this.batches(
      convertImages(images, dtype, scale),
      maxBatch,
      Math.min(maxBatch, V2_MAX_BATCH),
    );
    const responses = await mapConcurrent(parts.length, V2_CONCURRENCY, (i) =>
      this.unary('v2', 'ModelInfer', {
        model_name: metadata.name,
        model_version: this.modelVersion,
        id: String(i),
        inputs: [
          {
            name: input.name,
            datatype: DTYPES[dtype].v2,
            shape: inModelLayout(parts[i].shape, input.shape),
          },
        ],
        outputs: wanted.map((name) => ({ name })),
        raw_input_contents: [toRawBytes(parts[i].data)],
      }),
    );
    const outputs = mergeOutputs(responses);
    return {
      ...predictionFromOutputs(outputs, metadata),
      modelName: responses[0].model_name,
      modelVersion: responses[0].model_version,
      outputs,
    };
  }
}

/** The smallest positive limit of `limits` (numbers or strings), 0 (none) when there is none. */
function tightest(limits) {
  const set = limits.map(Number).filter((limit) => limit > 0);
  return set.length > 0 ? Math.min(...set) : 0;
}

/**
 * What tells two served models apart: the artifact they were exported from when they say (its
 * SHA-256), their image size and class labels; `text` shows it in a message.
 * @param {string | undefined} sha
 * @param {number[]} inputShape [N, H, W] or [N, 1, H, W]
 * @param {string[] | string} labels the class labels (a list, or v2's JSON property)
 * @param {number} classes how many
 */
function identity(sha = '', inputShape, labels, classes) {
  const [height, width] = inputShape.slice(-2).map(Number);
  const made = sha ? `artifact ${sha.slice(0, 12)}, ` : '';
  return {
    key: JSON.stringify([sha, height, width, labels, classes]),
    text: `${made}${height}x${width} images, ${classes} classes`,
  };
}

/**
 * A timeout in milliseconds, checked: positive and at most a day.
 * @param {number} ms
 * @returns {number}
 */
function checkTimeout(ms) {
  if (!(typeof ms === 'number' && ms > 0 && ms <= MAX_TIMEOUT_MS)) {
    throw new ScratchnetError(
      `timeout ${ms} ms: expected a positive number of milliseconds, at most ${MAX_TIMEOUT_MS} ` +
        '(a day)',
    );
  }
  return ms;
}

/**
 * Decode the raw outputs of ModelInfer responses (one per batch, in order) and join them along the
 * batch axis: {name: {datatype, shape, data}}.
 */
function mergeOutputs(responses) {
  const parts = {};
  for (const response of responses) {
    response.outputs.forEach((output, i) => {
      const raw = response.raw_output_contents[i];
      const data = decodeRaw(output.name, output.datatype, output.shape, raw);
      (parts[output.name] ??= []).push({ datatype: output.datatype, shape: output.shape, data });
    });
  }
  const outputs = {};
  for (const [name, list] of Object.entries(parts)) {
    const [first] = list;
    outputs[name] = {
      datatype: first.datatype,
      shape: [list.reduce((n, part) => n + part.shape[0], 0), ...first.shape.slice(1)],
      data: Array.isArray(first.data)
        ? list.flatMap((part) => part.data)
        : concatFloats(list.map((part) => part.data)),
    };
  }
  return outputs;
}

/**
 * Whether an OIP output holds one label per image: INT64 [N], or [N, 1] as Triton's metadata
 * declares a label whose config has `dims: [1]` and reshapes it to [] (python -m export
 * --triton-repo writes that).
 */
function isLabelOutput({ datatype, shape }) {
  return (
    datatype === 'INT64' && (shape.length === 1 || (shape.length === 2 && Number(shape[1]) === 1))
  );
}

/**
 * Labels, scores and probabilities from decoded OIP outputs: labels from the label output, or
 * the argmax of the scores when only those came back.
 */
function predictionFromOutputs(outputs, metadata) {
  const entries = Object.values(outputs);
  const label = entries.find(isLabelOutput);
  const scores =
    outputs.scores ?? entries.find((o) => o.datatype === 'FP32' && o.shape.length === 2);
  if (!label && !scores) {
    throw new ScratchnetError(
      `model '${metadata.name}' returned no INT64 [N] labels nor FP32 [N,C] scores`,
    );
  }
  const matrix = metadata.outputs.find((o) => o.datatype === 'FP32' && o.shape.length === 2);
  return {
    labels: label ? label.data : argmaxRows(scores.data, scores.shape[1]),
    scores: outputs.scores?.data,
    probabilities: outputs.probabilities?.data,
    numClasses: matrix ? Number(matrix.shape[1]) : undefined,
  };
}

module.exports = { Client, MAX_TIMEOUT_MS };
