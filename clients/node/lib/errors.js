'use strict';

/**
 * Errors a caller can cause.
 *
 *   ScratchnetError   something the caller can act on: an image batch, a model, a reply (one
 *   │                 line: what was wrong and what was expected)
 *   ├── InputError    the caller's input, found before any call: a flag, an input file (images,
 *   │                 a model, TLS or token files), the environment
 *   └── RpcError      a gRPC call that failed: carries the status code the server (or the
 *                     channel) gave
 *
 * The CLI prints the message of any as one stderr line and exits 2 for an InputError, 1 for the
 * others; anything else is a bug and keeps its stack trace.
 */

const grpc = require('@grpc/grpc-js');

const STATUS_NAMES = Object.fromEntries(
  Object.entries(grpc.status).map(([name, code]) => [code, name]),
);

/** A problem with the caller's input; the message is one line. */
class ScratchnetError extends Error {
  /** @param {string} message what was wrong and what was expected */
  constructor(message) {
    super(message);
    this.name = 'ScratchnetError';
  }
}

/** The caller's own mistake in a flag, a file or the environment: the CLI exits 2. */
class InputError extends ScratchnetError {
  /** @param {string} message what was wrong and what was expected */
  constructor(message) {
    super(message);
    this.name = 'InputError';
  }
}

/** A failed gRPC call; `code` is the numeric gRPC status, `codeName` its name. */
class RpcError extends ScratchnetError {
  /**
   * @param {string} method the RPC that failed, e.g. "Predict"
   * @param {number} code gRPC status code
   * @param {string} details the status message
   * @param {string} [hint] what the caller may need to change, appended in parentheses
   */
  constructor(method, code, details, hint) {
    const codeName = STATUS_NAMES[code] ?? `STATUS_${code}`;
    // grpc-js's connection errors span lines and may end with an empty "Resolution note:".
    const oneLine = details
      .replace(/\s*\n\s*/g, ' ')
      .replace(/\s*Resolution note:\s*$/, '')
      .trim();
    super(`${method} failed: ${codeName}: ${oneLine}${hint ? ` (${hint})` : ''}`);
    this.name = 'RpcError';
    this.method = method;
    this.code = code;
    this.codeName = codeName;
    this.details = details;
  }
}

/**
 * Wrap an error from @grpc/grpc-js into an RpcError (other errors pass through unchanged).
 * @param {string} method the RPC that failed
 * @param {Error & {code?: number, details?: string}} error what grpc-js reported
 * @param {string} [hint] see RpcError
 * @returns {Error}
 */
function fromGrpcError(method, error, hint) {
  if (typeof error.code !== 'number') {
    return error;
  }
  return new RpcError(method, error.code, error.details || error.message, hint);
}

module.exports = { InputError, ScratchnetError, RpcError, fromGrpcError };
