#!/usr/bin/env bash
# Installs Debian 12's OpenStack (Zed) packages for the real-OpenStack test bed
# (scripts/openstack-bed/setup.sh). Idempotent: returns at once when everything is present.
# No maintainer script may start a daemon (there is no systemd; the bed starts its own):
# a temporary policy-rc.d answers 101 ("action forbidden") while apt runs.
set -euo pipefail

PACKAGES=(mariadb-server rabbitmq-server python3-pymysql
          keystone glance-api placement-api nova-api neutron-api
          python3-openstackclient uwsgi-core uwsgi-plugin-python3 curl)

missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if ((${#missing[@]} == 0)); then
  echo "openstack bed packages already installed"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "missing: ${missing[*]} - run this script as root" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
export PATH=/usr/sbin:/usr/bin:/sbin:/bin:$PATH
made_policy=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  made_policy=1
fi
cleanup() { if [ "$made_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi; }
trap cleanup EXIT

# another apt user (a parallel CI job, a helper) may hold the dpkg lock: wait for it, up to 15 min
apt_get() { apt-get -o DPkg::Lock::Timeout=900 "$@"; }

t0=$(date +%s)
echo "installing ${#missing[@]} packages (and their dependencies): ${missing[*]}"
apt_get update -qq
apt_get install -y -q --no-install-recommends "${missing[@]}"
echo "openstack bed packages installed in $(( $(date +%s) - t0 ))s"
