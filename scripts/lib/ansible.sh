# Sourced helper: ansible-core (pinned) in a venv under TOOLS_DIR, for the playbook tests.
#
#   ansible_install   creates $TOOLS_DIR/ansible-venv with ansible-core $ANSIBLE_CORE_VERSION and
#                     dnspython $DNSPYTHON_VERSION from PyPI, unless both are already there at those
#                     versions; exports ANSIBLE_PLAYBOOK (the venv's ansible-playbook).
#                     TOOLS_DIR defaults to ~/.cache/dnsorch-tools.
#   ansible_env DIR   exports the environment that keeps ansible-playbook inside DIR and quiet:
#                     ANSIBLE_HOME and ANSIBLE_LOCAL_TEMP under DIR (nothing in ~/.ansible),
#                     ANSIBLE_PYTHON_INTERPRETER (the venv's python: with `-i localhost,` ansible
#                     would otherwise discover some system python3 for the "target"),
#                     ANSIBLE_NOCOLOR=1, ANSIBLE_LOCALHOST_WARNING=false and
#                     ANSIBLE_INVENTORY_UNPARSED_WARNING=false.
#
# Only ansible-core: the playbooks use ansible.builtin modules and the nsupdate command, no
# collections. ansible-core 2.19 is stricter about templating than earlier releases (e.g.
# conditionals must be booleans), hence the pin.

TOOLS_DIR="${TOOLS_DIR:-$HOME/.cache/dnsorch-tools}"
ANSIBLE_CORE_VERSION=2.19.14
DNSPYTHON_VERSION=2.9.2
ANSIBLE_VENV="$TOOLS_DIR/ansible-venv"

# The installed "ansible-core dnspython" versions, or nothing if the venv is missing or broken
# (e.g. its base python is gone).
_ansible_installed_versions() {
    "$ANSIBLE_VENV/bin/python" -c \
        'import importlib.metadata as m; print(m.version("ansible-core"), m.version("dnspython"))' 2>/dev/null
}

ansible_install() {
    if [ "$(_ansible_installed_versions)" != "$ANSIBLE_CORE_VERSION $DNSPYTHON_VERSION" ] \
        || [ ! -x "$ANSIBLE_VENV/bin/ansible-playbook" ]; then
        echo "==> installing ansible-core $ANSIBLE_CORE_VERSION and dnspython $DNSPYTHON_VERSION into $ANSIBLE_VENV"
        mkdir -p "$TOOLS_DIR"
        rm -rf "$ANSIBLE_VENV"
        python3 -m venv "$ANSIBLE_VENV"
        "$ANSIBLE_VENV/bin/pip" install --quiet --disable-pip-version-check \
            "ansible-core==$ANSIBLE_CORE_VERSION" "dnspython==$DNSPYTHON_VERSION"
    fi
    export ANSIBLE_PLAYBOOK="$ANSIBLE_VENV/bin/ansible-playbook"
}

ansible_env() {
    local dir="$1"
    mkdir -p "$dir/tmp"
    export ANSIBLE_HOME="$dir" \
        ANSIBLE_LOCAL_TEMP="$dir/tmp" \
        ANSIBLE_PYTHON_INTERPRETER="$ANSIBLE_VENV/bin/python" \
        ANSIBLE_NOCOLOR=1 \
        ANSIBLE_LOCALHOST_WARNING=false \
        ANSIBLE_INVENTORY_UNPARSED_WARNING=false
}
