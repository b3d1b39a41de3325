// Drive the playground in Debian's headless Chromium with playwright-core and print what it saw.
//
//   node tests/playground/browser_session.mjs --url http://127.0.0.1:PORT --images IDX \
//        --screenshot OUT.png [--count 10000]
//   node tests/playground/browser_session.mjs --url http://127.0.0.1:PORT --models A,B
//
// Draws a "1" and a "0" with mouse events and reads the answer through the server and in the
// page; scores IDX images (raw, already in MNIST's form) in the page with onnxruntime-web; takes
// the page's screenshot twice. With --models, only opens the page for each model in turn
// (?model=NAME) and reads a drawn "1" through the server, then in the page. Prints one JSON
// object; test_browser.py asserts on it.

import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const require = createRequire(path.join(REPO, 'server', 'playground', 'package.json'));
const { chromium } = require('playwright-core');

// Playwright's own browser download cannot be reached here: Debian's Chromium, with the flags
// that keep it from calling home or needing a GPU or a sandbox (CI runs as root).
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
const VIEWPORT = { width: 1280, height: 720 };
const TIMEOUT_MS = 60_000;

const { values } = parseArgs({
  options: {
    url: { type: 'string' },
    images: { type: 'string' },
    count: { type: 'string', default: '10000' },
    screenshot: { type: 'string' },
    models: { type: 'string' },
  },
});

/** Points along a stroke, in the pad's own 280x280 coordinates. */
const STROKES = {
  // Thick and central: a thin "1" wins only narrowly.
  one: [[[150, 40], [146, 90], [142, 140], [138, 190], [134, 240]]],
  zero: [
    Array.from({ length: 41 }, (_, i) => {
      const angle = (2 * Math.PI * i) / 40;
      return [140 + 62 * Math.sin(angle), 140 - 95 * Math.cos(angle)];
    }),
  ],
  // The screenshot's digit: a 7 with a bar.
  seven: [
    [[70, 55], [140, 52], [210, 50], [180, 110], [150, 170], [125, 235]],
    [[110, 145], [190, 145]],
  ],
};

async function draw(page, strokes) {
  const box = await page.locator('#pad').boundingBox();
  const at = ([x, y]) => [box.x + (x * box.width) / 280, box.y + (y * box.height) / 280];
  for (const stroke of strokes) {
    await page.mouse.move(...at(stroke[0]));
    await page.mouse.down();
    for (const point of stroke.slice(1)) {
      await page.mouse.move(...at(point), { steps: 8 });
    }
    await page.mouse.up();
  }
}

/** The answer on the page once the classification of the drawing has been shown. */
async function answer(page, where) {
  await page.evaluate((mode) => window.playground.setMode(mode), where);
  await page.evaluate(() => window.playground.classifyDrawing());
  return page.evaluate(() => {
    const node = document.getElementById('result');
    const last = window.playground.last;
    return {
      // No label and a warning when the classification failed (the page shows its message).
      label: node.dataset.label === '' ? null : Number(node.dataset.label),
      mode: node.dataset.mode,
      text: node.textContent,
      warning: node.classList.contains('warning'),
      probabilities: last ? Array.from(last.probabilities[0]) : null,
      pixels: Array.from(window.playground.pixels),
      winnerTemplate: document.querySelector('.template.winner')?.textContent ?? null,
    };
  });
}

/** The page of each model in `names`, fresh: a drawn "1" read through the server, then here. */
async function eachModel(page, names) {
  const found = {};
  for (const name of names) {
    await page.goto(`${values.url}?model=${encodeURIComponent(name)}`);
    await page.evaluate(() => window.playground.ready);
    await draw(page, STROKES.one);
    found[name] = {
      model_line: await page.locator('#model-line').textContent(),
      framing: await page.locator('#framing').textContent(),
      server: await answer(page, 'server'),
      page: await answer(page, 'page'),
    };
  }
  return found;
}

/** The whole session: two digits on both paths, the MNIST test set, the screenshot. */
async function everything(page, report) {
  // The test images reach the page through the test, not the server.
  const idx = fs.readFileSync(values.images);
  await page.route('**/test-data/images', (route) =>
    route.fulfill({ body: idx, contentType: 'application/octet-stream' }),
  );
  const responses = {};
  page.on('response', (response) => {
    const url = new URL(response.url());
    responses[url.pathname] = response.headers()['content-type'];
  });
  await page.goto(values.url);
  await page.evaluate(() => window.playground.ready);
  report.ort_note = await page.locator('#ort-note').textContent();
  report.model_line = await page.locator('#model-line').textContent();

  for (const digit of ['one', 'zero']) {
    await page.click('#clear');
    await draw(page, STROKES[digit]);
    report[digit] = {
      server: await answer(page, 'server'),
      page: await answer(page, 'page'),
    };
  }

  const count = Number(values.count);
  const started = Date.now();
  report.mnist_labels = await page.evaluate(async (n) => {
    const bytes = new Uint8Array(await (await fetch('/test-data/images')).arrayBuffer());
    return window.playground.labels(bytes.subarray(16), n, 'page');
  }, count);
  report.mnist_seconds = (Date.now() - started) / 1000;

  await page.click('#clear');
  await draw(page, STROKES.seven);
  report.seven = await answer(page, 'server');
  await page.mouse.move(0, 0); // no hover effects in the picture
  const first = await page.screenshot({ fullPage: true });
  await page.evaluate(() => window.playground.classifyDrawing());
  const second = await page.screenshot({ fullPage: true });
  report.screenshots_identical = first.equals(second);
  if (values.screenshot) fs.writeFileSync(values.screenshot, first);
  report.content_types = responses;
}

async function main() {
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: CHROMIUM_ARGS,
    timeout: TIMEOUT_MS,
  });
  const report = { console: [], requests: [] };
  try {
    const page = await browser.newPage({ viewport: VIEWPORT, deviceScaleFactor: 1 });
    page.setDefaultTimeout(TIMEOUT_MS);
    page.on('console', (message) => {
      if (message.type() === 'error') report.console.push(message.text());
    });
    page.on('pageerror', (error) => report.console.push(String(error)));
    page.on('request', (request) => report.requests.push(new URL(request.url()).host));
    if (values.models === undefined) {
      await everything(page, report);
    } else {
      report.models = await eachModel(page, values.models.split(','));
    }
    report.hosts = [...new Set(report.requests)];
    delete report.requests;
  } finally {
    await browser.close();
  }
  process.stdout.write(JSON.stringify(report));
}

main().catch((error) => {
  console.error(error.stack || String(error));
  process.exit(1);
});
