#!/usr/bin/env bash
# Build PortAudio with the fix in alsa-error-paths.patch into a prefix (default:
# .venv/portaudio); hardware/__init__.py loads it from there instead of the
# system's copy. Needs gcc, make, patch and libasound2-dev. Skips the build when
# the prefix already holds this version with this patch.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
prefix=$(realpath -m "${1:-$here/../../.venv/portaudio}")

VERSION=19.7.0
URL="https://deb.debian.org/debian/pool/main/p/portaudio19/portaudio19_${VERSION}.orig.tar.gz"
SHA256=5af29ba58bbdbb7bbcefaaecc77ec8fc413f0db6f4c4e286c40c3e1b83174fa0

want="$VERSION $(sha256sum "$here/alsa-error-paths.patch" | cut -d' ' -f1)"
if [ -f "$prefix/.built" ] && [ "$(cat "$prefix/.built")" = "$want" ] \
        && [ -f "$prefix/lib/libportaudio.so.2" ]; then
    exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "building PortAudio $VERSION with the ALSA error-path fix into $prefix"
python3 - "$URL" "$SHA256" "$work/portaudio.tar.gz" <<'PY'
import hashlib, sys, urllib.request
url, expected, target = sys.argv[1:]
with urllib.request.urlopen(url, timeout=60) as response:
    body = response.read()
got = hashlib.sha256(body).hexdigest()
if got != expected:
    sys.exit(f"{url}: sha256 {got}, expected {expected}")
open(target, "wb").write(body)
PY
mkdir "$work/portaudio"
tar -xzf "$work/portaudio.tar.gz" -C "$work/portaudio" --strip-components=1
cd "$work/portaudio"
patch -s -p1 < "$here/alsa-error-paths.patch"
# ALSA only: PulseAudio and PipeWire are reached through ALSA's plugins, and
# without JACK no libjack client is loaded at start (1.8 MB resident).
if ! { ./configure --prefix="$prefix" --without-jack --without-oss --without-asihpi \
            --disable-static \
        && make -j"$(nproc)" && rm -rf "$prefix" && make install; } > "$work/build.log" 2>&1; then
    tail -n 30 "$work/build.log" >&2
    echo "PortAudio build failed" >&2
    exit 1
fi
echo "$want" > "$prefix/.built"
