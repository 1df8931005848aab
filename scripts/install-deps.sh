#!/usr/bin/env bash
# Installs the Debian packages llava.c builds against (skips apt when they are all present).
set -euo pipefail
PKGS="build-essential pkg-config python3 libjpeg62-turbo-dev libpng-dev libwebp-dev libcjson-dev libmicrohttpd-dev libopenblas-dev zlib1g-dev libcurl4-openssl-dev"
missing=""
for p in $PKGS; do
    dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends $missing
