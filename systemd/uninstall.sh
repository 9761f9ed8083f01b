#!/usr/bin/env bash
# Undo systemd/install.sh. Run as root.
#
#   sudo systemd/uninstall.sh            stop and remove the service and the program;
#                                        keep the config, the key, the state and the user
#   sudo systemd/uninstall.sh --purge    also remove the config and key (/etc/voice-assistant),
#                                        the state (/var/lib/voice-assistant, or the desktop
#                                        user's ~/.local/state/voice-assistant and key) and
#                                        the system user
#
# Options: --root DIR (also DESTDIR=DIR) as given to install.sh; --unit-only removes just
# the service unit (install.sh uses it to switch between the system and desktop service).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=common.sh
. "$here/common.sh"

root=${DESTDIR:-}
purge=no
unit_only=no
while [ $# -gt 0 ]; do
    case "$1" in
        --purge) purge=yes; shift ;;
        --root) root=${2:?--root needs a directory}; shift 2 ;;
        --unit-only) unit_only=yes; shift ;;
        -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
        *) echo "unknown option: $1" >&2; exit 2 ;;
    esac
done
root=${root%/}
require_root
mode=$(installed_as MODE)
mode=${mode:-system}
service_user=$(installed_as SERVICE_USER)
service_user=${service_user:-voice-assistant}
desktop_user=$(installed_as DESKTOP_USER)

remove_system_unit() {
    if systemd_running; then
        systemctl disable --now "$UNIT" 2>/dev/null || true
    fi
    rm -f "$root/etc/systemd/system/multi-user.target.wants/$UNIT" \
          "$root/etc/systemd/system/$UNIT"
    if systemd_running; then
        systemctl daemon-reload
    fi
}

remove_desktop_unit() {
    local home uid
    home=$(getent passwd "$desktop_user" | cut -d: -f6) || return 0
    uid=$(id -u "$desktop_user")
    if systemd_running && [ -S "/run/user/$uid/systemd/private" ]; then
        runuser -u "$desktop_user" -- env XDG_RUNTIME_DIR="/run/user/$uid" \
            systemctl --user disable --now "$UNIT" 2>/dev/null || true
    fi
    rm -f "$root$home/.config/systemd/user/default.target.wants/$UNIT" \
          "$root$home/.config/systemd/user/$UNIT"
    if [ "$purge" = yes ]; then
        rm -rf "$root$home/.config/voice-assistant" "$root$home/.local/state/voice-assistant"
    fi
}

if [ "$mode" = desktop ] && [ -n "$desktop_user" ]; then
    remove_desktop_unit
else
    remove_system_unit
fi
if [ "$unit_only" = yes ]; then
    exit 0
fi

rm -rf "$root$OPT"
if [ "$(readlink "$root/usr/local/bin/voice-assistant" 2>/dev/null)" = "$OPT/venv/bin/voice-assistant" ]; then
    rm -f "$root/usr/local/bin/voice-assistant"
fi
if [ "$purge" = yes ]; then
    rm -rf "$root$ETC" "$root/var/lib/voice-assistant" "$root/var/lib/private/voice-assistant"
    if [ "$mode" = system ] && getent passwd "$service_user" >/dev/null; then
        userdel "$service_user"
        # useradd --user-group made a group of the same name; userdel leaves it if shared.
        if getent group "$service_user" >/dev/null; then
            groupdel "$service_user" 2>/dev/null || true
        fi
    fi
    echo "removed the voice assistant, its config, key and state"
else
    echo "removed the voice assistant; kept $ETC (config, key) and its state (--purge removes them)"
fi
