'use strict';

// "Loading model.onnx elsewhere": the exported model run directly by onnxruntime-node, with no
// server. Input and output names, dtypes and shapes come from the file.

const ort = require('onnxruntime-node');
const { ScratchnetError } = require('./errors');
const { DTYPES, argmaxRows, checkImages, convertImages } = require('./tensor');

/** model.onnx in an onnxruntime-node InferenceSession. */
class OnnxModel {
  /**
   * @param {ort.InferenceSession} session
   * @param {string} file
   */
  constructor(session, file) {
    this.session = session;
    this.file = file;
    const [input] = session.inputMetadata;
    this.inputName = input.name;
    // onnxruntime-node names tensor types as tensor.js's DTYPES does ('float32', 'uint8').
    this.inputType = Object.hasOwn(DTYPES, input.type) ? input.type : undefined;
    this.inputShape = input.shape;
    if (session.inputMetadata.length !== 1 || !this.inputType) {
      throw new ScratchnetError(
        `${file}: expected one float32 or uint8 input [N,H,W], ` +
          `got ${describe(session.inputMetadata)}`,
      );
    }
    const outputs = session.outputMetadata;
    this.labelOutput = outputs.find((o) => o.type === 'int64' && o.shape.length === 1)?.name;
    this.scoresOutput = (
      outputs.find((o) => o.name === 'scores') ??
      outputs.find((o) => o.type === 'float32' && o.shape.length === 2)
    )?.name;
    if (!this.labelOutput && !this.scoresOutput) {
      throw new ScratchnetError(
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
      throw new ScratchnetError(
        `${file}: onnxruntime-node cannot load it (${firstLine(error.message)})`,
      );
    }
    return new OnnxModel(session, file);
  }

  /**
   * Classify images: labels from the model's label output (or the argmax of its scores).
   * @param {import('./tensor').ImageBatch} images [N, H, W] uint8 (0–255) or float32 ([0, 1])
   * @param {object} [options]
   * @param {boolean} [options.scores] also return scores
   * @returns {Promise<import('./client').Prediction>}
   */
  async predict(images, options = {}) {
    const batch = convertImages(checkImages(images), this.inputType);
    const [, ...expected] = this.inputShape;
    const [, ...got] = batch.shape;
    if (
      expected.length !== got.length ||
      expected.some((d, i) => typeof d === 'number' && d !== got[i])
    ) {
      throw new ScratchnetError(
        `input '${this.inputName}' of ${this.file}: ` +
          `expected shape [-1,${expected}], got [${batch.shape}]`,
      );
    }
    const feeds = { [this.inputName]: new ort.Tensor(this.inputType, batch.data, batch.shape) };
    const fetches = [
      this.labelOutput,
      options.scores || !this.labelOutput ? this.scoresOutput : undefined,
    ].filter(Boolean);
    const results = await this.session.run(feeds, fetches);
    const scores = this.scoresOutput && results[this.scoresOutput];
    const numClasses = scores ? scores.dims[1] : undefined;
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

/** "name type [shape]" of each value, for messages. */
function describe(values) {
  return values.map((v) => `${v.name} ${v.type} [${v.shape}]`).join(', ') || 'none';
}

/** The first line of a (possibly multi-line) native error message. */
function firstLine(text) {
  return String(text).split('\n')[0];
}

module.exports = { OnnxModel };
