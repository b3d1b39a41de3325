#!/usr/bin/env node
'use strict';

const { main } = require('../lib/cli');

// A reader that stops early (`| head`) closes the pipe: stop quietly, as other Unix tools do.
process.stdout.on('error', (error) => {
  if (error.code !== 'EPIPE') {
    throw error;
  }
  process.exit(0);
});

main(process.argv.slice(2)).then((status) => {
  process.exitCode = status;
});
