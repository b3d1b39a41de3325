'use strict';

// Running the `scratchnet` command as a user does, and what its failures must look like.

const assert = require('node:assert/strict');
const { execFile } = require('node:child_process');
const net = require('node:net');
const path = require('node:path');

const CLI = path.join(__dirname, '..', '..', 'bin', 'scratchnet.js');

/**
 * Run the CLI in a child process; resolves to {status, stdout, stderr}.
 * @param {string[]} args
 * @param {{env?: NodeJS.ProcessEnv}} [options] variables added to this process's environment
 */
function cli(args, { env } = {}) {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [CLI, ...args],
      { timeout: 60_000, env: { ...process.env, ...env } },
      (error, stdout, stderr) => {
        resolve({ status: error ? error.code : 0, stdout, stderr });
      },
    );
  });
}

/** Assert a CLI failure: one line on stderr, no stack trace, the given status. */
function assertOneLineError(result, status, ...patterns) {
  assert.equal(result.status, status, result.stderr);
  assert.equal(result.stdout, '');
  const lines = result.stderr.trimEnd().split('\n');
  assert.equal(lines.length, 1, result.stderr);
  assert.match(lines[0], /^scratchnet: /);
  for (const pattern of patterns) {
    assert.match(lines[0], pattern);
  }
  assert.doesNotMatch(result.stderr, /\n\s+at /);
}

/** A HOST:PORT on which nothing listens. */
async function deadTarget() {
  const server = net.createServer().listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return `127.0.0.1:${port}`;
}

module.exports = { assertOneLineError, cli, deadTarget };
