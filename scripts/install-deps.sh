#!/usr/bin/env bash
# Installs the Debian packages convnet builds and tests with. Idempotent: does nothing when all
# are present. Run as root (or with sudo available).
set -euo pipefail
packages=(build-essential cmake pkg-config git clang
  libjpeg62-turbo-dev libpng-dev libhdf5-dev libopenblas-openmp-dev libcjson-dev
  libexif-dev protobuf-c-compiler libprotobuf-c-dev libzip-dev zlib1g-dev libcurl4-openssl-dev libssl-dev
  libcairo2-dev liblbfgs-dev fonts-dejavu-core chromium dataset-fashion-mnist wordnet-base python3-venv python3-pip python3-torch
  libopenmpi-dev openmpi-bin libmicrohttpd-dev chromium-driver)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  exit 0
fi
SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO=sudo; fi
echo "install-deps: installing ${missing[*]}" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
