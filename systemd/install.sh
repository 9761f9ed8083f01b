#!/usr/bin/env bash
# Install the voice assistant as a service that starts at boot. Run as root from a checkout;
# running it again updates the code and keeps the config, the key and the state.
#
#   sudo systemd/install.sh [--key-file FILE]                  system service (Pi OS Lite, plain ALSA)
#   sudo systemd/install.sh --desktop-user NAME [--key-file F] NAME's service (PipeWire desktop)
#
# Options:
#   --key-file FILE      the Dify app key (app-...); else $DIFY_API_KEY, else asked for on a
#                        terminal; on a reinstall the key already installed is kept
#   --desktop-user NAME  run in NAME's session, where the sound server is (see the README)
#   --user NAME          the system service's user (default voice-assistant)
#   --root DIR           install under DIR instead of / (also DESTDIR=DIR): nothing is
#                        started, the venv works in place (not when copied elsewhere), and
#                        the service user is still created on this system, as it owns files
#   --no-start           enable the service but do not (re)start it
#
# What it writes (under --root when given):
#   /opt/voice-assistant/venv                   the package, installed from this checkout (not editable)
#   /opt/voice-assistant/venv/portaudio         PortAudio with the ALSA fix (hardware/portaudio)
#   /usr/local/bin/voice-assistant              a link to the venv's command
#   /etc/voice-assistant/assistant.toml         the config, 0640 root:<service group>; never overwritten
#   /etc/voice-assistant/assistant.toml.dist    the shipped defaults, refreshed each time
#   /etc/voice-assistant/credentials/dify-api-key   the key, 0600 root (system service)
#   /etc/systemd/system/voice-assistant.service + its multi-user.target.wants link
#   /etc/voice-assistant/installed-as           what uninstall.sh needs to know
# and for --desktop-user, in NAME's home: .config/voice-assistant/dify-api-key (0600 NAME),
# .config/systemd/user/voice-assistant.service and its default.target.wants link.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/.." && pwd)
# shellcheck source=common.sh
. "$here/common.sh"
root=${DESTDIR:-}
key_file=""
service_user=voice-assistant
desktop_user=""
start=yes

usage() { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
while [ $# -gt 0 ]; do
    case "$1" in
        --key-file) key_file=${2:?--key-file needs a file}; shift 2 ;;
        --desktop-user) desktop_user=${2:?--desktop-user needs a name}; shift 2 ;;
        --user) service_user=${2:?--user needs a name}; shift 2 ;;
        --root) root=${2:?--root needs a directory}; shift 2 ;;
        --no-start) start=no; shift ;;
        -h|--help) usage ;;
        *) echo "unknown option: $1" >&2; usage ;;
    esac
done
root=${root%/}
require_root
VENV=$OPT/venv

say() { printf '%s\n' "$*"; }

create_service_user() {
    if ! getent passwd "$service_user" >/dev/null; then
        say "creating the system user $service_user"
        useradd --system --user-group --home-dir /var/lib/voice-assistant --no-create-home \
                --shell /usr/sbin/nologin --comment "voice assistant" "$service_user"
    fi
    # The sound card; the GPIO chips where the board has the group (Raspberry Pi OS).
    local group
    for group in audio gpio; do
        if getent group "$group" >/dev/null; then
            usermod -a -G "$group" "$service_user"
        fi
    done
}

install_venv() {
    say "installing the assistant into $root$VENV"
    mkdir -p "$root$OPT"
    # The system's Python (Debian's python3-venv), not whatever `python3` is first on root's
    # PATH: a pyenv or conda one under /root would be out of the service user's reach.
    if [ ! -x "$root$VENV/bin/python" ]; then
        /usr/bin/python3 -m venv "$root$VENV"
    fi
    # Not editable: the service runs what was installed, not whatever the checkout holds now.
    # Built from a clean copy, so no stale build/ of an earlier install ends up in it.
    # pip honours PIP_INDEX_URL, PIP_NO_INDEX, PIP_FIND_LINKS for offline or mirrored installs.
    local copy
    copy=$(mktemp -d)
    tar -C "$src" --exclude=./.venv --exclude=./.git --exclude=./build --exclude='*.egg-info' \
        --exclude=./demo-out -cf - . | tar -C "$copy" -xf -
    "$root$VENV/bin/python" -m pip install -q --disable-pip-version-check "$copy" \
        || { rm -rf "$copy"; exit 1; }
    rm -rf "$copy"
    install_portaudio
    mkdir -p "$root/usr/local/bin"
    ln -sfn "$VENV/bin/voice-assistant" "$root/usr/local/bin/voice-assistant"
}

install_portaudio() {
    # The fixed PortAudio (see the README): the checkout's build when it is current,
    # else a fresh build; without it the assistant runs on the system's copy and says so.
    local built="$src/.venv/portaudio" target="$root$VENV/portaudio"
    local want
    want="19.7.0 $(sha256sum "$src/hardware/portaudio/alsa-error-paths.patch" | cut -d' ' -f1)"
    if [ -f "$target/.built" ] && [ "$(cat "$target/.built")" = "$want" ]; then
        return
    fi
    if [ -f "$built/.built" ] && [ "$(cat "$built/.built")" = "$want" ]; then
        rm -rf "$target" && cp -a "$built" "$target"
    else
        "$src/hardware/portaudio/build.sh" "$target" \
            || say "warning: PortAudio build failed; the assistant will use the system's" >&2
    fi
}

read_key() {
    # The key, from --key-file, $DIFY_API_KEY, or the terminal (not asked again when one
    # is installed already); empty if none was given.
    if [ -n "$key_file" ]; then
        tr -d '[:space:]' < "$key_file"
    elif [ -n "${DIFY_API_KEY:-}" ]; then
        printf '%s' "$DIFY_API_KEY"
    elif [ -t 0 ] && [ ! -s "$(key_path)" ]; then
        local key
        read -r -s -p "Dify app key (app-...; input hidden): " key </dev/tty
        printf '\n' >&2
        printf '%s' "$key"
    fi
}

key_path() {
    # Where the key goes: root's credential store, or the desktop user's config.
    if [ -n "$desktop_user" ]; then
        echo "$root$(getent passwd "$desktop_user" | cut -d: -f6)/.config/voice-assistant/dify-api-key"
    else
        echo "$root$ETC/credentials/dify-api-key"
    fi
}

check_key() {
    # Before anything is installed: a first install needs a key, a reinstall has one.
    if [ -z "$key" ] && [ ! -s "$(key_path)" ]; then
        echo "no Dify key: give it with --key-file FILE or DIFY_API_KEY, or run this on a" \
             "terminal to be asked (the service will not start without one)" >&2
        exit 2
    fi
}

install_key() {
    # $1: where the key goes; $2: its owner. A key already there stays unless one is given.
    local target=$1 owner=$2
    if [ -z "$key" ]; then
        return
    fi
    install -d -m 0700 -o "$owner" -g "$(id -gn "$owner")" "$(dirname "$target")"
    # Written through umask 077 and install -m: never readable by others, not for a moment.
    (umask 077 && printf '%s\n' "$key" > "$target.new")
    chown "$owner:$(id -gn "$owner")" "$target.new"
    chmod 0600 "$target.new"
    mv -f "$target.new" "$target"
    say "the key is in $target (0600, $owner)"
}

install_config() {
    local group=$1
    install -d -m 0755 "$root$ETC"
    install -m 0644 "$src/config/assistant.toml" "$root$ETC/assistant.toml.dist"
    if [ ! -e "$root$ETC/assistant.toml" ]; then
        install -m 0640 -o root -g "$group" "$src/config/assistant.toml" "$root$ETC/assistant.toml"
        say "config: $ETC/assistant.toml"
    else
        # Its content is the owner's; who may read it follows the service (a switch of mode).
        chown "root:$group" "$root$ETC/assistant.toml"
        chmod 0640 "$root$ETC/assistant.toml"
        say "config: $ETC/assistant.toml kept (the shipped defaults are in assistant.toml.dist)"
    fi
}

record_installation() {
    cat > "$root$ETC/installed-as" <<EOF
# Written by systemd/install.sh; read by systemd/uninstall.sh.
MODE=$1
SERVICE_USER=$service_user
DESKTOP_USER=$desktop_user
EOF
    chmod 0644 "$root$ETC/installed-as"
}

install_system_service() {
    create_service_user
    install_config "$service_user"
    install_key "$(key_path)" root
    chmod 0700 "$root$ETC/credentials"
    local units="$root/etc/systemd/system"
    install -d -m 0755 "$units/multi-user.target.wants"
    sed -e "s/^User=voice-assistant$/User=$service_user/" \
        -e "s/^Group=voice-assistant$/Group=$service_user/" \
        "$here/$UNIT" > "$units/$UNIT.new"
    chmod 0644 "$units/$UNIT.new"
    mv -f "$units/$UNIT.new" "$units/$UNIT"
    ln -sfn "/etc/systemd/system/$UNIT" "$units/multi-user.target.wants/$UNIT"
    record_installation system
    if systemd_running; then
        systemctl daemon-reload
        if [ "$start" = yes ]; then
            systemctl restart "$UNIT"
            say "started. Follow its log:   journalctl -u voice-assistant -f"
        else
            say "enabled; start it with:    systemctl start voice-assistant"
        fi
        say "its state:                 systemctl status voice-assistant"
    else
        say "installed under ${root:-/}; enabled for the next boot (nothing started here)"
        say "then follow its log with:  journalctl -u voice-assistant -f"
    fi
    say "check everything (stops the service for the devices):"
    say "  systemctl stop voice-assistant"
    say "  CREDENTIALS_DIRECTORY=$ETC/credentials voice-assistant doctor --config $ETC/assistant.toml"
}

install_desktop_service() {
    local home uid
    home=$(getent passwd "$desktop_user" | cut -d: -f6)
    uid=$(id -u "$desktop_user")
    install_config "$(id -gn "$desktop_user")"
    as_user() { runuser -u "$desktop_user" -- "$@"; }
    local config="$root$home/.config"
    install -d -m 0755 -o "$desktop_user" -g "$(id -gn "$desktop_user")" "$config"
    install_key "$(key_path)" "$desktop_user"
    local units="$config/systemd/user"
    install -d -o "$desktop_user" -g "$(id -gn "$desktop_user")" "$config/systemd" "$units" \
        "$units/default.target.wants"
    install -m 0644 -o "$desktop_user" -g "$(id -gn "$desktop_user")" \
        "$here/voice-assistant-user.service" "$units/$UNIT"
    ln -sfn "$home/.config/systemd/user/$UNIT" "$units/default.target.wants/$UNIT"
    chown -h "$desktop_user:$(id -gn "$desktop_user")" "$units/default.target.wants/$UNIT"
    record_installation desktop
    if systemd_running; then
        # Its services then start at boot, before (and without) a graphical login.
        loginctl enable-linger "$desktop_user"
        if [ "$start" = yes ] && [ -S "/run/user/$uid/systemd/private" ]; then
            as_user env XDG_RUNTIME_DIR="/run/user/$uid" systemctl --user daemon-reload
            as_user env XDG_RUNTIME_DIR="/run/user/$uid" systemctl --user restart "$UNIT"
            say "started in $desktop_user's session."
        else
            say "enabled in $desktop_user's session; it starts at the next boot or login"
        fi
    else
        say "installed under ${root:-/}; enabled for $desktop_user's next session"
    fi
    say "follow its log (as $desktop_user):  journalctl --user -u voice-assistant -f"
    say "check everything (as $desktop_user, the service stopped: systemctl --user stop voice-assistant):"
    say "  CREDENTIALS_DIRECTORY=~/.config/voice-assistant voice-assistant doctor --config $ETC/assistant.toml"
}

leave_other_mode() {
    # One mode at a time: switching between the system and the desktop service removes
    # the other one's unit (uninstall.sh knows how), keeping config, key and state.
    local previous
    previous=$(installed_as MODE)
    local now=system
    [ -n "$desktop_user" ] && now=desktop
    if [ -n "$previous" ] && [ "$previous" != "$now" ]; then
        say "switching from the $previous service to the $now one"
        "$here/uninstall.sh" ${root:+--root "$root"} --unit-only
    fi
}

if [ -n "$desktop_user" ] && ! getent passwd "$desktop_user" >/dev/null; then
    echo "no such user: $desktop_user" >&2
    exit 2
fi
key=$(read_key)
check_key
install_missing_packages "${RUNTIME_PACKAGES[@]}"
leave_other_mode
install_venv
if [ -n "$desktop_user" ]; then
    install_desktop_service
else
    install_system_service
fi
