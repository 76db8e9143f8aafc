# shellcheck shell=bash
# Shared helpers for pgfed's shell scripts. Source it; do not execute it.
#
#   # shellcheck source=scripts/lib/common.sh
#   source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
#
# Everything here writes to stderr, so that scripts can keep stdout for
# machine-readable output (e.g. `pg-test-cluster start` prints export lines).

PGFED_SCRIPT_NAME=${PGFED_SCRIPT_NAME:-$(basename "$0")}

log() { printf '%s: %s\n' "$PGFED_SCRIPT_NAME" "$*" >&2; }
warn() { printf '%s: WARNING: %s\n' "$PGFED_SCRIPT_NAME" "$*" >&2; }
die() {
    printf '%s: ERROR: %s\n' "$PGFED_SCRIPT_NAME" "$*" >&2
    exit 1
}

have() { command -v "$1" >/dev/null 2>&1; }

# Absolute path of the repository root (parent of scripts/).
pgfed_repo_root() {
    local here
    here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
    (cd "$here/../.." && pwd)
}

# Run a command as root: directly when we are root, via non-interactive sudo
# otherwise. Fails loudly when neither is possible.
as_root() {
    if [[ $EUID -eq 0 ]]; then
        "$@"
    elif have sudo && sudo -n true 2>/dev/null; then
        sudo -n -- "$@"
    else
        die "need root to run: $* (run as root, or configure passwordless sudo)"
    fi
}

# dpkg_installed PKG: true when PKG is installed (status "install ok installed").
dpkg_installed() {
    [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true) == "install ok installed" ]]
}

_PGFED_APT_UPDATED=0
_PGFED_POLICY_RC_CREATED=0

_pgfed_policy_rc_cleanup() {
    if [[ $_PGFED_POLICY_RC_CREATED -eq 1 ]]; then
        as_root rm -f /usr/sbin/policy-rc.d || true
        _PGFED_POLICY_RC_CREATED=0
    fi
}

# apt_install PKG...: install the given Debian packages non-interactively.
#  * runs `apt-get update` at most once per script run;
#  * never upgrades an already installed PostgreSQL package (postgresql-*,
#    libpq*): if the plain install would, the installed versions are pinned on
#    the command line, and the install fails loudly if that is not possible;
#  * prevents package maintainer scripts from starting services (pgbouncer
#    would otherwise grab port 6432, postgresql would start a new cluster);
#  * waits for the dpkg lock instead of failing when another apt is running.
apt_install() {
    [[ $# -gt 0 ]] || return 0
    have apt-get || die "apt-get not found; cannot install: $*"
    local -a apt_opts=(-y -q --no-install-recommends
        -o DPkg::Lock::Timeout=600
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
    if [[ $_PGFED_APT_UPDATED -eq 0 ]]; then
        log "apt-get update"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=600 update >&2 ||
            die "apt-get update failed"
        _PGFED_APT_UPDATED=1
    fi

    # Would this upgrade an installed PostgreSQL package? Simulate first.
    local sim pins=() pkg ver
    sim=$(apt-get -s "${apt_opts[@]}" install "$@" 2>&1) ||
        die "apt-get cannot install $* (simulation failed):"$'\n'"$sim"
    # "Inst NAME [OLDVERSION] (NEWVERSION ...)" means an upgrade of NAME.
    while read -r pkg; do
        ver=$(dpkg-query -W -f='${Version}' "$pkg")
        pins+=("$pkg=$ver")
    done < <(printf '%s\n' "$sim" | awk '$1 == "Inst" && $3 ~ /^\[/ && ($2 ~ /^postgresql/ || $2 ~ /^libpq/) { print $2 }')
    if [[ ${#pins[@]} -gt 0 ]]; then
        log "pinning installed PostgreSQL packages so they are not upgraded: ${pins[*]}"
    fi

    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\n# temporary, created by pgfed scripts: do not start services\nexit 101\n' |
            as_root tee /usr/sbin/policy-rc.d >/dev/null
        as_root chmod 755 /usr/sbin/policy-rc.d
        _PGFED_POLICY_RC_CREATED=1
    fi
    log "apt-get install $*"
    local rc=0
    as_root env DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" install "$@" "${pins[@]}" >&2 || rc=$?
    _pgfed_policy_rc_cleanup
    [[ $rc -eq 0 ]] || die "apt-get install failed (exit $rc) for: $*"

    for pkg in "$@"; do
        pkg=${pkg%%=*}
        dpkg_installed "$pkg" || die "package $pkg is still not installed after apt-get install"
    done
}

# tcp_port_open HOST PORT: true when something accepts TCP connections there.
tcp_port_open() {
    (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}
