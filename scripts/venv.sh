#!/usr/bin/env bash
# Make .venv with the given Python (Debian needs python3-venv for that) and install the
# project into it: scripts/venv.sh python3 '.[test]'
#
# The install is editable, so a change to the code needs none. pip runs again only when
# pyproject.toml changed (dependencies, entry points) or SPEC asks for extras not installed
# yet; .venv/.install-stamp says what was installed: the hash of pyproject.toml, then one
# line per extra. Removing .venv (or the stamp) installs afresh.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${1:-python3}"
SPEC="${2:-.}"
STAMP=.venv/.install-stamp

case "${SPEC}" in
    .) extras=() ;;
    .\[*\]) IFS=, read -r -a extras <<<"${SPEC:2:${#SPEC}-3}" ;;
    *)
        echo "scripts/venv.sh: SPEC is . or .[extra,...], not ${SPEC}" >&2
        exit 2
        ;;
esac
pyproject="pyproject.toml sha256 $(sha256sum pyproject.toml | cut -d ' ' -f 1)"

# The stamp's extras when it was written for this pyproject.toml; nothing otherwise.
installed_extras() {
    [[ -f ${STAMP} && $(head -n 1 "${STAMP}") == "${pyproject}" ]] || return 0
    sed -n 's/^extra //p' "${STAMP}"
}

# True when the stamp covers this pyproject.toml and every extra SPEC asks for.
up_to_date() {
    [[ -f ${STAMP} && $(head -n 1 "${STAMP}") == "${pyproject}" ]] || return 1
    local have extra
    have=$(installed_extras)
    for extra in "${extras[@]}"; do
        grep -qxF -- "${extra// /}" <<<"${have}" || return 1
    done
}

if [[ ! -x .venv/bin/python ]]; then
    if ! "${PYTHON}" -m venv .venv 2>/dev/null; then
        rm -rf .venv
        if [[ ${EUID} -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
            DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q python3-venv
        fi
        "${PYTHON}" -m venv .venv
    fi
fi

if up_to_date; then
    exit 0
fi
echo "scripts/venv.sh: installing ${SPEC} into .venv (not yet installed for this pyproject.toml)" >&2
keep=$(installed_extras)
rm -f "${STAMP}" # a failed install leaves no stamp behind
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
# The editable install's note about folders named like the package is setuptools' news for
# every flat layout; it says nothing about this project.
.venv/bin/python -W "ignore:Editable installation" -m pip install -q \
    --disable-pip-version-check -e "${SPEC}"
{
    echo "${pyproject}"
    for extra in ${keep} "${extras[@]// /}"; do
        echo "extra ${extra}"
    done | sort -u
} >"${STAMP}.new"
mv "${STAMP}.new" "${STAMP}"
