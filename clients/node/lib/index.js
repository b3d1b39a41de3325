'use strict';

// The package's public surface. onnx.js is loaded on first use, so gRPC-only callers never load
// onnxruntime's native library.

const { Client } = require('./client');
const { InputError, RpcError, ScratchnetError } = require('./errors');
const { readIdx, readIdxLabels } = require('./idx');
const { readImages } = require('./images');
const { loadMnistSplit } = require('./mnist');
const { scoreSet } = require('./score');
const { convertImages } = require('./tensor');

module.exports = {
  Client,
  InputError,
  RpcError,
  ScratchnetError,
  convertImages,
  loadMnistSplit,
  readIdx,
  readIdxLabels,
  readImages,
  scoreSet,
  get OnnxModel() {
    return require('./onnx').OnnxModel;
  },
};
