'use strict';

// The .proto files are the one source of truth for the API: they are read at run time from the
// repository's proto/ folder, so no generated code can go stale.

const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

/** proto/ at the root of the repository this package lives in. */
const DEFAULT_PROTO_DIR = path.resolve(__dirname, '..', '..', '..', 'proto');

const FILES = ['scratchnet/v1/classifier.proto', 'inference/open_inference_grpc.proto'];

// keepCase: field names as written in the .proto (raw_input_contents), so messages read like the
// specification. longs as Number: int64 values here are labels, shapes and counts, all < 2^53.
const LOADER_OPTIONS = {
  keepCase: true,
  longs: Number,
  enums: String,
  defaults: true,
  arrays: true,
  oneofs: true,
};

const cache = new Map();

/**
 * Load both services from the .proto files (cached per folder).
 * @param {string} [protoDir] folder holding scratchnet/v1/classifier.proto and
 *   inference/open_inference_grpc.proto; defaults to the repository's proto/
 * @returns {{Classifier: typeof grpc.Client, GRPCInferenceService: typeof grpc.Client}}
 */
function loadServices(protoDir = DEFAULT_PROTO_DIR) {
  if (!cache.has(protoDir)) {
    const definition = protoLoader.loadSync(FILES, { ...LOADER_OPTIONS, includeDirs: [protoDir] });
    const root = grpc.loadPackageDefinition(definition);
    cache.set(protoDir, {
      Classifier: root.scratchnet.v1.Classifier,
      GRPCInferenceService: root.inference.GRPCInferenceService,
    });
  }
  return cache.get(protoDir);
}

module.exports = { loadServices };
