// Reading IDX files (the MNIST format) of unsigned bytes, gzip-compressed or raw.
//
// Layout: a big-endian header — magic (two zero bytes, a type code, the number of dimensions),
// then one uint32 per dimension — followed by the values, row-major.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace scratchnet {

constexpr std::uint32_t kIdxImagesMagic = 0x00000803;  // unsigned bytes, 3 dimensions [N, H, W]
constexpr std::uint32_t kIdxLabelsMagic = 0x00000801;  // unsigned bytes, 1 dimension [N]

struct IdxArray {
  std::vector<std::int64_t> shape;   // from the header, outermost first
  std::vector<std::uint8_t> values;  // product(shape) bytes, row-major
};

// Reads `path`, whose header must start with `magic`. Compression is detected from the content,
// not the name. A missing, malformed, truncated or overlong file throws InputError naming it.
IdxArray read_idx(const std::string& path, std::uint32_t magic);

// "[10000,28,28]": a shape as error messages and Triton print it.
std::string format_shape(const std::vector<std::int64_t>& shape);

}  // namespace scratchnet
