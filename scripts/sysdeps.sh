#!/usr/bin/env bash
# Install the Debian packages in .ci/apt-packages.txt that are missing (needs root and apt).
# Without root it only lists what is missing; the tests that need those tools then skip with the reason,
# except under EDGE_REQUIRE_SYSDEPS=1 (CI), where they fail.
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t pkgs < <(grep -v '^\s*#' .ci/apt-packages.txt | grep -v '^\s*$')
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing Debian packages: ${missing[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "missing Debian packages (tests that need them will skip): ${missing[*]}" >&2
fi
