#!/usr/bin/env bash
# Debian packages a fresh machine lacks: LLVM 19 for Mitsuba's llvm_ad_rgb variant (the stock
# LLVM 15 aborts at the first render), libusb for open3d, Chromium + driver for the study page's
# browser tests. Installs only what is missing, so repeated `make setup` stays fast.
set -euo pipefail
need=()
for pkg in libllvm19 libusb-1.0-0 chromium chromium-driver; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
[ ${#need[@]} -eq 0 ] && exit 0
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
