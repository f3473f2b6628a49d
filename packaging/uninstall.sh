#!/usr/bin/env bash
# Remove edgestream installed by packaging/install.sh.
#
#   sudo packaging/uninstall.sh [--purge] [--root DIR] [--no-systemctl]
#
# Stops and disables both services, removes the units and /opt/edgestream (the venv).
# Keeps /etc/edgestream (your configs) and /var/lib/edgestream* (queued events not yet
# sent, the hub's store) unless --purge, which removes those and the user as well.
# For a .deb install use `apt remove edgestream` (`apt purge` to remove data).
set -euo pipefail

ROOT=/
PURGE=0
SYSTEMCTL=1
USER_NAME=edgestream
say() { printf 'edgestream-uninstall: %s\n' "$*"; }
die() { printf 'edgestream-uninstall: error: %s\n' "$*" >&2; exit 1; }

while (($#)); do
    case "$1" in
        --purge) PURGE=1 ;;
        --root) ROOT=${2:?--root needs a folder}; shift ;;
        --no-systemctl) SYSTEMCTL=0 ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
    shift
done
[[ -d $ROOT ]] || die "no such folder: $ROOT"
R=$(cd "$ROOT" && pwd)
R=${R%/}
[[ -n $R ]] && SYSTEMCTL=0
if ((SYSTEMCTL)) && { ! command -v systemctl >/dev/null || [[ ! -d /run/systemd/system ]]; }; then
    SYSTEMCTL=0
fi
if [[ -z $R && -f /var/lib/dpkg/info/edgestream.list ]]; then
    die "edgestream was installed from the .deb: use apt remove (or apt purge) edgestream"
fi

UNITS=(edgestream.service edgestream-hub.service)
if ((SYSTEMCTL)); then
    for unit in "${UNITS[@]}"; do
        if systemctl list-unit-files --quiet "$unit" | grep -q .; then
            say "stopping and disabling $unit"
            systemctl disable --now --quiet "$unit" || true
        fi
    done
fi
removed=0
for unit in "${UNITS[@]}"; do
    if [[ -e $R/etc/systemd/system/$unit ]]; then
        rm -f "$R/etc/systemd/system/$unit"
        removed=1
    fi
done
((SYSTEMCTL && removed)) && systemctl daemon-reload
if [[ -d $R/opt/edgestream ]]; then
    say "removing $R/opt/edgestream"
    rm -rf "$R/opt/edgestream"
fi

if ((PURGE)); then
    say "purging configs and data: $R/etc/edgestream $R/var/lib/edgestream $R/var/lib/edgestream-hub"
    rm -rf "$R/etc/edgestream" "$R/var/lib/edgestream" "$R/var/lib/edgestream-hub"
    if [[ -z $R ]] && getent passwd "$USER_NAME" >/dev/null; then
        say "removing user $USER_NAME"
        deluser --quiet --system "$USER_NAME" || true
        getent group "$USER_NAME" >/dev/null && { delgroup --quiet --system "$USER_NAME" || true; }
    fi
else
    say "kept $R/etc/edgestream and $R/var/lib/edgestream* (remove them with --purge)"
fi
