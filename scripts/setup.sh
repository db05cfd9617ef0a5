#!/usr/bin/env bash
# Installs what Formation needs on a fresh Debian 12 machine (as root): system packages from Debian
# and the npm dependencies, including Node 24 from the npm registry. Safe to run again: it installs
# only what is missing. Prints what it does and how long it took.
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$(date +%s)

APT_PACKAGES=(
  qemu-system-x86 qemu-utils linux-image-cloud-amd64 busybox-static mmdebstrap e2fsprogs
  wireguard-tools wireguard-go runc iproute2 nftables dropbear-bin openssh-client qemu-guest-agent
  iperf3 socat python3 cpio zstd iputils-ping curl netcat-openbsd dnsutils redis-server sshpass kmod
  openssl procps chromium tcpdump pebble
)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "setup: missing Debian packages: ${missing[*]}" >&2
    echo "setup: run this script as root (it installs them with apt-get), or install them yourself." >&2
    exit 1
  fi
  echo "setup: installing ${#missing[@]} Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# npm deps (Node 24 arrives as the `node` devDependency). The machine's npm runs the install.
if [ ! -x node_modules/.bin/node ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: installing npm dependencies (npm ci)"
  npm ci --no-fund --no-audit --loglevel=error 2>&1 | grep -v 'Unknown user config' || true
fi
[ -x node_modules/.bin/node ] || { echo "setup: npm ci did not install Node 24 (node_modules/.bin/node missing)" >&2; exit 1; }
# The dashboard's static files (served by formationd on :3010); a few seconds.
if [ ! -f packages/web/dist/index.html ] || [ -n "$(find packages/web/src -newer packages/web/dist/index.html -print -quit 2>/dev/null)" ]; then
  echo "setup: building the dashboard"
  PATH="$PWD/node_modules/.bin:$PATH" npm run --silent build -w @formation/web >/dev/null
fi
echo "setup: done in $(( $(date +%s) - t0 )) s; node $(node_modules/.bin/node --version)"
