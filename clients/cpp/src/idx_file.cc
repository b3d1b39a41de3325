#include "idx_file.h"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <sstream>

#include "errors.h"

namespace scratchnet {
namespace {

// Read in slices so that a header promising more than the file holds fails as "truncated"
// instead of allocating the promised size up front.
constexpr std::size_t kChunk = std::size_t{1} << 22;

struct GzFileCloser {
  void operator()(gzFile file) const { gzclose(file); }
};
using GzFile = std::unique_ptr<std::remove_pointer_t<gzFile>, GzFileCloser>;

// gzread reads gzip streams and, transparently, files that are not compressed at all.
GzFile open_file(const std::string& path) {
  errno = 0;
  GzFile file(gzopen(path.c_str(), "rb"));
  if (!file) {
    const char* reason = errno != 0 ? std::strerror(errno) : "out of memory";
    throw InputError("cannot read " + path + ": " + reason);
  }
  return file;
}

// zlib prefixes its messages with the file name, which our messages already start with.
std::string zlib_reason(int code, const char* message, const std::string& path) {
  if (code == Z_ERRNO) return std::strerror(errno);
  std::string reason = message ? message : "read error";
  const std::string prefix = path + ": ";
  if (reason.rfind(prefix, 0) == 0) reason.erase(0, prefix.size());
  return reason;
}

// Reads up to `size` bytes; fewer only at the end of the data. A corrupt or cut-off gzip
// stream is an error, not a short read.
std::size_t read_some(gzFile file, const std::string& path, std::uint8_t* out, std::size_t size) {
  const int count = gzread(file, out, static_cast<unsigned>(size));
  int code = Z_OK;
  const char* message = gzerror(file, &code);
  if (count < 0 || (code != Z_OK && code != Z_STREAM_END)) {
    if (code == Z_BUF_ERROR) throw InputError(path + " is truncated: the gzip stream ends early");
    if (code == Z_DATA_ERROR) {
      throw InputError(path + " is not a valid gzip file: " + zlib_reason(code, message, path));
    }
    throw InputError("cannot read " + path + ": " + zlib_reason(code, message, path));
  }
  return static_cast<std::size_t>(count);
}

std::size_t read_exact(gzFile file, const std::string& path, std::uint8_t* out, std::size_t size) {
  std::size_t filled = 0;
  while (filled < size) {
    const std::size_t count = read_some(file, path, out + filled, size - filled);
    if (count == 0) break;
    filled += count;
  }
  return filled;
}

std::uint32_t big_endian_u32(const std::uint8_t* bytes) {
  return (std::uint32_t{bytes[0]} << 24) | (std::uint32_t{bytes[1]} << 16) |
         (std::uint32_t{bytes[2]} << 8) | std::uint32_t{bytes[3]};
}

std::string hex32(std::uint32_t value) {
  std::ostringstream out;
  out << "0x" << std::hex;
  out.width(8);
  out.fill('0');
  out << value;
  return out.str();
}

std::vector<std::int64_t> read_header(gzFile file, const std::string& path, std::uint32_t magic) {
  const std::size_t ndim = magic & 0xFF;
  std::vector<std::uint8_t> header(4 + 4 * ndim);
  const std::size_t got = read_exact(file, path, header.data(), header.size());
  if (got < 4 || big_endian_u32(header.data()) != magic) {
    const std::string found = got >= 4 ? hex32(big_endian_u32(header.data())) : "nothing";
    const std::string kind = magic == kIdxImagesMagic ? "image" : "label";
    throw InputError(path + " is not an IDX " + kind + " file: magic number " + found +
                     ", expected " + hex32(magic));
  }
  if (got < header.size()) {
    throw InputError(path + " is truncated: its IDX header ends after " + std::to_string(got) +
                     " bytes");
  }
  std::vector<std::int64_t> shape;
  for (std::size_t d = 0; d < ndim; ++d) shape.push_back(big_endian_u32(&header[4 + 4 * d]));
  return shape;
}

std::string format_dims(const std::vector<std::int64_t>& shape) {
  std::string text;
  for (std::size_t d = 0; d < shape.size(); ++d) text += (d ? "x" : "") + std::to_string(shape[d]);
  return text;
}

std::vector<std::uint8_t> read_values(gzFile file, const std::string& path,
                                      const std::vector<std::int64_t>& shape) {
  // Three uint32 dimensions can overflow 64 bits; such a header cannot describe a real file.
  std::uint64_t total = 1;
  for (const std::int64_t dim : shape) {
    const auto size = static_cast<std::uint64_t>(dim);
    if (size != 0 && total > UINT64_MAX / size) {
      throw InputError(path + " has an impossible IDX shape " + format_dims(shape));
    }
    total *= size;
  }
  std::vector<std::uint8_t> values;
  while (values.size() < total) {
    const std::size_t filled = values.size();
    const auto want = static_cast<std::size_t>(std::min<std::uint64_t>(kChunk, total - filled));
    values.resize(filled + want);
    const std::size_t got = read_exact(file, path, values.data() + filled, want);
    if (got < want) {
      throw InputError(path + " is truncated: its header promises " + std::to_string(total) +
                       " values (" + format_dims(shape) + "), the file holds " +
                       std::to_string(filled + got));
    }
  }
  std::uint8_t extra = 0;
  if (read_exact(file, path, &extra, 1) != 0) {
    throw InputError(path + " is longer than its header says (" + format_dims(shape) +
                     " values): expected nothing after the last value");
  }
  return values;
}

}  // namespace

IdxArray read_idx(const std::string& path, std::uint32_t magic) {
  const GzFile file = open_file(path);
  IdxArray array;
  array.shape = read_header(file.get(), path, magic);
  array.values = read_values(file.get(), path, array.shape);
  return array;
}

std::string format_shape(const std::vector<std::int64_t>& shape) {
  std::string text = "[";
  for (std::size_t d = 0; d < shape.size(); ++d) text += (d ? "," : "") + std::to_string(shape[d]);
  return text + "]";
}

}  // namespace scratchnet
