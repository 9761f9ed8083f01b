#!/usr/bin/env bash
# One command per job, each doing its own set-up first:
#   ./manage.sh demo   install what is missing, then run the assistant against the bundled dev server
#   ./manage.sh test   install what is missing, then run the whole test suite
#   ./manage.sh run …  install what is missing, then `voice-assistant run …`
# Works as root or as a user with sudo, on Debian 12 / Raspberry Pi OS (bookworm) and newer.
set -euo pipefail
cd "$(dirname "$0")"

APT_PACKAGES=(python3 python3-venv python3-dev gcc make patch ca-certificates portaudio19-dev libasound2-dev
              pulseaudio pulseaudio-utils libasound2-plugins espeak-ng)

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

install_system_packages() {
    local missing=()
    for pkg in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
            || missing+=("$pkg")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        echo "installing system packages: ${missing[*]}"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

install_python_packages() {
    local extras="$1" stamp=".venv/.installed-$1"
    if [ ! -x .venv/bin/python ]; then
        python3 -m venv .venv
    fi
    # Reinstall only when the dependency list changed since the last install.
    local want; want=$(sha256sum pyproject.toml | cut -d' ' -f1)
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
        .venv/bin/python -m pip install -q --upgrade pip
        .venv/bin/python -m pip install -q -e ".${extras:+[$extras]}"
        echo "$want" > "$stamp"
    fi
}

install_portaudio() {
    # Debian's PortAudio can hang for good when a device goes away mid-stream;
    # the assistant loads this fixed build instead (hardware/portaudio_library.py).
    # Without it everything still runs, on the system's copy.
    hardware/portaudio/build.sh .venv/portaudio \
        || echo "warning: PortAudio build failed; using the system's PortAudio" >&2
}

command="${1:-demo}"
shift || true
case "$command" in
    demo)
        install_system_packages
        install_python_packages ""
        install_portaudio
        exec .venv/bin/voice-assistant demo "$@"
        ;;
    run)
        install_system_packages
        install_python_packages ""
        install_portaudio
        exec .venv/bin/voice-assistant run "$@"
        ;;
    test)
        install_system_packages
        install_python_packages dev
        install_portaudio
        exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
        ;;
    *)
        echo "usage: $0 demo | test [pytest args] | run [voice-assistant run args]" >&2
        exit 2
        ;;
esac
