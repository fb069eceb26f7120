#!/bin/sh
# Installs the Debian packages named on the command line that are not installed yet.
# An entry PKG@CMD is also satisfied when CMD is on the PATH (node and npm may come from
# another distribution of Node.js that Debian's packages would conflict with).
# Uses sudo when not root. Quiet when there is nothing to do.
set -eu
missing=""
for entry in "$@"; do
    p=${entry%@*}
    cmd=""
    [ "$p" != "$entry" ] && cmd=${entry#*@}
    if [ -n "$cmd" ] && command -v "$cmd" >/dev/null 2>&1; then
        continue
    fi
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
if [ -n "$missing" ]; then
    echo "deps: installing:$missing"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
fi
