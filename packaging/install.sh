#!/usr/bin/env bash
# Install edgestream on Raspberry Pi OS / Debian (arm64, armhf, amd64) as a systemd service.
#
#   sudo packaging/install.sh [OPTIONS] [SOURCE]
#
# SOURCE is a wheel, an sdist or a source folder (default: the repository this script
# is in). What it does, each step only when needed (running it twice changes nothing):
#   1. apt-get installs python3-venv (and gcc, python3-dev on armhf, where some
#      dependencies have no wheel and build from source) when missing;
#   2. creates the system user `edgestream` (home /var/lib/edgestream) and adds it to
#      the gpio and video groups when they exist (GPIO chips, vcgencmd);
#   3. creates the venv /opt/edgestream/venv and pip installs SOURCE into it (again
#      only when SOURCE, the extras or the pip arguments changed);
#   4. writes /etc/edgestream/agent.yaml (and hub.yaml) from the examples only when
#      absent: a config you edited is never overwritten;
#   5. installs both units into /etc/systemd/system, daemon-reload, enable --now the
#      agent (`--role hub`: the hub; `--role both`: both).
#
# Options:
#   --role agent|hub|both  which service to enable (default agent)
#   --extras LIST          pip extras, e.g. gpio (comma-separated)
#   --pip-args "ARGS"      extra arguments for pip install (e.g. --index-url ...)
#   --python PATH          interpreter the venv is made from (default /usr/bin/python3)
#   --no-start             enable the service but do not start it
#   --no-systemctl         do not call systemctl (implied without systemd as PID 1)
#   --no-apt               do not call apt-get
#   --root DIR             install under DIR instead of / (tests, image building);
#                          implies --no-systemctl and skips creating the user
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=/
ROLE=agent
EXTRAS=""
PIP_ARGS=""
PYTHON=/usr/bin/python3
START=1
SYSTEMCTL=1
APT=1
SOURCE=""
USER_NAME=edgestream

say() { printf 'edgestream-install: %s\n' "$*"; }
die() { printf 'edgestream-install: error: %s\n' "$*" >&2; exit 1; }

while (($#)); do
    case "$1" in
        --role) ROLE=${2:?--role needs agent, hub or both}; shift ;;
        --extras) EXTRAS=${2?--extras needs a list}; shift ;;
        --pip-args) PIP_ARGS=${2?--pip-args needs a string}; shift ;;
        --python) PYTHON=${2:?--python needs a path}; shift ;;
        --root) ROOT=${2:?--root needs a folder}; shift ;;
        --no-start) START=0 ;;
        --no-systemctl) SYSTEMCTL=0 ;;
        --no-apt) APT=0 ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        -*) die "unknown option $1 (see --help)" ;;
        *) [[ -z $SOURCE ]] || die "only one SOURCE may be given"; SOURCE=$1 ;;
    esac
    shift
done
case "$ROLE" in agent | hub | both) ;; *) die "--role must be agent, hub or both" ;; esac

ROOT=$(mkdir -p "$ROOT" && cd "$ROOT" && pwd)
R=${ROOT%/}  # prefix for every path: "" for a real install
if [[ -n $R ]]; then
    SYSTEMCTL=0
    say "installing under $ROOT: no systemctl, no user creation, files owned by $(id -un)"
fi
if ((SYSTEMCTL)) && { ! command -v systemctl >/dev/null || [[ ! -d /run/systemd/system ]]; }; then
    say "systemd is not running here: not calling systemctl"
    SYSTEMCTL=0
fi

SOURCE=${SOURCE:-$(dirname "$HERE")}
[[ -e $SOURCE ]] || die "no such wheel, sdist or folder: $SOURCE"
SOURCE=$(cd "$(dirname "$SOURCE")" && pwd)/$(basename "$SOURCE")

OPT=$R/opt/edgestream
VENV=$OPT/venv
ETC=$R/etc/edgestream
STATE=$R/var/lib/edgestream
UNITS=$R/etc/systemd/system

ARCH=$(dpkg --print-architecture 2>/dev/null || uname -m)
case "$ARCH" in
    arm64 | aarch64) ARCH=arm64 ;;
    armhf | armv7l | armv6l) ARCH=armhf ;;
    amd64 | x86_64) ARCH=amd64 ;;
    *) say "architecture $ARCH is untested; continuing" ;;
esac

# install_file SRC DEST MODE: copy only when the content differs; prints "changed" then.
install_file() {
    if [[ -f $2 ]] && cmp -s "$1" "$2"; then
        return 0
    fi
    install -D -m "$3" "$1" "$2"
    echo changed
}

# 1. Packages. `dpkg -s` is cheap; apt-get only runs when something is missing.
if ((APT)); then
    needed=(python3 python3-venv)
    [[ $ARCH == armhf ]] && needed+=(gcc python3-dev libc6-dev)
    missing=()
    for pkg in "${needed[@]}"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    if ((${#missing[@]})); then
        say "apt-get install ${missing[*]}"
        apt-get update -q
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
    fi
fi

# 2. The service user. Under --root there is no safe way to add a user to another
# system's passwd without root and chroot, so it is skipped (and said).
HAVE_USER=0
if [[ -z $R ]]; then
    if ! getent passwd "$USER_NAME" >/dev/null; then
        say "creating system user $USER_NAME"
        adduser --system --group --home /var/lib/edgestream --no-create-home \
            --shell /usr/sbin/nologin --gecos "edgestream service" "$USER_NAME"
    fi
    for group in gpio video; do
        if getent group "$group" >/dev/null && ! id -nG "$USER_NAME" | tr ' ' '\n' | grep -qx "$group"; then
            say "adding $USER_NAME to group $group"
            adduser "$USER_NAME" "$group" >/dev/null
        fi
    done
    HAVE_USER=1
fi

# 3. Folders, venv and the package.
install -d -m 0755 "$OPT" "$ETC"
if [[ ! -d $STATE ]]; then
    install -d -m 0750 "$STATE"
fi
if ((HAVE_USER)); then
    # systemd's StateDirectory= would fix this too, but `edgestream queue` run by an
    # admin before the first start expects the folder to exist.
    [[ $(stat -c %U "$STATE") == "$USER_NAME" ]] || chown "$USER_NAME:$USER_NAME" "$STATE"
fi
if [[ ! -x $VENV/bin/python ]]; then
    say "creating venv $VENV"
    "$PYTHON" -m venv "$VENV"
fi

# What is installed is recorded as a fingerprint of the source's content plus the
# options; pip runs only when it changed (pip reinstalls a folder every time).
fingerprint() {
    if [[ -d $SOURCE ]]; then
        (cd "$SOURCE" && find . \( -name .git -o -name '.*cache' -o -name __pycache__ \
            -o -name '*.egg-info' -o -name build -o -name dist -o -name .venv -o -name venv \
            -o -name data -o -name hub-data \) -prune -o -type f -print0 |
            LC_ALL=C sort -z | xargs -0 sha256sum) | sha256sum | cut -d' ' -f1
    else
        sha256sum "$SOURCE" | cut -d' ' -f1
    fi
    printf '%s\n' "extras=$EXTRAS" "pip-args=$PIP_ARGS" "python=$("$VENV/bin/python" -V)"
}
STAMP=$OPT/installed-from
pip_ran=""
WANT=$(fingerprint)
if [[ ! -f $STAMP ]] || [[ $(cat "$STAMP") != "$WANT" ]]; then
    target=$SOURCE
    if [[ -d $SOURCE ]]; then
        # Build from a copy: an in-tree build would leave build/ and *.egg-info behind.
        work=$(mktemp -d)
        trap 'rm -rf "$work"' EXIT
        tar -C "$SOURCE" --exclude=.git --exclude='.*cache' --exclude=__pycache__ \
            --exclude='*.egg-info' --exclude=build --exclude=dist --exclude=.venv \
            --exclude=./venv --exclude=./data --exclude=./hub-data -cf - . | tar -C "$work" -xf -
        target=$work
    fi
    [[ -n $EXTRAS ]] && target="$target[$EXTRAS]"
    say "pip install $target"
    # shellcheck disable=SC2086  # PIP_ARGS is a list of words on purpose
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-cache-dir \
        $PIP_ARGS "$target"
    pip_ran=1
    printf '%s\n' "$WANT" >"$STAMP.tmp" && mv "$STAMP.tmp" "$STAMP"
fi
[[ -x $VENV/bin/edgestream ]] || die "$VENV/bin/edgestream missing after pip install"

# 4. Configs: examples are refreshed, real configs only created when absent.
install_file "$HERE/agent.example.yaml" "$OPT/share/agent.example.yaml" 0644 >/dev/null
install_file "$HERE/hub.example.yaml" "$OPT/share/hub.example.yaml" 0644 >/dev/null
write_config() {  # write_config NAME CONTENT-FILE
    local dest=$ETC/$1
    [[ -e $dest ]] && return 0
    say "writing $dest (edit it, then restart the service)"
    install -m 0640 "$2" "$dest"
    # Group-readable by the service only: it may hold broker credentials.
    ((HAVE_USER)) && chgrp "$USER_NAME" "$dest"
    return 0
}
if [[ $ROLE != hub ]]; then
    device=$(hostname -s 2>/dev/null || cat /etc/hostname 2>/dev/null || echo pi)
    device=$(printf '%s' "$device" | tr -c 'A-Za-z0-9_.-' '-' | cut -c1-64)
    tmp_cfg=$(mktemp)
    sed "s/@DEVICE_ID@/${device:-pi}/" "$HERE/agent.example.yaml" >"$tmp_cfg"
    write_config agent.yaml "$tmp_cfg"
    rm -f "$tmp_cfg"
fi
[[ $ROLE != agent ]] && write_config hub.yaml "$HERE/hub.example.yaml"

# 5. Units: both are installed (harmless), the role's are enabled.
units_changed=""
for unit in edgestream.service edgestream-hub.service; do
    units_changed+=$(install_file "$HERE/systemd/$unit" "$UNITS/$unit" 0644)
done
case "$ROLE" in
    agent) enable=(edgestream.service) ;;
    hub) enable=(edgestream-hub.service) ;;
    both) enable=(edgestream.service edgestream-hub.service) ;;
esac
if ((SYSTEMCTL)); then
    [[ -n $units_changed ]] && systemctl daemon-reload
    for unit in "${enable[@]}"; do
        systemctl is-enabled --quiet "$unit" || systemctl enable --quiet "$unit"
        if ((START)); then
            if [[ -n $units_changed || -n $pip_ran ]] && systemctl is-active --quiet "$unit"; then
                systemctl restart "$unit"
            else
                systemctl start "$unit"  # a no-op when it runs
            fi
        fi
    done
    say "done: systemctl status ${enable[*]}"
else
    say "done (systemctl not called): enable with systemctl enable --now ${enable[*]}"
fi
