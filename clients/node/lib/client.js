'use strict';

// A client of the scratchnet server: both of its APIs on one channel — scratchnet.v1.Classifier
// (Predict, PredictStream, GetModelInfo) and the Open Inference Protocol's
// inference.GRPCInferenceService (ServerReady, ModelMetadata, ModelInfer, ...).

const { once } = require('node:events');
const grpc = require('@grpc/grpc-js');
const { RpcError, ScratchnetError, fromGrpcError } = require('./errors');
const { loadServices } = require('./protos');
const {
  DTYPES,
  argmaxRows,
  checkImages,
  convertImages,
  decodeRaw,
  dtypeOf,
  sliceImages,
  toRawBytes,
} = require('./tensor');

const DEFAULT_TIMEOUT_MS = 30_000;
// Without a batch size from the caller, a request carries at most this many bytes of pixels:
// far below gRPC's default 4 MB message limit, large enough to amortise a call.
const DEFAULT_BATCH_BYTES = 1 << 20;
// The Open Inference Protocol does not say how many images a model takes per request (Triton
// keeps it in ModelConfig), so without a batch size from the caller v2 requests stay at or below
// this — below scratchnet's default --max-batch (1024) and Triton's usual limits.
const V2_MAX_BATCH = 256;
// ModelInfer calls in flight at once when a batch is split: keeps the server's workers busy
// without queueing the whole set.
const V2_CONCURRENCY = 4;
const READY_POLL_MS = 50;

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
  async function worker() {
    while (next < count) {
      const i = next;
      next += 1;
      results[i] = await task(i);
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, count) }, worker));
  return results;
}

/** A scratchnet server at one target, over one insecure channel. */
class Client {
  /**
   * @param {string} target HOST:PORT
   * @param {object} [options]
   * @param {number} [options.timeoutMs] deadline of each call (a stream gets it once per batch)
   * @param {string} [options.modelName] model name for the Open Inference Protocol
   * @param {string} [options.modelVersion] model version for it; "" lets the server choose
   * @param {number} [options.batchSize] images per request when a batch is split
   * @param {string} [options.protoDir] folder of the .proto files (default: the repository's)
   * @param {object} [options.channelOptions] grpc-js channel options
   */
  constructor(target, options = {}) {
    if (typeof target !== 'string' || !/^.+:\d+$/.test(target)) {
      throw new ScratchnetError(`target '${target}': expected HOST:PORT`);
    }
    const { Classifier, GRPCInferenceService } = loadServices(options.protoDir);
    this.target = target;
    this.timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.modelName = options.modelName ?? 'scratchnet';
    this.modelVersion = options.modelVersion ?? '';
    this.batchSize = options.batchSize;
    if (this.batchSize !== undefined && !(Number.isInteger(this.batchSize) && this.batchSize > 0)) {
      throw new ScratchnetError(`batch size ${this.batchSize}: expected a positive integer`);
    }
    this.v1 = new Classifier(target, grpc.credentials.createInsecure(), options.channelOptions);
    // Both stubs share the first one's channel: one connection for both APIs.
    this.v2 = new GRPCInferenceService(target, grpc.credentials.createInsecure(), {
      channelOverride: this.v1.getChannel(),
    });
    this.cachedInfo = undefined;
    this.cachedMetadata = undefined;
  }

  /** Close the channel. */
  close() {
    this.v1.close();
  }

  /** @param {number} [ms] @returns {Date} */
  deadline(ms = this.timeoutMs) {
    return new Date(Date.now() + ms);
  }

  /**
   * One unary call, its error turned into an RpcError.
   * @param {grpc.Client} stub
   * @param {string} method
   * @param {object} request
   * @returns {Promise<any>}
   */
  unary(stub, method, request) {
    return new Promise((resolve, reject) => {
      stub[method](request, { deadline: this.deadline() }, (error, response) => {
        if (error) {
          reject(fromGrpcError(method, error));
        } else {
          resolve(response);
        }
      });
    });
  }

  /**
   * A bidirectional stream: send every request (respecting back-pressure), collect the responses.
   * @param {grpc.Client} stub
   * @param {string} method
   * @param {object[]} requests
   * @returns {Promise<any[]>}
   */
  async stream(stub, method, requests) {
    const call = stub[method]({ deadline: this.deadline(this.timeoutMs * requests.length) });
    const responses = [];
    const finished = new Promise((resolve, reject) => {
      call.on('data', (response) => responses.push(response));
      call.on('error', (error) => reject(fromGrpcError(method, error)));
      call.on('end', resolve);
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
   * The model's description from scratchnet.v1 GetModelInfo: input dtypes and shape, classes,
   * class labels, max batch size, ONNX metadata.
   * @returns {Promise<object>}
   */
  async modelInfo() {
    this.cachedInfo = await this.unary(this.v1, 'GetModelInfo', {});
    return this.cachedInfo;
  }

  /**
   * The model's metadata from the Open Inference Protocol (ModelMetadata): inputs, outputs,
   * versions, platform, properties.
   * @returns {Promise<object>}
   */
  async modelMetadata() {
    this.cachedMetadata = await this.unary(this.v2, 'ModelMetadata', {
      name: this.modelName,
      version: this.modelVersion,
    });
    return this.cachedMetadata;
  }

  /** Whether the server is live (OIP ServerLive). @returns {Promise<boolean>} */
  async serverLive() {
    return (await this.unary(this.v2, 'ServerLive', {})).live;
  }

  /** Whether the server is ready (OIP ServerReady). @returns {Promise<boolean>} */
  async serverReady() {
    return (await this.unary(this.v2, 'ServerReady', {})).ready;
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
    const end = Date.now() + timeoutMs;
    let last = 'no answer';
    while (Date.now() < end) {
      try {
        await new Promise((resolve, reject) => {
          this.v2.waitForReady(new Date(end), (error) => (error ? reject(error) : resolve()));
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

  /** Split a batch into requests: `batchSize` images, or ≤ 1 MB of pixels and ≤ `limit`. */
  batches(images, limit = Infinity) {
    const [, height, width] = images.shape;
    const bytesPerImage = height * width * images.data.BYTES_PER_ELEMENT;
    const size =
      this.batchSize ??
      Math.max(1, Math.min(limit, Math.floor(DEFAULT_BATCH_BYTES / bytesPerImage)));
    const parts = [];
    for (let start = 0; start < images.shape[0]; start += size) {
      parts.push(sliceImages(images, start, Math.min(start + size, images.shape[0])));
    }
    return parts;
  }

  /**
   * Classify images with scratchnet.v1 Predict (PredictStream when they span several requests).
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
    const limit = Number(info.max_batch_size) || Infinity;
    const requests = this.batches(convertImages(images, dtype), limit).map((batch) => ({
      images: { dtype: DTYPES[dtype].v1, shape: batch.shape, data: toRawBytes(batch.data) },
      return_scores: Boolean(options.scores),
      return_probabilities: Boolean(options.probabilities),
    }));
    const responses =
      requests.length === 1
        ? [await this.unary(this.v1, 'Predict', requests[0])]
        : await this.stream(this.v1, 'PredictStream', requests);
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
    const labelOutput = metadata.outputs.find(
      (o) => o.datatype === 'INT64' && o.shape.length === 1,
    );
    const wanted = options.outputs ?? (labelOutput ? [labelOutput.name] : []);
    const parts = this.batches(convertImages(images, dtype), V2_MAX_BATCH);
    const responses = await mapConcurrent(parts.length, V2_CONCURRENCY, (i) =>
      this.unary(this.v2, 'ModelInfer', {
        model_name: this.modelName,
        model_version: this.modelVersion,
        id: String(i),
        inputs: [{ name: input.name, datatype: DTYPES[dtype].v2, shape: parts[i].shape }],
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
 * Labels, scores and probabilities from decoded OIP outputs: labels from the INT64 [N] output, or
 * the argmax of the scores when only those came back.
 */
function predictionFromOutputs(outputs, metadata) {
  const entries = Object.values(outputs);
  const label = entries.find((o) => o.datatype === 'INT64' && o.shape.length === 1);
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

module.exports = { Client };
