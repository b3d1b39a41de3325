// MNIST-style preprocessing of a user's image: the JavaScript half of docs/preprocessing.md.
//
// One ES module, used unchanged by the playground page (served at /playground/preprocess.mjs)
// and by the Node.js client's PNG/JPEG input (clients/node/lib/images.js). It follows the
// specification step for step, as clients/images.py's mnist_form does in numpy; a test runs
// both on the same images and checks that they agree. No dependencies: it works on RGBA pixels
// (a canvas's ImageData, or what pngjs and jpeg-js decode).

/** MNIST's proportions: digits fitted into 20x20 in a 28x28 frame; other sizes scale alike. */
export const BOX = 20;
export const FRAME = 28;
/** Pixels above this (of 255, after levels) count as ink for the bounding box. */
export const INK_THRESHOLD = 0.1 * 255;

/**
 * An RGBA image as a digit in MNIST's form: light ink on black, cropped to the ink, fitted into
 * the box keeping its aspect ratio, centred by centre of mass.
 * @param {{width: number, height: number, data: ArrayLike<number>}} image RGBA, 4 bytes a pixel
 * @param {[number, number]} shape the model's [H, W]
 * @param {{invert?: 'auto' | 'yes' | 'no'}} [options] auto inverts light paper
 * @returns {Uint8Array} H*W pixels, row-major, 0-255
 */
export function mnistForm(image, [height, width], { invert = 'auto' } = {}) {
  const ink = inkOf(grayOf(image), image.width, image.height, invert);
  const frame = new Float64Array(height * width);
  const box = inkBox(ink, image.width, image.height);
  if (box === null) {
    return new Uint8Array(height * width); // no ink: a blank image
  }
  const cropHeight = box.bottom - box.top + 1;
  const cropWidth = box.right - box.left + 1;
  const crop = new Float64Array(cropHeight * cropWidth);
  for (let y = 0; y < cropHeight; y++) {
    for (let x = 0; x < cropWidth; x++) {
      crop[y * cropWidth + x] = ink[(box.top + y) * image.width + box.left + x];
    }
  }
  const boxHeight = round((height * BOX) / FRAME);
  const boxWidth = round((width * BOX) / FRAME);
  const scale = Math.min(boxHeight / cropHeight, boxWidth / cropWidth);
  const fitHeight = Math.max(1, round(cropHeight * scale));
  const fitWidth = Math.max(1, round(cropWidth * scale));
  const fitted = resized(crop, [cropHeight, cropWidth], [fitHeight, fitWidth]);
  let mass = 0;
  let weightedY = 0;
  let weightedX = 0;
  for (let y = 0; y < fitHeight; y++) {
    for (let x = 0; x < fitWidth; x++) {
      const value = fitted[y * fitWidth + x];
      mass += value;
      weightedY += value * y;
      weightedX += value * x;
    }
  }
  const top = clamp(round(height / 2 - micro(weightedY / mass)), 0, height - fitHeight);
  const left = clamp(round(width / 2 - micro(weightedX / mass)), 0, width - fitWidth);
  for (let y = 0; y < fitHeight; y++) {
    for (let x = 0; x < fitWidth; x++) {
      frame[(top + y) * width + left + x] = fitted[y * fitWidth + x];
    }
  }
  const pixels = new Uint8Array(height * width);
  for (let i = 0; i < frame.length; i++) pixels[i] = clamp(Math.floor(frame[i] + 0.5), 0, 255);
  return pixels;
}

/**
 * An RGBA image taken as it is, for one already in MNIST's form (--no-preprocess): grayscale over
 * white paper, resized to [H, W] with the fitting's triangle filter when it is another size, and
 * inverted if `invert` says so (auto: a light border).
 * @param {{width: number, height: number, data: ArrayLike<number>}} image RGBA, 4 bytes a pixel
 * @param {[number, number]} shape the model's [H, W]
 * @param {{invert?: 'auto' | 'yes' | 'no'}} [options]
 * @returns {Uint8Array} H*W pixels, row-major, 0-255
 */
export function plainForm(image, [height, width], { invert = 'auto' } = {}) {
  let gray = grayOf(image);
  if (image.width !== width || image.height !== height) {
    gray = resized(gray, [image.height, image.width], [height, width]);
  }
  const flip = inverts(gray, width, height, invert);
  return Uint8Array.from(gray, (value) => clamp(round(flip ? 255 - value : value), 0, 255));
}

/** Luma (ITU-R 601) of RGBA pixels composited over white paper, as floats 0-255. */
export function grayOf({ width, height, data }) {
  const gray = new Float64Array(width * height);
  for (let i = 0; i < gray.length; i++) {
    const alpha = data[4 * i + 3] / 255;
    const paper = 255 * (1 - alpha);
    const red = data[4 * i] * alpha + paper;
    const green = data[4 * i + 1] * alpha + paper;
    const blue = data[4 * i + 2] * alpha + paper;
    gray[i] = 0.299 * red + 0.587 * green + 0.114 * blue;
  }
  return gray;
}

/** The outermost ring of pixels: top row, bottom row, left column, right column. */
function borderOf(gray, width, height) {
  const border = [];
  for (let x = 0; x < width; x++) border.push(gray[x]);
  for (let x = 0; x < width; x++) border.push(gray[(height - 1) * width + x]);
  for (let y = 0; y < height; y++) border.push(gray[y * width]);
  for (let y = 0; y < height; y++) border.push(gray[y * width + width - 1]);
  return border;
}

/**
 * Whether gray pixels are to be inverted: `invert` 'yes', or 'auto' and a light border (paper).
 * @param {ArrayLike<number>} gray
 * @param {number} width
 * @param {number} height
 * @param {'auto' | 'yes' | 'no'} invert
 */
export function inverts(gray, width, height, invert) {
  const border = borderOf(gray, width, height);
  const mean = border.reduce((sum, value) => sum + value, 0) / border.length;
  return invert === 'yes' || (invert === 'auto' && mean > 127.5);
}

/** Ink as light on black: inverted if the paper is light, background subtracted, stretched. */
function inkOf(gray, width, height, invert) {
  const border = borderOf(gray, width, height);
  const flip = inverts(gray, width, height, invert);
  const ink = flip ? gray.map((value) => 255 - value) : Float64Array.from(gray);
  const edge = (flip ? border.map((value) => 255 - value) : border).sort((a, b) => a - b);
  const background = edge[Math.floor((edge.length - 1) / 2)]; // the lower median
  let peak = 0;
  for (let i = 0; i < ink.length; i++) {
    ink[i] = Math.max(ink[i] - background, 0);
    peak = Math.max(peak, ink[i]);
  }
  if (peak > 0) {
    const stretch = 255 / peak;
    for (let i = 0; i < ink.length; i++) ink[i] *= stretch;
  }
  return ink;
}

/** The rows and columns that hold ink (inclusive), or null if none do. */
function inkBox(ink, width, height) {
  let top = height;
  let bottom = -1;
  let left = width;
  let right = -1;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      if (ink[y * width + x] > INK_THRESHOLD) {
        top = Math.min(top, y);
        bottom = Math.max(bottom, y);
        left = Math.min(left, x);
        right = Math.max(right, x);
      }
    }
  }
  return bottom < 0 ? null : { top, bottom, left, right };
}

/**
 * Gray pixels [height, width] resized to [newHeight, newWidth] with the triangle filter of
 * resampleWeights: rows · pixels · colsᵀ, as the numpy version computes it.
 * @param {ArrayLike<number>} pixels row-major
 * @returns {Float64Array} row-major
 */
export function resized(pixels, [height, width], [newHeight, newWidth]) {
  const rows = resampleWeights(height, newHeight);
  const cols = resampleWeights(width, newWidth);
  const half = new Float64Array(newHeight * width);
  for (let i = 0; i < newHeight; i++) {
    for (let x = 0; x < width; x++) {
      let sum = 0;
      for (let k = 0; k < height; k++) sum += rows[i * height + k] * pixels[k * width + x];
      half[i * width + x] = sum;
    }
  }
  const out = new Float64Array(newHeight * newWidth);
  for (let i = 0; i < newHeight; i++) {
    for (let j = 0; j < newWidth; j++) {
      let sum = 0;
      for (let k = 0; k < width; k++) sum += half[i * width + k] * cols[j * width + k];
      out[i * newWidth + j] = sum;
    }
  }
  return out;
}

/**
 * [newSize, size] weights that resize one axis with a triangle filter, widened when shrinking
 * so that every input pixel counts (Pillow's antialiased bilinear).
 */
function resampleWeights(size, newSize) {
  const scale = newSize / size;
  const support = Math.max(1, 1 / scale);
  const weights = new Float64Array(newSize * size);
  for (let i = 0; i < newSize; i++) {
    const centre = (i + 0.5) / scale;
    let total = 0;
    for (let j = 0; j < size; j++) {
      const weight = Math.max(0, 1 - Math.abs(j + 0.5 - centre) / support);
      weights[i * size + j] = weight;
      total += weight;
    }
    for (let j = 0; j < size; j++) weights[i * size + j] /= total;
  }
  return weights;
}

/**
 * `value` to a millionth, so that a symmetric digit's centre, exactly halfway between two pixels,
 * is halfway in every implementation whatever the order of its sums.
 */
function micro(value) {
  return Math.floor(value * 1e6 + 0.5) / 1e6;
}

/** Half up, as in docs/preprocessing.md. */
function round(value) {
  return Math.floor(value + 0.5);
}

function clamp(value, low, high) {
  return Math.min(Math.max(value, low), high);
}
