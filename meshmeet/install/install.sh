#!/usr/bin/env bash
# Cài meshmeet không cần Internet / install meshmeet with no network, from this unpacked bundle.
#   tar xf meshmeet-VERSION-bundle.tar && cd meshmeet-VERSION && sudo ./install.sh
# What it does (and nothing else):
#   1. checks every file of the bundle against manifest.json (sha256); refuses a damaged bundle
#   2. makes a venv in $MESHMEET_PREFIX/versions/VERSION (pip --no-index from wheels/), points
#      $MESHMEET_PREFIX/current at it and $MESHMEET_BIN_DIR/meshmeet at current/bin/meshmeet
#   3. makes the system user $MESHMEET_USER and the data dir $MESHMEET_DATA_DIR (0700, owned by it)
#   4. installs the systemd unit into $MESHMEET_UNIT_DIR (daemon-reload only if systemd runs)
# Every path can be moved with an environment variable (defaults below); the tests use that.
set -euo pipefail

PREFIX="${MESHMEET_PREFIX:-/opt/meshmeet}"
BIN_DIR="${MESHMEET_BIN_DIR:-/usr/local/bin}"
DATA_DIR="${MESHMEET_DATA_DIR:-/var/lib/meshmeet}"
UNIT_DIR="${MESHMEET_UNIT_DIR:-/etc/systemd/system}"
NODE_USER="${MESHMEET_USER:-meshmeet}"
PY="${MESHMEET_PYTHON:-python3}"

here="$(cd "$(dirname "$0")" && pwd)"
die() { echo "meshmeet install: $1" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "cần quyền root, chạy: sudo ./install.sh / needs root: run sudo ./install.sh"
command -v "$PY" >/dev/null || die "không có $PY (cài python3) / $PY not found (install python3)"
"$PY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
    || die "cần Python 3.11 (Debian 12), máy này có $("$PY" -V 2>&1) / needs Python 3.11 (Debian 12), found $("$PY" -V 2>&1)"

echo "... kiểm tra gói / checking the bundle (sha256)"
"$PY" "$here/verify_bundle.py" "$here" || die "gói hỏng, không cài / damaged bundle, nothing installed"

arch="$(uname -m)"
[ "$arch" = arm64 ] && arch=aarch64
[ -d "$here/wheels/$arch" ] || die "gói này không có bản cho $arch / this bundle has no wheels for $arch"
version="$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["version"])' "$here/manifest.json")"
dest="$PREFIX/versions/$version"

# Only the bundle's wheels: no index, no pip.conf, no PIP_* settings from this machine.
for v in $(env | sed -n 's/^\(PIP_[A-Za-z_]*\)=.*/\1/p'); do unset "$v"; done
export PIP_CONFIG_FILE=/dev/null PIP_NO_INDEX=1 PIP_DISABLE_PIP_VERSION_CHECK=1

echo "... cài vào / installing into $dest"
rm -rf "$dest"
mkdir -p "$PREFIX/versions"
# --without-pip: Debian's python3 lacks ensurepip unless python3-venv is installed; pip comes from the bundle.
"$PY" -m venv --without-pip "$dest"
pip_wheel="$(ls "$here"/wheels/any/pip-*.whl | head -n 1)"
"$dest/bin/python" "$pip_wheel/pip" install -q --no-index \
    --find-links "$here/wheels/any" --find-links "$here/wheels/$arch" pip meshmeet
"$dest/bin/meshmeet" --help >/dev/null || die "bản cài không chạy được / the installed copy does not run"
touch "$dest/.installed"   # a whole version (the layout updates over the mesh use: docs/install.md)
ln -sfn "$dest" "$PREFIX/current"
mkdir -p "$BIN_DIR"
ln -sfn "$PREFIX/current/bin/meshmeet" "$BIN_DIR/meshmeet"

if ! getent passwd "$NODE_USER" >/dev/null; then
    echo "... tạo người dùng / creating system user $NODE_USER"
    useradd --system --user-group --home-dir "$DATA_DIR" --no-create-home --shell /usr/sbin/nologin "$NODE_USER"
fi
install -d -m 0700 -o "$NODE_USER" -g "$NODE_USER" "$DATA_DIR"
chown "$NODE_USER:$NODE_USER" "$DATA_DIR"
chmod 0700 "$DATA_DIR"

mkdir -p "$UNIT_DIR"
sed -e "s|/usr/local/bin/meshmeet|$BIN_DIR/meshmeet|g" -e "s|/var/lib/meshmeet|$DATA_DIR|g" \
    -e "s|^User=meshmeet|User=$NODE_USER|" -e "s|^Group=meshmeet|Group=$NODE_USER|" \
    "$here/meshmeet.service" > "$UNIT_DIR/meshmeet.service.tmp"
mv "$UNIT_DIR/meshmeet.service.tmp" "$UNIT_DIR/meshmeet.service"
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
    systemctl daemon-reload
fi

cat <<EOF
Đã cài meshmeet $version / meshmeet $version installed: $BIN_DIR/meshmeet -> $dest
Tiếp theo / next:
  sudo -u $NODE_USER meshmeet join 'MM1-...'      (trụ sở / HQ: sudo -u $NODE_USER meshmeet init --commune ... --site ...)
  sudo systemctl enable --now meshmeet
  sudo -u $NODE_USER meshmeet doctor
EOF
