#!/usr/bin/env node
'use strict';

const { main } = require('../lib/cli');

// A reader that stops early (`| head`) closes the pipe: stop quietly, as other Unix tools do.
process.stdout.on('error', (error) => {
  if (error.code !== 'EPIPE') {
    // A full disk or a closed descriptor: one line, as every other error.
    process.stderr.write(`scratchnet: cannot write to standard output (${error.code ?? error})\n`);
    process.exit(1);
  }
  process.exit(0);
});

// grpc-js gives TLS the target's host as the server name, an IP address for 127.0.0.1:50051,
// and Node warns about that on stderr (DEP0123; grpc/grpc-node#1919). It is grpc-js's doing,
// not the user's, and would be a second stderr line next to a one-line error: drop that one.
const emitWarning = process.emitWarning;
process.emitWarning = function (warning, ...rest) {
  const code = typeof rest[0] === 'object' ? rest[0]?.code : rest[1];
  if (code !== 'DEP0123') {
    emitWarning.call(process, warning, ...rest);
  }
};

main(process.argv.slice(2)).then((status) => {
  process.exitCode = status;
});
