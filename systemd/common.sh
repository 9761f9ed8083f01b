# Shared by manage.sh, systemd/install.sh and systemd/uninstall.sh (sourced, not run).

# Where the installed assistant lives.
OPT=/opt/voice-assistant
ETC=/etc/voice-assistant
UNIT=voice-assistant.service

# What the assistant needs to build and run: no sound server. A desktop brings its own
# (PipeWire on Raspberry Pi OS), and installing PulseAudio there would fight it; Pi OS Lite
# has none and the assistant talks to ALSA directly.
RUNTIME_PACKAGES=(python3 python3-venv python3-dev gcc make patch ca-certificates portaudio19-dev
                  libasound2-dev espeak-ng)

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

install_missing_packages() {
    # apt-get install only what is not installed yet (nothing to fetch on later runs).
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
            || missing+=("$pkg")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        echo "installing system packages: ${missing[*]}"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

require_root() {
    if [ "$(id -u)" -ne 0 ]; then
        echo "run it as root (sudo $0 ...): it manages a system user, /opt and /etc" >&2
        exit 2
    fi
}

# Whether to talk to systemd: not when working on another root ($root), nor without it.
systemd_running() { [ -z "${root:-}" ] && [ -d /run/systemd/system ]; }

# What install.sh recorded: MODE (system or desktop), SERVICE_USER, DESKTOP_USER.
installed_as() { sed -n "s/^$1=//p" "${root:-}$ETC/installed-as" 2>/dev/null || true; }
