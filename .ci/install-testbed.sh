#!/bin/sh
# Installs what the netns test bed needs (test/e2e): OpenSSH server and client, nftables,
# iproute2, bubblewrap and ansible-core; plus Chromium for the console tests (test/browser) and
# the AWS CLI v2 for `ctd local env` (test/integration/local-env.test.ts).
# Idempotent: returns at once when everything is present.
set -eu

PACKAGES="openssh-server openssh-client nftables iproute2 bubblewrap ansible-core chromium awscli"

missing=""
for pkg in $PACKAGES; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing="$missing $pkg"
  fi
done

if [ -z "$missing" ]; then
  echo "test bed packages already installed"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "missing:$missing — run this script as root (sudo $0)" >&2
  exit 1
fi

echo "installing:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update
# shellcheck disable=SC2086
apt-get install -y --no-install-recommends $missing
