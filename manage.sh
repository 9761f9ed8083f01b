#!/usr/bin/env bash
# One command per job, each doing its own set-up first:
#   ./manage.sh demo   install what is missing, then run the assistant against the bundled dev server
#   ./manage.sh test   install what is missing, then run the whole test suite
#   ./manage.sh run …  install what is missing, then `voice-assistant run …`
# Works as root or as a user with sudo, on Debian 12 / Raspberry Pi OS (bookworm) and newer.
set -euo pipefail
cd "$(dirname "$0")"
# RUNTIME_PACKAGES (what the assistant needs to run: no sound server), install_missing_packages.
# shellcheck source=systemd/common.sh
. systemd/common.sh

# What the tests add: private PulseAudio and PipeWire servers with null sinks (reached through
# ALSA's pulse plugin), a D-Bus session bus for WirePlumber, systemd-analyze for the units,
# setpriv/runuser and useradd for the installer's test, and the browser the kiosk page is
# tested in (Playwright drives it; it never downloads one).
TEST_PACKAGES=(pulseaudio pulseaudio-utils libasound2-plugins pipewire pipewire-pulse wireplumber
               dbus-daemon systemd util-linux passwd chromium)

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

fill_wheelhouse() {
    # The installer's test installs the package into a scratch venv with PIP_NO_INDEX from
    # these wheels (the dependencies, setuptools to build it): the tests download nothing.
    local stamp=.venv/wheelhouse/.filled
    local want; want=$(sha256sum pyproject.toml | cut -d' ' -f1)
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
        local work; work=$(mktemp -d)
        # From a copy: pip's in-tree build would leave build/ and egg-info in the checkout.
        tar --exclude=./.venv --exclude=./.git --exclude=./build -cf - . | tar -C "$work" -xf -
        .venv/bin/python -m pip wheel -q -w .venv/wheelhouse "$work" "setuptools>=77"
        rm -rf "$work"
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
        install_missing_packages "${RUNTIME_PACKAGES[@]}"
        install_python_packages ""
        install_portaudio
        exec .venv/bin/voice-assistant demo "$@"
        ;;
    run)
        install_missing_packages "${RUNTIME_PACKAGES[@]}"
        install_python_packages ""
        install_portaudio
        exec .venv/bin/voice-assistant run "$@"
        ;;
    test)
        install_missing_packages "${RUNTIME_PACKAGES[@]}" "${TEST_PACKAGES[@]}"
        install_python_packages dev
        install_portaudio
        fill_wheelhouse
        exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
        ;;
    *)
        echo "usage: $0 demo | test [pytest args] | run [voice-assistant run args]" >&2
        exit 2
        ;;
esac
