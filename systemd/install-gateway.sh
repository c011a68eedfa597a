#!/usr/bin/env bash
# Installs the Tether gateway agent on a Debian/Ubuntu host as the systemd service tether-agent.
# Idempotent: run it again from a newer checkout to upgrade; an existing /etc/tether/agent.json is kept.
set -euo pipefail

readonly PREFIX=/opt/tether
readonly CONF_DIR=/etc/tether
readonly CONF_FILE=$CONF_DIR/agent.json
readonly UNIT_NAME=tether-agent.service
readonly UNIT_DIR=/etc/systemd/system
readonly SERVICE_USER=tether
readonly NODE_MIN_MAJOR=20
readonly NODE_MIN_MINOR=10 # package.json engines: node >=20.10

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
readonly SCRIPT_DIR
SRC_DIR=$(cd -- "$SCRIPT_DIR/.." && pwd -P)
readonly SRC_DIR

usage() {
  cat <<EOF
Usage: sudo $0 [--no-start] [--help]

Installs the Tether gateway agent from this checkout ($SRC_DIR):
  - copies the package to $PREFIX (without node_modules, .git, data) and runs 'npm ci --omit=dev' there
  - creates the system user '$SERVICE_USER' if it is missing
  - writes $CONF_FILE from systemd/agent.example.json unless it exists (root:$SERVICE_USER 0640)
  - installs $UNIT_DIR/$UNIT_NAME, runs 'systemctl daemon-reload' and
    'systemctl enable --now tether-agent' (restarting it if it was already running)

Options:
  --no-start  install files and reload systemd, but do not enable or start the service
  -h, --help  show this help

Requires root and Node.js >= $NODE_MIN_MAJOR.$NODE_MIN_MINOR (the unit runs it as /usr/bin/node), plus npm.
Re-running upgrades the code in $PREFIX and keeps $CONF_FILE and /var/lib/tether-agent.
EOF
}

log() { printf 'install-gateway: %s\n' "$*"; }
die() {
  printf 'install-gateway: error: %s\n' "$*" >&2
  exit 1
}

start=yes
while [[ $# -gt 0 ]]; do
  case $1 in
    --no-start) start=no ;;
    -h | --help)
      usage
      exit 0
      ;;
    *)
      printf 'install-gateway: unknown option: %s\n\n' "$1" >&2
      usage >&2
      exit 2
      ;;
  esac
  shift
done

[[ $EUID -eq 0 ]] || die "must run as root (try: sudo $0)"
[[ -f $SRC_DIR/package.json && -f $SRC_DIR/cli/tether.mjs ]] ||
  die "$SRC_DIR does not look like the tether package (package.json, cli/tether.mjs)"
[[ -f $SRC_DIR/package-lock.json ]] || die "$SRC_DIR/package-lock.json is missing; npm ci needs it"

# Node: the unit's ExecStart names /usr/bin/node; another system-wide node is written into the installed unit
# instead. ProtectHome=yes hides nvm-style installs under /home and /root from the service.
if [[ -x /usr/bin/node ]]; then node_bin=/usr/bin/node; else node_bin=$(command -v node || true); fi
[[ -n $node_bin ]] || die "node not found; install Node.js >= $NODE_MIN_MAJOR.$NODE_MIN_MINOR (e.g. from NodeSource)"
[[ $node_bin == /* ]] || node_bin=$(readlink -f -- "$node_bin")
node_version=$("$node_bin" -p 'process.versions.node') || die "cannot run $node_bin"
IFS=. read -r node_major node_minor _ <<<"$node_version"
if ((node_major < NODE_MIN_MAJOR || (node_major == NODE_MIN_MAJOR && node_minor < NODE_MIN_MINOR))); then
  die "node $node_version at $node_bin is too old; need >= $NODE_MIN_MAJOR.$NODE_MIN_MINOR"
fi
case $(readlink -f -- "$node_bin") in
  /home/* | /root/* | /run/user/*)
    die "node at $node_bin is hidden from the service by ProtectHome=yes; install a system-wide Node.js"
    ;;
esac
command -v npm >/dev/null || die "npm not found (Debian/Ubuntu: apt-get install npm, or use NodeSource's nodejs)"
log "using node $node_version at $node_bin"

# Package: stage a fresh copy next to $PREFIX, install production dependencies there, then swap it in,
# so a failed npm ci leaves the running installation untouched.
stage=$(mktemp -d "$PREFIX.new.XXXXXX")
trap 'rm -rf -- "$stage"' EXIT
log "copying $SRC_DIR to $PREFIX"
tar -C "$SRC_DIR" \
  --exclude=./node_modules --exclude=./.git --exclude=./data \
  --exclude=./scratch --exclude=./.tether-demo --exclude=./agent-state \
  -cf - . | tar -C "$stage" --no-same-owner --no-same-permissions -xf -
log "running npm ci --omit=dev in $PREFIX"
(cd "$stage" && npm ci --omit=dev --no-audit --no-fund --loglevel=warn)
chmod -R u=rwX,go=rX "$stage"
if [[ -e $PREFIX ]]; then
  rm -rf -- "$PREFIX.old"
  mv -- "$PREFIX" "$PREFIX.old"
fi
mv -- "$stage" "$PREFIX"
trap - EXIT
rm -rf -- "$PREFIX.old"

# Service user: no home, no login shell; systemd creates and chowns /var/lib/tether-agent for it.
if id -u "$SERVICE_USER" >/dev/null 2>&1; then
  log "user $SERVICE_USER exists"
else
  group_opt=(--user-group)
  if getent group "$SERVICE_USER" >/dev/null; then group_opt=(--gid "$SERVICE_USER"); fi
  useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin \
    "${group_opt[@]}" --comment 'Tether agent' "$SERVICE_USER"
  log "created system user $SERVICE_USER"
fi

# Configuration: written once from the example, never overwritten.
install -d -m 0755 -o root -g root "$CONF_DIR"
if [[ -e $CONF_FILE ]]; then
  log "keeping existing $CONF_FILE"
else
  install -m 0640 -o root -g "$SERVICE_USER" "$SCRIPT_DIR/agent.example.json" "$CONF_FILE"
  log "wrote $CONF_FILE from the example: set relay, user, device, credential and allow"
fi

# Unit: point ExecStart at the node found above if it is not /usr/bin/node.
unit_tmp=$(mktemp)
trap 'rm -f -- "$unit_tmp"' EXIT
sed "s#^ExecStart=/usr/bin/node #ExecStart=$node_bin #" "$SCRIPT_DIR/$UNIT_NAME" >"$unit_tmp"
install -m 0644 -o root -g root "$unit_tmp" "$UNIT_DIR/$UNIT_NAME"
log "installed $UNIT_DIR/$UNIT_NAME"

if [[ ! -d /run/systemd/system ]]; then
  log "systemd is not running here; enable later with: systemctl enable --now tether-agent"
  exit 0
fi
systemctl daemon-reload

if [[ $start == no ]]; then
  log "--no-start: not enabled; when ready: systemctl enable --now tether-agent"
  exit 0
fi
if grep -q 'REPLACE-WITH-' "$CONF_FILE"; then
  systemctl enable tether-agent
  log "enabled, but not started: $CONF_FILE still has REPLACE-WITH-... placeholders"
  log "edit it, then: systemctl start tether-agent"
  exit 0
fi
# enable --now does not restart a running service; restart it so an upgrade takes effect.
if systemctl is-active --quiet tether-agent; then systemctl restart tether-agent; fi
systemctl enable --now tether-agent
log "tether-agent is $(systemctl is-active tether-agent || true); logs: journalctl -u tether-agent -f"
