#!/usr/bin/env bash
# Install the Debian packages Dockcast needs, when they are missing.
#   scripts/system-deps.sh build   the C compiler and Python headers the Cython build needs
#   scripts/system-deps.sh         those, and what the test suite drives (browser, redis, GStreamer)
#   scripts/system-deps.sh bench   the build's, and the baselines `make bench` measures: Janus,
#                                  and node, npm and the libraries of the mediasoup worker
#                                  (../shared/baselines/mediasoup); the suite needs neither
# PYTHON names the interpreter the extensions are built for (default: python3).
set -euo pipefail
python=${PYTHON:-python3}
need=()
command -v cc >/dev/null 2>&1 || need+=(gcc libc6-dev)
# Python.h for the interpreter we build for: Debian's python3 needs python3-dev; a
# self-built or pyenv interpreter ships its own headers.
if ! "$python" -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' 2>/dev/null; then
  need+=(python3-dev)
fi
mode=${1:-all}
if [ "$mode" = bench ]; then
  command -v janus >/dev/null 2>&1 || need+=(janus)
  command -v node >/dev/null 2>&1 || need+=(nodejs)
  # Debian ships npm apart from nodejs (NodeSource's nodejs has it inside)
  command -v npm >/dev/null 2>&1 || need+=(npm)
  for lib in libuv1 libssl3 libabsl20220623; do
    dpkg-query -W -f='${Status}' "$lib" 2>/dev/null | grep -q "ok installed" || need+=("$lib")
  done
elif [ "$mode" != build ]; then
  command -v chromium >/dev/null 2>&1 || need+=(chromium)
  command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
  # the JS client's unit tests run under Node (node --test)
  command -v node >/dev/null 2>&1 || need+=(nodejs)
  # janus-pp-rec: an independent reader of the recorder's MJR segments
  command -v janus-pp-rec >/dev/null 2>&1 || need+=(janus-tools)
  # the browser test that cuts a page's network (loopback UDP dropped for ten seconds)
  command -v nft >/dev/null 2>&1 || need+=(nftables)
  # espeak-ng: the assistant's captions tests speak English and Mandarin (pinyin) to Whisper
  command -v espeak-ng >/dev/null 2>&1 || need+=(espeak-ng)
  # openssl ts: the local RFC 3161 time-stamping authority of the audit tests
  command -v openssl >/dev/null 2>&1 || need+=(openssl)
  command -v gst-launch-1.0 >/dev/null 2>&1 || need+=(gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-nice)
  # tests/e2e/gst_peer.py drives webrtcbin from Debian's own python3 (the venv cannot
  # import python3-gi): GObject introspection for Gst, GstSdp, GstWebRTC and libnice
  /usr/bin/python3 -c 'import gi
for name, version in (("Gst", "1.0"), ("GstSdp", "1.0"), ("GstWebRTC", "1.0"), ("Nice", "0.1")):
    gi.require_version(name, version)' >/dev/null 2>&1 \
    || need+=(python3-gi gir1.2-gstreamer-1.0 gir1.2-gst-plugins-base-1.0 gir1.2-gst-plugins-bad-1.0 gir1.2-nice-0.1)
  fc-list >/dev/null 2>&1 || need+=(fontconfig)
  # a Chinese face: the console's zh interface (and its screenshots) need one
  fc-list :lang=zh 2>/dev/null | grep -q . || need+=(fonts-wqy-microhei)
fi
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" != 0 ]; then
  echo "missing Debian packages: ${need[*]} (run as root, or install them)" >&2
  exit 1
fi
echo "installing Debian packages: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
