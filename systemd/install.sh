#!/usr/bin/env bash
# Install or upgrade the coldchain gateway on Raspberry Pi OS / Debian (run as root).
#   sudo systemd/install.sh            # from a checkout of this repository
# Idempotent: re-running upgrades the code and keeps config, credentials and the journal.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
prefix=/opt/coldchain
[ "$(id -u)" = 0 ] || { echo "run as root (sudo $0)" >&2; exit 1; }

apt-get update -q
apt-get install -y -q --no-install-recommends python3 python3-venv sqlite3

echo "installing the project into $prefix/venv"
python3 -m venv "$prefix/venv"
"$prefix/venv/bin/pip" install -q --upgrade pip
# Pinned, hash-checked dependencies (requirements.lock, made with pip-compile
# --generate-hashes): what was tested is what runs on the Pi.
if [ -f "$here/requirements.lock" ]; then
  "$prefix/venv/bin/pip" install -q --require-hashes -r "$here/requirements.lock"
  "$prefix/venv/bin/pip" install -q --no-deps "$here"
else
  "$prefix/venv/bin/pip" install -q "$here"
fi
cp -r "$here/docs" "$prefix/" 2>/dev/null || true

install -d -m 0755 /etc/coldchain
install -d -m 0700 /etc/coldchain/credentials
for cred in mqtt-password influx-token; do
  # LoadCredential= refuses to start the unit when a listed file is missing.
  [ -e "/etc/coldchain/credentials/$cred" ] || install -m 0600 /dev/null "/etc/coldchain/credentials/$cred"
done
if [ ! -e /etc/coldchain/gateway.toml ]; then
  sed -e 's#^path = ".*journal.db"#path = "/var/lib/coldchain/journal.db"#' \
    "$here/examples/gateway.toml" > /etc/coldchain/gateway.toml
  echo "wrote /etc/coldchain/gateway.toml from the example: edit it, then"
  echo "  $prefix/venv/bin/coldchain check-config /etc/coldchain/gateway.toml"
fi

install -m 0644 "$here/systemd/coldchain.service" /etc/systemd/system/coldchain.service
# The unit may reach only the peers the config names (IPAddressDeny=any in the unit).
install -d -m 0755 /etc/systemd/system/coldchain.service.d
if "$prefix/venv/bin/coldchain" check-config /etc/coldchain/gateway.toml --ip-allow \
    > /etc/systemd/system/coldchain.service.d/ip-allow.conf.new; then
  mv /etc/systemd/system/coldchain.service.d/ip-allow.conf.new \
    /etc/systemd/system/coldchain.service.d/ip-allow.conf
else
  rm -f /etc/systemd/system/coldchain.service.d/ip-allow.conf.new
fi
if command -v systemd-analyze >/dev/null; then
  systemd-analyze verify /etc/systemd/system/coldchain.service || true
fi
systemctl daemon-reload
systemctl enable coldchain.service
if "$prefix/venv/bin/coldchain" check-config /etc/coldchain/gateway.toml; then
  systemctl restart coldchain.service
  echo "started: journalctl -u coldchain -f"
else
  echo "not started: fix the config above, then: systemctl start coldchain" >&2
fi
