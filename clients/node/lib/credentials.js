'use strict';

// Who the client says it is: TLS files (a CA to trust, a client certificate for mutual TLS) and a
// bearer token, read and checked before any connection so that a bad file is named as such
// rather than showing up as a failed handshake. The token is never part of a message.

const crypto = require('node:crypto');
const fs = require('node:fs');
const { InputError } = require('./errors');

/** The variable the token comes from when no --token-file is given. */
const TOKEN_VARIABLE = 'SCRATCHNET_TOKEN';
// What gRPC lets through in a header value: visible ASCII, no spaces inside.
const TOKEN_CHARACTERS = /^[\x21-\x7e]+$/;

/** The bytes of `file`, given as `flag`; InputError naming both if unreadable. */
function readFile(flag, file) {
  try {
    return fs.readFileSync(file);
  } catch (error) {
    throw new InputError(`${flag} ${file}: cannot read it (${error.code ?? error.message})`);
  }
}

/** Check PEM text with `parse`; InputError saying what the file should hold. */
function checkPem(flag, file, pem, what, parse) {
  try {
    return parse(pem);
  } catch {
    throw new InputError(`${flag} ${file}: not a PEM ${what}`);
  }
}

/**
 * A bearer token from `text` (a file's content or the variable's value): one token on one line.
 * @param {string} source where it came from, for messages ("--token-file F" or the variable)
 * @param {string} text
 * @returns {string}
 */
function parseToken(source, text) {
  const token = text.trim();
  if (token === '') {
    throw new InputError(`${source} holds no token: expected one token on one line`);
  }
  if (!TOKEN_CHARACTERS.test(token)) {
    throw new InputError(
      `${source}: expected one token on one line, of visible ASCII characters without spaces`,
    );
  }
  return token;
}

/**
 * TLS material and the token for a Client, from the CLI's flags and the environment.
 * @param {object} flags
 * @param {string} [flags.tlsCa] PEM file of the CA(s) to trust; implies TLS
 * @param {string} [flags.tlsCert] PEM file of the client certificate (with tlsKey); implies TLS
 * @param {string} [flags.tlsKey] PEM file of its private key
 * @param {string} [flags.tokenFile] file holding the bearer token
 * @param {NodeJS.ProcessEnv} [env] where SCRATCHNET_TOKEN is read when there is no tokenFile
 * @returns {{tls?: {ca?: Buffer, cert?: Buffer, key?: Buffer}, token?: string}}
 */
function loadCredentials({ tlsCa, tlsCert, tlsKey, tokenFile }, env = process.env) {
  if ((tlsCert === undefined) !== (tlsKey === undefined)) {
    throw new InputError('--tls-cert and --tls-key go together: give both or neither');
  }
  const result = {};
  if (tlsCa !== undefined || tlsCert !== undefined) {
    result.tls = {};
  }
  if (tlsCa !== undefined) {
    result.tls.ca = readFile('--tls-ca', tlsCa);
    checkPem(
      '--tls-ca',
      tlsCa,
      result.tls.ca,
      'certificate',
      (pem) => new crypto.X509Certificate(pem),
    );
  }
  if (tlsCert !== undefined) {
    const cert = readFile('--tls-cert', tlsCert);
    const key = readFile('--tls-key', tlsKey);
    const x509 = checkPem(
      '--tls-cert',
      tlsCert,
      cert,
      'certificate',
      (pem) => new crypto.X509Certificate(pem),
    );
    const privateKey = checkPem('--tls-key', tlsKey, key, 'private key', crypto.createPrivateKey);
    if (!x509.checkPrivateKey(privateKey)) {
      throw new InputError(
        `--tls-key ${tlsKey} is not the key of --tls-cert ${tlsCert}: expected the pair`,
      );
    }
    Object.assign(result.tls, { cert, key });
  }
  if (tokenFile !== undefined) {
    result.token = parseToken(
      `--token-file ${tokenFile}`,
      readFile('--token-file', tokenFile).toString('utf8'),
    );
  } else if (env[TOKEN_VARIABLE]?.trim()) {
    result.token = parseToken(TOKEN_VARIABLE, env[TOKEN_VARIABLE]);
  }
  return result;
}

module.exports = { TOKEN_VARIABLE, loadCredentials, parseToken };
