#!/bin/sh
# Install Bastion's desktop entry and icon for the current user (no root needed).
#   packaging/install-desktop-entry.sh [PATH_TO_BASTION]      install
#   packaging/install-desktop-entry.sh --uninstall            remove
# Terminal=true: the desktop opens Bastion in the user's terminal emulator.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
apps="${XDG_DATA_HOME:-$HOME/.local/share}/applications"
icons="${XDG_DATA_HOME:-$HOME/.local/share}/icons/hicolor/scalable/apps"
if [ "${1:-}" = "--uninstall" ]; then
    rm -f "$apps/bastion.desktop" "$icons/bastion.svg"
    echo "removed the Bastion desktop entry"
    exit 0
fi
exe="${1:-}"
if [ -z "$exe" ]; then
    if [ -x "$here/bastion" ]; then exe="$here/bastion"; else exe=$(command -v bastion || true); fi
fi
if [ -z "$exe" ] || [ ! -x "$exe" ]; then
    echo "bastion executable not found: give its path as the first argument" >&2
    exit 1
fi
exe=$(cd "$(dirname "$exe")" && pwd)/$(basename "$exe")
mkdir -p "$apps" "$icons"
cp "$here/bastion.svg" "$icons/bastion.svg"
# Quote the path for the Exec key (desktop entry spec: double quotes, escape \ " ` $).
quoted=$(printf '%s' "$exe" | sed 's/[\\"`$]/\\&/g')
EXE="$quoted" awk '/^Exec=/ { print "Exec=\"" ENVIRON["EXE"] "\""; next } { print }' \
    "$here/bastion.desktop" > "$apps/bastion.desktop.tmp"
mv "$apps/bastion.desktop.tmp" "$apps/bastion.desktop"
chmod 0644 "$apps/bastion.desktop"
if command -v update-desktop-database >/dev/null 2>&1; then
    update-desktop-database "$apps" >/dev/null 2>&1 || true
fi
echo "installed $apps/bastion.desktop (runs $exe in a terminal)"
