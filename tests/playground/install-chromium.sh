#!/usr/bin/env bash
# Install Debian's Chromium for the playground's browser tests, only when it is missing (the
# tests drive it with playwright-core, whose own browser download cannot be reached here).
set -euo pipefail
[ -x /usr/bin/chromium ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "playground: Chromium is missing (run: sudo apt-get install chromium)" >&2
  exit 1
fi
echo "playground: installing Debian's chromium (about 500 MB)"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium
