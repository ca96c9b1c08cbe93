#!/bin/sh
# Installs the Debian packages given as arguments that are not yet installed.
# As root it runs apt-get; otherwise it prints the command to run.
missing=""
for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ]; then
    apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $missing
else
    echo "missing packages:$missing"
    echo "run: sudo apt-get install -y$missing"
    exit 1
fi
