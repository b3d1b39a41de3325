'use strict';

// "Loading model.onnx elsewhere": the exported model run directly by onnxruntime-node, with no
// server. Input and output names, dtypes and shapes come from the file.

const fs = require('node:fs');
const ort = require('onnxruntime-node');
const protobuf = require('protobufjs');
const { InputError, ScratchnetError } = require('./errors');
const {
  DTYPES,
  PIXEL_MAX,
  argmaxRows,
  checkImages,
  convertImages,
  inModelLayout,
  parseInputScale,
} = require('./tensor');

// Just enough of onnx.proto to read ModelProto.metadata_props (onnxruntime-node does not expose
// it); decoding skips every other field, the graph and its weights included.
const ONNX_METADATA = protobuf.Root.fromJSON({
  nested: {
    ModelProto: { fields: { metadata_props: { rule: 'repeated', type: 'Entry', id: 14 } } },
    Entry: { fields: { key: { type: 'string', id: 1 }, value: { type: 'string', id: 2 } } },
  },
}).lookupType('ModelProto');

/** model.onnx in an onnxruntime-node InferenceSession. */
class OnnxModel {
  /**
   * @param {ort.InferenceSession} session
   * @param {string} file
   */
  constructor(session, file, metadata = {}) {
    this.session = session;
    this.file = file;
    this.metadata = metadata;
    this.inputScale = parseInputScale(metadata.input_scale, file);
    const [input] = session.inputMetadata;
    this.inputName = input.name;
    // onnxruntime-node names tensor types as tensor.js's DTYPES does ('float32', 'uint8').
    this.inputType = Object.hasOwn(DTYPES, input.type) ? input.type : undefined;
    this.inputShape = input.shape;
    if (session.inputMetadata.length !== 1 || !this.inputType) {
      throw new InputError(
        `${file}: expected one float32 or uint8 input [N,H,W], ` +
          `got ${describe(session.inputMetadata)}`,
      );
    }
    const outputs = session.outputMetadata;
    this.labelOutput = outputs.find((o) => o.type === 'int64' && o.shape.length === 1)?.name;
    const scoresOutput =
      outputs.find((o) => o.name === 'scores') ??
      outputs.find((o) => o.type === 'float32' && o.shape.length === 2);
    this.scoresOutput = scoresOutput?.name;
    // From the file, for a run that fetches the labels only: [N, C] with C a number.
    const classes = scoresOutput?.shape?.[1];
    this.numClasses = typeof classes === 'number' && classes > 0 ? classes : undefined;
    if (!this.labelOutput && !this.scoresOutput) {
      throw new InputError(
        `${file}: expected an int64 [N] label or float32 [N,C] scores output, ` +
          `got ${describe(outputs)}`,
      );
    }
  }

  /**
   * Load a model file on the CPU.
   * @param {string} file path of model.onnx
   * @param {object} [options]
   * @param {number} [options.threads] intra-op threads (default: onnxruntime's choice)
   * @returns {Promise<OnnxModel>}
   */
  static async load(file, options = {}) {
    let session;
    try {
      session = await ort.InferenceSession.create(file, {
        executionProviders: ['cpu'],
        ...(options.threads ? { intraOpNumThreads: options.threads } : {}),
      });
    } catch (error) {
      throw new InputError(
        `${file}: onnxruntime-node cannot load it (${firstLine(error.message)})`,
      );
    }
    return new OnnxModel(session, file, readMetadata(file));
  }

  /**
   * Classify images: labels from the model's label output (or the argmax of its scores).
   * @param {import('./tensor').ImageBatch} images [N, H, W] uint8 (0–255) or float32 ([0, 1])
   * @param {object} [options]
   * @param {boolean} [options.scores] also return scores
   * @returns {Promise<import('./client').Prediction>}
   */
  async predict(images, options = {}) {
    checkPixels(checkImages(images), `input '${this.inputName}' of ${this.file}`, this.inputScale);
    const batch = convertImages(images, this.inputType, this.inputScale);
    const shape = inModelLayout(batch.shape, this.inputShape);
    const [, ...expected] = this.inputShape;
    const [, ...got] = shape;
    if (
      expected.length !== got.length ||
      expected.some((d, i) => typeof d === 'number' && d !== got[i])
    ) {
      throw new ScratchnetError(
        `input '${this.inputName}' of ${this.file}: ` +
          `expected shape [-1,${expected}], got [${shape}]`,
      );
    }
    const feeds = { [this.inputName]: new ort.Tensor(this.inputType, batch.data, shape) };
    const fetches = [
      this.labelOutput,
      options.scores || !this.labelOutput ? this.scoresOutput : undefined,
    ].filter(Boolean);
    const results = await this.session.run(feeds, fetches);
    const scores = this.scoresOutput && results[this.scoresOutput];
    const numClasses = scores ? scores.dims[1] : this.numClasses;
    return {
      labels: this.labelOutput
        ? Array.from(results[this.labelOutput].data, Number)
        : argmaxRows(scores.data, numClasses),
      scores: options.scores ? scores.data : undefined,
      probabilities: undefined,
      numClasses,
      modelName: undefined, // no server answered: the CLI names none
      modelVersion: undefined,
    };
  }

  /** Release the session's native resources. @returns {Promise<void>} */
  release() {
    return this.session.release();
  }
}

/** A model file's metadata_props as {key: value}. */
function readMetadata(file) {
  const { metadata_props: entries } = ONNX_METADATA.decode(fs.readFileSync(file));
  return Object.fromEntries(entries.map(({ key, value }) => [key, value]));
}

/**
 * Refuse the float pixels the server refuses (server/checks.py, _check_pixels), with its words:
 * NaN or infinity always, and, for a model that declares its input_scale, pixels outside
 * [0, 255 × input_scale]; onnxruntime would turn either into a confident wrong label.
 * @param {import('./tensor').ImageBatch} images checked by checkImages
 * @param {string} what names the input in messages
 * @param {number | undefined} scale the model's input_scale, if it declares one
 */
function checkPixels({ data, shape }, what, scale) {
  if (!(data instanceof Float32Array)) {
    return; // uint8 pixels are 0–255 by construction
  }
  const size = data.length / shape[0];
  // Indexes of the images with a pixel for which `test` holds: only needed for a message.
  const images = (test) =>
    Array.from({ length: shape[0] }, (_, n) => n).filter((n) =>
      data.subarray(n * size, (n + 1) * size).some(test),
    );
  // Math.min and Math.max return NaN once any pixel is NaN, so one pass finds both problems.
  let lowest = Infinity;
  let highest = -Infinity;
  for (const value of data) {
    lowest = Math.min(lowest, value);
    highest = Math.max(highest, value);
  }
  if (!(Number.isFinite(lowest) && Number.isFinite(highest))) {
    const bad = images((value) => !Number.isFinite(value));
    throw new ScratchnetError(
      `${what}: pixels must be finite, found NaN or infinity in ${bad.length} image(s), ` +
        `the first at index ${bad[0]}`,
    );
  }
  const high = PIXEL_MAX * scale;
  if (scale !== undefined && (lowest < 0 || highest > high)) {
    const [first] = images((value) => value < 0 || value > high);
    throw new ScratchnetError(
      `${what}: float pixels must lie in [0, ${g(high)}] (the model's input_scale is ` +
        `${g(scale)}), found ${g(lowest < 0 ? lowest : highest)} in image ${first}: ` +
        `divide 0-${PIXEL_MAX} pixels by ${g(1 / scale)} or pass them as uint8`,
    );
  }
}

/** A number as Python's format `g` writes it (6 significant digits), as the server's message. */
function g(value) {
  return String(Number(value.toPrecision(6)));
}

/** "name type [shape]" of each value, for messages. */
function describe(values) {
  return values.map((v) => `${v.name} ${v.type} [${v.shape}]`).join(', ') || 'none';
}

/** The first line of a (possibly multi-line) native error message. */
function firstLine(text) {
  return String(text).split('\n')[0];
}

module.exports = { OnnxModel };
