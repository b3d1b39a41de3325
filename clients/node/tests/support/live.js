'use strict';

// What the end-to-end tests need from the rest of the project: a model made through the
// project's own CLIs, a real `python -m server` subprocess, and the Python client's labels.

const { execFileSync, spawn } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const readline = require('node:readline');
const { tempDir } = require('./files');

const REPO = path.resolve(__dirname, '..', '..', '..', '..');
const PYTHON = process.env.SCRATCHNET_PYTHON || path.join(REPO, '.venv', 'bin', 'python');
const LISTEN_TIMEOUT_MS = 60_000;

/** Run `python ARGS…` in the repository root, `env` added; its stdout as text. */
function python(args, { timeout = 300_000, env = {} } = {}) {
  try {
    return execFileSync(PYTHON, args, {
      cwd: REPO,
      env: { ...process.env, ...env },
      encoding: 'utf8',
      timeout,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  } catch (error) {
    const command = args[0] === '-c' ? ['-c', '<script>', ...args.slice(2)] : args;
    const status = error.status ?? error.signal;
    throw new Error(`${PYTHON} ${command.join(' ')} failed (${status}):\n${error.stderr}`);
  }
}

/**
 * model.onnx (float32 input) and model-uint8.onnx (uint8 input), exported with `python -m export`
 * from $SCRATCHNET_ARTIFACT when set, else from an artifact trained by `python -m trainer`, as a
 * user would. Written into a temporary folder.
 * @returns {{model: string, modelUint8: string}}
 */
function buildModels() {
  const dir = tempDir();
  const artifact = process.env.SCRATCHNET_ARTIFACT || trainArtifact(dir, 'model.npz');
  const model = path.join(dir, 'model.onnx');
  const modelUint8 = path.join(dir, 'model-uint8.onnx');
  python(['-m', 'export', artifact, '-o', model]);
  python(['-m', 'export', artifact, '-o', modelUint8, '--input-dtype', 'uint8']);
  return { model, modelUint8 };
}

/** An artifact of the article's recipe, trained by `python -m trainer`, as a user would. */
function trainArtifact(dir, name) {
  const artifact = path.join(dir, name);
  python(['-m', 'trainer', '-o', artifact, '--quiet']);
  return artifact;
}

// The article's parameters with shifted biases: a second model, made without training, that
// labels some test images unlike the article's.
const VARIANT = `
import sys
from dataclasses import replace

import numpy as np

from scratchnet.artifact import load_artifact, save_artifact

article = load_artifact(sys.argv[1])
shift = np.random.default_rng(3).normal(scale=0.5, size=article.biases.shape)
save_artifact(sys.argv[2], replace(article, biases=article.biases + shift))
`;

// The article's model declaring another input_scale in its metadata: pixel × 2/255, in [0, 2].
const RESCALE = `
import sys

import onnx

model = onnx.load(sys.argv[1])
for prop in model.metadata_props:
    if prop.key == "input_scale":
        prop.value = repr(2 / 255)
onnx.save(model, sys.argv[1])
`;

/**
 * A Triton-layout model repository of four models, made with `python -m export --triton-repo`:
 * `digits` version 1 (the article's model), `digits2` versions 2 (the article's) and 3 (a
 * variant of it), both versions served (version_policy all), `small` version 1 (the article's,
 * taking at most 4 images a request: max_batch_size 4), and `scaled` version 1 (the article's,
 * its metadata input_scale 2/255 instead of 1/255); and the variant alone, as a model file of
 * version 1 like the article's (another model under the same name and version).
 * @returns {{repository: string, variant: string}} the repository folder, the variant's file
 */
// One linear classifier of random weights under two input layouts the server serves over v1:
// 'nchw' takes x [N,1,H,W], 'flat' takes pix [N,H·W] (served with --image-shape HxW).
const LAYOUTS = `
import sys
from pathlib import Path
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
repository, height, width, classes = Path(sys.argv[1]), *map(int, sys.argv[2:5])
rng = np.random.default_rng(0)
weights = rng.normal(size=(height * width, classes)).astype(np.float32)
biases = rng.normal(size=classes).astype(np.float32)
for name, input_name, dims in (("nchw", "x", ["N", 1, height, width]), ("flat", "pix", ["N", height * width])):
    graph = helper.make_graph(
        [helper.make_node("Reshape", [input_name, "shape"], ["rows"]),
         helper.make_node("Gemm", ["rows", "w", "b"], ["scores"]),
         helper.make_node("ArgMax", ["scores"], ["label"], axis=1, keepdims=0)],
        name,
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", classes]),
         helper.make_tensor_value_info("label", TensorProto.INT64, ["N"])],
        [numpy_helper.from_array(np.array([-1, height * width], np.int64), "shape"),
         numpy_helper.from_array(weights, "w"), numpy_helper.from_array(biases, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    (repository / name / "1").mkdir(parents=True)
    onnx.save(model, repository / name / "1" / "model.onnx")
`;

/**
 * A repository of the same classifier as [N,1,H,W] ('nchw') and as [N,H·W] ('flat').
 * @returns {string} the repository folder
 */
function buildLayouts(height, width, classes) {
  const repository = path.join(tempDir(), 'layouts');
  python(['-c', LAYOUTS, repository, String(height), String(width), String(classes)]);
  return repository;
}

function buildRepository() {
  const dir = tempDir();
  const article = process.env.SCRATCHNET_ARTIFACT || trainArtifact(dir, 'article.npz');
  const variant = path.join(dir, 'variant.npz');
  python(['-c', VARIANT, article, variant]);
  const repository = path.join(dir, 'repository');
  for (const [artifact, name, version, ...more] of [
    [article, 'digits', '1'],
    [article, 'digits2', '2'],
    [variant, 'digits2', '3'],
    [article, 'small', '1', '--max-batch', '4'],
    [article, 'scaled', '1'],
  ]) {
    const naming = ['--model-name', name, '--model-version', version];
    python(['-m', 'export', artifact, '--triton-repo', repository, ...naming, ...more]);
  }
  python(['-c', RESCALE, path.join(repository, 'scaled', '1', 'model.onnx')]);
  fs.appendFileSync(
    path.join(repository, 'digits2', 'config.pbtxt'),
    'version_policy: { all { } }\n',
  );
  const variantFile = path.join(dir, 'variant.onnx');
  python(['-m', 'export', variant, '-o', variantFile]);
  return { repository, variant: variantFile };
}

// Throwaway certificate authorities and certificates, made by the Python tests' own helper.
const PKI = `
import sys
from pathlib import Path
from tests.certificates import Authority

folder = Path(sys.argv[1])
ca, other, client_ca = (Authority(folder, name) for name in ("ca", "other-ca", "client-ca"))
ca.issue("server", server=True)
client_ca.issue("client", server=False)
other.issue("stranger", server=False)
`;

/**
 * PEM files in a temporary folder: \`ca\` (signs \`server\`, for 127.0.0.1 and localhost),
 * \`client-ca\` (signs \`client\`), \`other-ca\` (signs \`stranger\`). Each entry is {cert, key}.
 * @returns {Record<string, {cert: string, key: string}>}
 */
function makeCertificates() {
  const dir = tempDir();
  python(['-c', PKI, dir]);
  const names = ['ca', 'other-ca', 'client-ca', 'server', 'client', 'stranger'];
  return Object.fromEntries(
    names.map((name) => [
      name,
      { cert: path.join(dir, `${name}.crt`), key: path.join(dir, `${name}.key`) },
    ]),
  );
}

/**
 * Start `python -m server --model MODEL --host 127.0.0.1 --port 0 ARGS…` (or another flag than
 * --model: --model-repository) and read its `listening on HOST:PORT` line. Resolves to
 * {target, process, stderr(), stop()}.
 * @param {string} model
 * @param {{args?: string[], modelFlag?: string}} [options]
 * @returns {Promise<{target: string, process: import('node:child_process').ChildProcess,
 *   stderr: () => string, stop: () => Promise<number | null>}>}
 */
function startServer(model, { args = [], modelFlag = '--model' } = {}) {
  const stderrFile = path.join(tempDir(), 'server.stderr');
  const stderrFd = fs.openSync(stderrFile, 'w');
  const child = spawn(
    PYTHON,
    ['-m', 'server', modelFlag, model, '--host', '127.0.0.1', '--port', '0', ...args],
    {
      cwd: REPO,
      stdio: ['ignore', 'pipe', stderrFd],
    },
  );
  fs.closeSync(stderrFd);
  const stderr = () => fs.readFileSync(stderrFile, 'utf8');
  const exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
    }
    return exited;
  };
  // Never leave a server behind, even when a test run is cut short.
  process.once('exit', () => child.exitCode === null && child.kill('SIGKILL'));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(
        new Error(`server printed no 'listening on' line in ${LISTEN_TIMEOUT_MS} ms:\n${stderr()}`),
      );
    }, LISTEN_TIMEOUT_MS);
    const lines = readline.createInterface({ input: child.stdout });
    lines.once('line', (line) => {
      clearTimeout(timer);
      const match = /^listening on (\S+:\d+)$/.exec(line.trim());
      if (match) {
        resolve({ target: match[1], process: child, stderr, stop });
      } else {
        child.kill('SIGKILL');
        reject(
          new Error(`unexpected first line from the server: ${JSON.stringify(line)}\n${stderr()}`),
        );
      }
    });
    // Keep draining stdout so the server never blocks on a full pipe.
    lines.on('line', () => {});
    exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`server exited (${code}) before listening:\n${stderr()}`));
    });
  });
}

// The Python client's labels for an IDX file of images, read by the trainer's own IDX reader.
const PYTHON_LABELS = `
import json, sys
from clients import Client
from scratchnet.idx import IMAGES_MAGIC, read_idx

target, file = sys.argv[1:3]
images = read_idx(file, IMAGES_MAGIC).values
with Client(target, timeout=60) as client:
    print(json.dumps(client.predict(images).labels.tolist()))
`;

/**
 * The Python client's (`from clients import Client`) labels for an IDX file of images.
 * @param {string} target HOST:PORT
 * @param {string} file
 * @returns {number[]}
 */
function pythonLabels(target, file) {
  return JSON.parse(python(['-c', PYTHON_LABELS, target, path.resolve(file)]));
}

module.exports = {
  REPO,
  python,
  buildLayouts,
  buildModels,
  buildRepository,
  makeCertificates,
  pythonLabels,
  startServer,
};
