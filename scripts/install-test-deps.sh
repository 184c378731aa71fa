#!/usr/bin/env bash
# Install the Debian packages the test suite needs (real Postfix, OpenSSL, Prometheus).
#
# Idempotent: runs "apt-get update" only when the package lists are missing or older
# than a day, and installs only the packages that are not installed yet.
# Must run as root on Debian 12 (bookworm). It never starts Postfix: the tests do that.
set -euo pipefail

# The packages the tests need. Add new ones here.
PACKAGES=(
    postfix
    openssl
    prometheus # prometheus and promtool
    ca-certificates
    procps
    iproute2
    unzip # for scripts/install-helm.sh
    buildah # tests/test_image.py builds the Dockerfile (vfs storage, chroot isolation)
    debootstrap # tests/test_image.py makes a stand-in Debian base image
    nsd # tests/support/dns.py runs a private authoritative DNS server for MX look-ups
    ldnsutils # tests/support/dnssec.py signs its test zones (ldns-keygen, ldns-signzone)
    unbound # tests/support/dnssec.py runs a private validating resolver (the system one is left alone)
    chromium # tests/test_browser.py loads the status pages headless (DOM and screenshots)
    curl # tests/test_web_security.py speaks HTTPS with client certificates and basic auth
)

APT_GET=(apt-get -o DPkg::Lock::Timeout=600 -o Acquire::Retries=3)
LISTS_DIR=/var/lib/apt/lists

log() {
    printf '[install-test-deps] %s\n' "$*"
}

if [[ ${EUID} -ne 0 ]]; then
    log "must run as root" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive

lists_are_fresh() {
    # Fresh = at least one Packages list, none of them older than a day.
    local found
    found=$(find "${LISTS_DIR}" -maxdepth 1 -name '*_Packages*' -print -quit 2>/dev/null)
    [[ -n ${found} ]] || return 1
    [[ -z $(find "${LISTS_DIR}" -maxdepth 1 -name '*_Packages*' -mmin +1440 -print -quit) ]]
}

is_installed() {
    [[ $(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null) == installed ]]
}

missing=()
for pkg in "${PACKAGES[@]}"; do
    if is_installed "${pkg}"; then
        log "already installed: ${pkg}"
    else
        missing+=("${pkg}")
    fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
    log "nothing to install"
    exit 0
fi

if lists_are_fresh; then
    log "package lists are less than a day old, skipping apt-get update"
else
    log "running apt-get update"
    "${APT_GET[@]}" update
fi

# Postfix asks for a mail configuration type; the tests write their own main.cf.
log "preseeding debconf: postfix/main_mailer_type = No configuration"
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections

# policy-rc.d keeps the package scripts from starting Postfix (or anything else).
policy=/usr/sbin/policy-rc.d
created_policy=0
if [[ ! -e ${policy} ]]; then
    printf '#!/bin/sh\nexit 101\n' >"${policy}"
    chmod 755 "${policy}"
    created_policy=1
fi
cleanup() {
    if [[ ${created_policy} -eq 1 ]]; then
        rm -f "${policy}"
    fi
}
trap cleanup EXIT

log "installing: ${missing[*]}"
"${APT_GET[@]}" install -y --no-install-recommends "${missing[@]}"

log "done"
