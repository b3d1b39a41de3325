#!/usr/bin/env bash
# Install the Debian packages the C++ client builds against, only those that are missing.
set -euo pipefail
packages=(cmake g++ pkg-config zlib1g-dev libgrpc++-dev libprotobuf-dev protobuf-compiler
          protobuf-compiler-grpc)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" ||
    missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "cpp-client: missing Debian packages: ${missing[*]} (run: sudo apt-get install ${missing[*]})" >&2
  exit 1
fi
echo "cpp-client: installing Debian packages: ${missing[*]}"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
