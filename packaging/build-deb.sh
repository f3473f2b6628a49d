#!/usr/bin/env bash
# Build edgestream_<version>_<arch>.deb: a ready venv in /opt/edgestream/venv, both
# systemd units, configs under /etc/edgestream as dpkg conffiles.
#
#   packaging/build-deb.sh [--out DIR] [--python PATH] [--extras LIST] [--pip-args "ARGS"]
#
# The venv holds compiled wheels (orjson, zstandard, PyYAML) for the machine that
# builds it, so build ON THE TARGET ARCHITECTURE with the target's Python: on a Pi, or
# in a container of the target Debian release, e.g.
#   docker run --rm --platform linux/arm64 -v "$PWD:/src" -w /src debian:bookworm \
#     sh -c 'apt-get update && apt-get install -y python3-venv && packaging/build-deb.sh'
# (linux/arm/v7 for armhf; on armhf add gcc python3-dev for packages without wheels).
# The package depends on that Python's minor version (python3 (>= 3.11), python3 (<< 3.12)
# for Bookworm) because the venv's site-packages and extension modules are tied to it.
#
# Version: [project].version in pyproject.toml. Architecture: dpkg --print-architecture.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SRC=$(dirname "$HERE")
OUT=$SRC/dist
PYTHON=/usr/bin/python3
EXTRAS=gpio
PIP_ARGS=""
die() { printf 'build-deb: error: %s\n' "$*" >&2; exit 1; }

while (($#)); do
    case "$1" in
        --out) OUT=${2:?--out needs a folder}; shift ;;
        --python) PYTHON=${2:?--python needs a path}; shift ;;
        --extras) EXTRAS=${2?--extras needs a list}; shift ;;
        --pip-args) PIP_ARGS=${2?--pip-args needs a string}; shift ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
    shift
done
command -v dpkg-deb >/dev/null || die "dpkg-deb not found (build on Debian or Raspberry Pi OS)"

VERSION=$("$PYTHON" -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' "$SRC/pyproject.toml")
ARCH=$(dpkg --print-architecture)
PYVER=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
PYNEXT=$("$PYTHON" -c 'import sys; print("%d.%d" % (sys.version_info[0], sys.version_info[1] + 1))')
NAME=edgestream_${VERSION}_${ARCH}

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
STAGE=$WORK/$NAME
VENV=/opt/edgestream/venv

# The project, copied first: an in-tree build would leave build/ and *.egg-info behind.
mkdir -p "$WORK/src"
tar -C "$SRC" --exclude=.git --exclude='.*cache' --exclude=__pycache__ --exclude='*.egg-info' \
    --exclude=./build --exclude=./dist --exclude=./.venv --exclude=./venv -cf - . |
    tar -C "$WORK/src" -xf -

# The venv is built in the staging folder and then told where it will live: the
# scripts' #! lines and activate's VIRTUAL_ENV are the only absolute paths in it.
"$PYTHON" -m venv "$STAGE$VENV"
target=$WORK/src
[[ -n $EXTRAS ]] && target="$target[$EXTRAS]"
# shellcheck disable=SC2086  # PIP_ARGS is a list of words on purpose
"$STAGE$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-cache-dir \
    --no-compile $PIP_ARGS "$target"
grep -rlIF "$STAGE$VENV" "$STAGE$VENV" | while IFS= read -r file; do
    sed -i "s|$STAGE$VENV|$VENV|g" "$file"
done
# pip records where it installed from (a temporary folder): meaningless on the device.
rm -f "$STAGE$VENV"/lib/python*/site-packages/edgestream-*.dist-info/direct_url.json
# Byte code is compiled by postinst with the final paths (and removed by prerm).
find "$STAGE$VENV" -name __pycache__ -type d -prune -exec rm -rf {} +

install -D -m 0644 "$HERE/systemd/edgestream.service" "$STAGE/lib/systemd/system/edgestream.service"
install -D -m 0644 "$HERE/systemd/edgestream-hub.service" "$STAGE/lib/systemd/system/edgestream-hub.service"
# Conffiles: dpkg keeps a config the admin changed and asks on upgrades. The agent's
# device_id is "change-me" until edited; postinst only starts the agent after that.
sed 's/@DEVICE_ID@/change-me/' "$HERE/agent.example.yaml" >"$WORK/agent.yaml"
install -D -m 0640 "$WORK/agent.yaml" "$STAGE/etc/edgestream/agent.yaml"
install -D -m 0640 "$HERE/hub.example.yaml" "$STAGE/etc/edgestream/hub.yaml"
install -D -m 0644 "$WORK/agent.yaml" "$STAGE/opt/edgestream/share/agent.example.yaml"
install -D -m 0644 "$HERE/hub.example.yaml" "$STAGE/opt/edgestream/share/hub.example.yaml"
[[ -f $SRC/docs/install.md ]] && install -D -m 0644 "$SRC/docs/install.md" "$STAGE/usr/share/doc/edgestream/install.md"

mkdir -p "$STAGE/DEBIAN"
printf '%s\n' /etc/edgestream/agent.yaml /etc/edgestream/hub.yaml >"$STAGE/DEBIAN/conffiles"
SIZE=$(du -sk --exclude=DEBIAN "$STAGE" | cut -f1)
cat >"$STAGE/DEBIAN/control" <<EOF
Package: edgestream
Version: $VERSION
Architecture: $ARCH
Maintainer: edgestream maintainers <edgestream@localhost>
Section: net
Priority: optional
Installed-Size: $SIZE
Depends: python3 (>= $PYVER), python3 (<< $PYNEXT), adduser
Homepage: https://github.com/edgestream/edgestream
Description: event-streaming agent for Raspberry Pi devices, and its hub
 edgestream reads sensors, GPIO, MQTT and the device's own health, keeps every
 event in a durable SQLite queue and forwards it to a central hub when the
 network allows. Ships a self-contained Python virtual environment in
 /opt/edgestream/venv and the systemd units edgestream.service (agent, enabled)
 and edgestream-hub.service (hub, not enabled).
EOF

cat >"$STAGE/DEBIAN/postinst" <<'EOF'
#!/bin/sh
# Create the user, compile byte code, enable the agent; start it only once its config
# is no longer the untouched example (a shared device_id would mix devices at the hub).
set -e
if [ "$1" = configure ]; then
    if ! getent passwd edgestream >/dev/null; then
        adduser --system --group --home /var/lib/edgestream --no-create-home \
            --shell /usr/sbin/nologin --gecos "edgestream service" edgestream
    fi
    for group in gpio video; do
        if getent group "$group" >/dev/null; then adduser --quiet edgestream "$group"; fi
    done
    install -d -m 0750 -o edgestream -g edgestream /var/lib/edgestream
    for f in /etc/edgestream/agent.yaml /etc/edgestream/hub.yaml; do
        if [ -f "$f" ]; then chgrp edgestream "$f"; fi
    done
    /opt/edgestream/venv/bin/python -m compileall -q /opt/edgestream/venv/lib >/dev/null || true
    if [ -d /run/systemd/system ]; then
        systemctl daemon-reload
        systemctl enable --quiet edgestream.service
        if cmp -s /etc/edgestream/agent.yaml /opt/edgestream/share/agent.example.yaml; then
            echo "edgestream: edit /etc/edgestream/agent.yaml (device_id, uplink), then: systemctl start edgestream"
        else
            systemctl restart edgestream.service || true
        fi
        if systemctl is-enabled --quiet edgestream-hub.service; then
            systemctl restart edgestream-hub.service || true
        fi
    else
        # No running systemd (an image being built, a container): enable offline.
        systemctl enable --quiet edgestream.service 2>/dev/null || true
    fi
fi
exit 0
EOF

cat >"$STAGE/DEBIAN/prerm" <<'EOF'
#!/bin/sh
# On removal stop and disable the services; on upgrade postinst restarts them.
set -e
case "$1" in
    remove | deconfigure)
        if [ -d /run/systemd/system ]; then
            systemctl disable --now --quiet edgestream.service edgestream-hub.service || true
        else
            systemctl disable --quiet edgestream.service edgestream-hub.service 2>/dev/null || true
        fi
        ;;
esac
find /opt/edgestream/venv -name __pycache__ -type d -prune -exec rm -rf {} + 2>/dev/null || true
exit 0
EOF

cat >"$STAGE/DEBIAN/postrm" <<'EOF'
#!/bin/sh
# remove keeps /etc/edgestream (conffiles) and /var/lib/edgestream*: queued events not
# yet sent and the hub's store. purge removes them and the user.
set -e
if [ "$1" = purge ]; then
    rm -rf /var/lib/edgestream /var/lib/edgestream-hub /etc/edgestream
    if getent passwd edgestream >/dev/null; then deluser --quiet --system edgestream || true; fi
    if getent group edgestream >/dev/null; then delgroup --quiet --system edgestream || true; fi
fi
if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
exit 0
EOF
chmod 0755 "$STAGE/DEBIAN/postinst" "$STAGE/DEBIAN/prerm" "$STAGE/DEBIAN/postrm"

mkdir -p "$OUT"
dpkg-deb --root-owner-group -Zxz --build "$STAGE" "$OUT/$NAME.deb" >/dev/null
echo "$OUT/$NAME.deb"
