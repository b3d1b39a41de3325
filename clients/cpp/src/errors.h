// The ways a run can fail; main() turns each into one line on stderr and an exit code.
#pragma once

#include <stdexcept>

namespace scratchnet {

// A mistake in what the user gave us — a flag, a file, images that do not fit the model.
// Exit code 2, like the Python command lines' user errors.
class InputError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The server could not be reached or refused a call. Exit code 1.
class ServerError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The results could not be written (standard output, --labels-out) once the calls were made.
// Exit code 1: the run failed, though no flag or file given was wrong.
class OutputError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace scratchnet
