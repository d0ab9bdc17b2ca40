#!/usr/bin/env bash
# The map's front-end packages come from the npm registry (webmap/package.json): npm must be there.
set -euo pipefail
command -v npm >/dev/null 2>&1 && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing nodejs and npm with apt-get" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
  exit 0
fi
echo "npm is missing. Run as root: apt-get install -y nodejs npm" >&2
exit 1
