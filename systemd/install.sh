#!/usr/bin/env bash
# Install, upgrade or remove alarmgw as a systemd service on Raspberry Pi OS (Debian 12).
#
#   sudo systemd/install.sh                  first install (or a repair: same as --upgrade)
#   sudo systemd/install.sh --upgrade        new program; config and state are kept
#   sudo systemd/install.sh --uninstall      remove the program; config, state and user stay
#   sudo systemd/install.sh --uninstall --purge   ... and remove those too
#
# What it lays down:
#   system user and group alarmgw, in the groups gpio, dialout and video where they exist
#   /opt/alarmgw/releases/alarmgw-VERSION-TIME   a venv (--system-site-packages, for Debian's
#                                                python3-lgpio and python3-picamera2)
#   /opt/alarmgw/venv -> releases/...            switched atomically once the new one works;
#                                                the previous release is kept for a rollback
#   /usr/local/bin/alarmgw -> /opt/alarmgw/venv/bin/alarmgw
#   /etc/alarmgw/config.toml                     from examples/config.toml, mode 0640
#                                                root:alarmgw, never overwritten
#   /etc/alarmgw/config.toml.example             the example of this version, always replaced
#   (not created: the key files the config names, e.g. /etc/alarmgw/gw-01.key and command.key;
#    install them 0600 owned by alarmgw: the service refuses a key file that group or others
#    may read, and this script warns about /etc/alarmgw/*.key files that are)
#   /var/lib/alarmgw                             the outbox (0750 alarmgw:alarmgw)
#   /etc/systemd/system/alarmgw.service          enabled; started when the config is valid
#
# Options:
#   --root DIR     lay everything down under DIR instead of /, for tests and image builds:
#                  users go into DIR/etc/passwd (useradd --prefix), the unit is enabled with
#                  systemctl --root; nothing is started, no Debian package is installed.
#   --no-start     install and enable, but do not (re)start the service
#   --python PATH  the Python to build the venv from (default /usr/bin/python3)
# Environment:
#   ALARMGW_PIP_ARGS   extra arguments for pip, e.g. "--no-index --find-links /media/usb"
#                      for an offline install
set -euo pipefail

SRC="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)"
ROOT=""
MODE=install
PURGE=0
START=1
PYTHON="${ALARMGW_PYTHON:-/usr/bin/python3}"
PIP_ARGS="${ALARMGW_PIP_ARGS:-}"

NAME=alarmgw
SUPPLEMENTARY=(gpio dialout video)

say() { printf 'alarmgw install: %s\n' "$*"; }
die() { printf 'alarmgw install: error: %s\n' "$*" >&2; exit 1; }
usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
  case "$1" in
    --root) [ $# -ge 2 ] || die "--root needs a directory"; ROOT="$(readlink -f "$2")"; shift 2 ;;
    --root=*) ROOT="$(readlink -f "${1#--root=}")"; shift ;;
    --upgrade) MODE=upgrade; shift ;;
    --uninstall) MODE=uninstall; shift ;;
    --purge) PURGE=1; shift ;;
    --no-start) START=0; shift ;;
    --python) [ $# -ge 2 ] || die "--python needs a path"; PYTHON="$2"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done
[ "$PURGE" -eq 0 ] || [ "$MODE" = uninstall ] || die "--purge goes with --uninstall"
[ "$ROOT" != "/" ] || ROOT=""
[ -z "$ROOT" ] || [ -d "$ROOT" ] || die "--root $ROOT is not a directory"
[ "$(id -u)" -eq 0 ] || die "run as root (sudo $0 $*): it creates a system user and writes to /etc and /opt"

OPT_REL=/opt/$NAME
OPT="$ROOT$OPT_REL"
RELEASES="$OPT/releases"
ETC="$ROOT/etc/$NAME"
CONFIG="$ETC/config.toml"
STATE="$ROOT/var/lib/$NAME"
UNIT_DIR="$ROOT/etc/systemd/system"
UNIT="$UNIT_DIR/$NAME.service"
DROPIN_DIR="$UNIT_DIR/$NAME.service.d"
BIN_LINK="$ROOT/usr/local/bin/$NAME"

# Commands that act on the running system are not run under --root: they are shown.
live() {
  if [ -n "$ROOT" ]; then
    say "under --root, not run: $*"
  else
    "$@"
  fi
}

# The passwd and group databases: the root's files (--root), or the system's (getent: NSS).
group_line() {
  if [ -n "$ROOT" ]; then grep -E "^$1:" "$ROOT/etc/group" 2>/dev/null || true
  else getent group "$1" || true; fi
}
passwd_line() {
  if [ -n "$ROOT" ]; then grep -E "^$1:" "$ROOT/etc/passwd" 2>/dev/null || true
  else getent passwd "$1" || true; fi
}
prefix_opt=()
[ -z "$ROOT" ] || prefix_opt=(--prefix "$ROOT")

# -- uninstall -----------------------------------------------------------------------------

if [ "$MODE" = uninstall ]; then
  if [ -e "$UNIT" ]; then
    live systemctl stop "$NAME.service" || true
    if [ -n "$ROOT" ]; then systemctl --root="$ROOT" disable "$NAME.service" || true
    else systemctl disable "$NAME.service" || true; fi
  fi
  rm -f "$UNIT"
  rm -rf "$DROPIN_DIR"
  live systemctl daemon-reload || true
  rm -f "$BIN_LINK"
  rm -rf "$OPT"
  say "removed the program ($OPT_REL), the unit and $BIN_LINK"
  if [ "$PURGE" -eq 1 ]; then
    rm -rf "$ETC" "$STATE"
    if [ -n "$(passwd_line "$NAME")" ]; then userdel "${prefix_opt[@]}" "$NAME"; fi
    if [ -n "$(group_line "$NAME")" ]; then groupdel "${prefix_opt[@]}" "$NAME"; fi
    say "purged: /etc/$NAME, /var/lib/$NAME (with any events still waiting in it) and the user $NAME"
  else
    say "kept: /etc/$NAME (config), /var/lib/$NAME (events still waiting) and the user $NAME;"
    say "  remove them too with: $0 --uninstall --purge${ROOT:+ --root $ROOT}"
  fi
  exit 0
fi

# -- install / upgrade -----------------------------------------------------------------------

for f in pyproject.toml gateway/__init__.py examples/config.toml systemd/alarmgw.service \
    debian/fix-shebangs; do
  [ -e "$SRC/$f" ] || die "$SRC/$f is missing: run this script from an alarmgw source tree"
done
VERSION="$(sed -n 's/^version = "\(.*\)"$/\1/p' "$SRC/pyproject.toml" | head -1)"
[ -n "$VERSION" ] || die "cannot read the version from $SRC/pyproject.toml"

if [ "$MODE" = upgrade ] && [ ! -e "$OPT/venv" ]; then
  die "alarmgw is not installed in $OPT_REL; install it first (without --upgrade)"
fi
if [ "$MODE" = install ] && [ -e "$OPT/venv" ]; then
  say "already installed in $OPT_REL: upgrading (config and state are kept)"
  MODE=upgrade
fi

# 1. Debian packages: a Python that makes venvs, and the Pi's GPIO library from Debian (the
#    venv sees it through --system-site-packages).
if [ -z "$ROOT" ]; then
  want=(python3 python3-venv python3-pip python3-setuptools python3-wheel)
  if apt-cache show python3-lgpio >/dev/null 2>&1; then want+=(python3-lgpio); fi
  missing=()
  for p in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    say "installing Debian packages: ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
  fi
else
  say "under --root, not run: apt-get install python3-venv python3-pip python3-lgpio ..."
  mkdir -p "$ROOT/etc"
  for f in passwd group shadow gshadow; do [ -e "$ROOT/etc/$f" ] || : > "$ROOT/etc/$f"; done
fi
[ -x "$PYTHON" ] || die "$PYTHON not found: install python3 (apt-get install python3 python3-venv)"

# 2. The system user, in the device groups that exist here.
groups=()
absent=()
for g in "${SUPPLEMENTARY[@]}"; do
  if [ -n "$(group_line "$g")" ]; then groups+=("$g"); else absent+=("$g"); fi
done
csv="$(IFS=,; echo "${groups[*]:-}")"
if [ -z "$(passwd_line "$NAME")" ]; then
  say "creating the system user $NAME${csv:+ (groups $csv)}"
  useradd "${prefix_opt[@]}" --system --user-group --home-dir "/var/lib/$NAME" \
    --no-create-home --shell /usr/sbin/nologin --comment "alarmgw school alarm gateway" \
    ${csv:+--groups "$csv"} "$NAME"
elif [ -n "$csv" ]; then
  usermod "${prefix_opt[@]}" --append --groups "$csv" "$NAME"
fi
uid="$(passwd_line "$NAME" | cut -d: -f3)"
gid="$(group_line "$NAME" | cut -d: -f3)"
[ -n "$uid" ] && [ -n "$gid" ] || die "the user or group $NAME was not created"

# 3. A new release in its own venv, built from a copy of the source (the tree may be
#    read-only, and an in-tree build would leave files in it).
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
release="$NAME-$VERSION-$stamp"
new="$RELEASES/$release"
mkdir -p "$RELEASES"
[ ! -e "$new" ] || die "$new exists already (two installs in the same second?)"
build="$(mktemp -d)"
trap 'rm -rf "$build"' EXIT
cp -r "$SRC/pyproject.toml" "$SRC/README.md" "$SRC/gateway" "$SRC/hw_sim" "$build/"
find "$build" -name __pycache__ -prune -exec rm -rf {} +
say "creating the venv $OPT_REL/releases/$release with $("$PYTHON" --version 2>&1)"
# Debian's pip (python3-pip, kept current by apt) when there is one; else the venv's own.
if "$PYTHON" -m pip --version >/dev/null 2>&1; then
  "$PYTHON" -m venv --system-site-packages --without-pip "$new"
else
  "$PYTHON" -m venv --system-site-packages "$new"
fi
# shellcheck disable=SC2086 # PIP_ARGS is a list of options on purpose
if ! "$new/bin/python" -m pip install --quiet --no-cache-dir --disable-pip-version-check \
    --no-warn-script-location $PIP_ARGS "$build"; then
  rm -rf "$new"
  die "pip could not install alarmgw into the new venv (see above); the installed version, if any, is unchanged"
fi
# pip and venv wrote the path they were given into the venv: the first line of every script
# (#!DIR/opt/... under --root), the activate scripts and pyvenv.cfg. The venv runs from
# $OPT_REL: that path goes in its place, or the unit cannot exec its program (203/EXEC).
if [ -n "$ROOT" ]; then
  "$PYTHON" "$SRC/debian/fix-shebangs" "$ROOT" "$new/bin"
  sed -i "s|$ROOT$OPT_REL|$OPT_REL|g" "$new"/bin/activate* "$new/pyvenv.cfg"
fi
# Run through the venv's interpreter: under --root, the path in the first line is not here.
if ! "$new/bin/python" "$new/bin/alarmgw" --version >/dev/null; then
  rm -rf "$new"
  die "the new venv's alarmgw does not run (see above); the installed version, if any, is unchanged"
fi
previous="$(readlink "$OPT/venv" 2>/dev/null || true)"
ln -sfn "releases/$release" "$OPT/venv.new"
mv -Tf "$OPT/venv.new" "$OPT/venv"
say "$OPT_REL/venv -> releases/$release${previous:+ (was ${previous#releases/})}"
# Keep this release and the one before it (a rollback is re-pointing the link).
for d in "$RELEASES"/*; do
  base="releases/$(basename "$d")"
  [ "$base" = "releases/$release" ] || [ "$base" = "$previous" ] || rm -rf "$d"
done
mkdir -p "$OPT/doc"
for f in docs/operations.md docs/protocol.md examples/config.toml; do
  [ ! -e "$SRC/$f" ] || install -m 0644 "$SRC/$f" "$OPT/doc/"
done
mkdir -p "$(dirname "$BIN_LINK")"
ln -sfn "$OPT_REL/venv/bin/alarmgw" "$BIN_LINK"

# 4. Config: created once from the example, never overwritten.
install -d -m 0750 -o 0 -g "$gid" "$ETC"
install -m 0644 -o 0 -g 0 "$SRC/examples/config.toml" "$ETC/config.toml.example"
created=0
if [ -e "$CONFIG" ]; then
  say "keeping $CONFIG as it is (the example of this version: $CONFIG.example)"
  if [ -n "$(find "$CONFIG" -perm -o+r)" ]; then
    say "warning: $CONFIG is readable by everyone; it may hold the broker password: chmod 0640 it"
  fi
  for key in "$ETC"/*.key; do
    [ -f "$key" ] || continue
    if [ -n "$(find "$key" -perm /077)" ]; then
      say "warning: group or others may read $key; alarmgw refuses such a key file: chmod 600 $key && chown $NAME $key"
    fi
  done
else
  install -m 0640 -o 0 -g "$gid" "$SRC/examples/config.toml" "$CONFIG"
  created=1
  say "created $CONFIG from the example (0640 root:$NAME): edit it before starting"
fi

# 5. State: systemd's StateDirectory= creates it too; made here so that `alarmgw queue` works
#    before the first start. Existing contents (the outbox) are never touched.
install -d -m 0750 -o "$uid" -g "$gid" "$STATE"

# 6. The unit, with the device groups that do not exist here left out (a missing group in
#    SupplementaryGroups= stops the unit from starting at all).
install -d -m 0755 "$UNIT_DIR"
install -m 0644 "$SRC/systemd/alarmgw.service" "$UNIT"
if [ "${#absent[@]}" -gt 0 ]; then
  install -d -m 0755 "$DROPIN_DIR"
  {
    echo "# Written by install.sh: these groups do not exist on this system: ${absent[*]}"
    echo "[Service]"
    echo "SupplementaryGroups="
    if [ "${#groups[@]}" -gt 0 ]; then echo "SupplementaryGroups=${groups[*]}"; fi
  } > "$DROPIN_DIR/10-groups.conf"
  say "groups ${absent[*]} do not exist here: left out in $DROPIN_DIR/10-groups.conf"
else
  rm -f "$DROPIN_DIR/10-groups.conf"
  rmdir "$DROPIN_DIR" 2>/dev/null || true
fi
live systemctl daemon-reload
if [ -n "$ROOT" ]; then
  systemctl --root="$ROOT" enable "$NAME.service"
else
  systemctl enable "$NAME.service"
fi

# 7. Start (or restart onto the new release) only with a config that loads.
if [ "$created" -eq 1 ]; then
  say "not started: edit $CONFIG, check it with 'alarmgw check-config', then"
  say "  systemctl start alarmgw && alarmgw selftest"
elif [ "$START" -eq 0 ]; then
  say "not (re)started (--no-start): systemctl restart alarmgw"
elif ! "$OPT/venv/bin/python" "$OPT/venv/bin/alarmgw" --config "$CONFIG" check-config \
    >/dev/null; then
  say "not (re)started: $CONFIG does not load (see above); fix it, then systemctl restart alarmgw"
else
  live systemctl restart "$NAME.service"
  say "started; check it with: alarmgw status && alarmgw selftest"
fi
say "done: alarmgw $VERSION ($MODE)"
