#!/usr/bin/env bash
# The browser tests drive Debian's Chromium (never a downloaded browser) and need a CJK font, or Chinese
# labels render as boxes. Install both with apt where we can; otherwise say exactly what to run.
set -euo pipefail
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
fc-list 2>/dev/null | grep -qi "WenQuanYi Micro Hei" || missing+=(fonts-wqy-microhei)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing ${missing[*]} with apt-get" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  exit 0
fi
echo "The browser tests need: ${missing[*]}. Run as root: apt-get install -y ${missing[*]}" >&2
exit 1
