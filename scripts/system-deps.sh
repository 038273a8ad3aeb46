#!/usr/bin/env bash
# Installs the Debian packages that the lab and the tests need, when missing.
# Runs as root on a fresh Debian machine (README quick start); elsewhere it
# only reports what is missing.
set -euo pipefail
need=()
have() { command -v "$1" >/dev/null 2>&1; }
have mosquitto || need+=(mosquitto)
have mosquitto_passwd || need+=(mosquitto-clients)
have tshark || need+=(tshark)
have ovs-vswitchd || need+=(openvswitch-switch)
have trafgen || need+=(netsniff-ng)
have iperf3 || need+=(iperf3)
have ping || need+=(iputils-ping)
# clang and libbpf-dev: the XDP program and the AF_XDP addon of --io afxdp (scripts/build.mjs), and bench/'s
have clang || need+=(clang)
# the answer-after-fsync test builds its LD_PRELOAD shim with cc (test/fsync.test.ts)
have cc || need+=(gcc libc6-dev)
[ -e /usr/include/bpf/bpf_helpers.h ] || need+=(libbpf-dev)
have ip || need+=(iproute2)
have openssl || need+=(openssl)
have tcpdump || need+=(tcpdump)
have ethtool || need+=(ethtool)
# firmware bundles (firmware/build.mjs): the arm64 addon's cross compiler and
# C library, the check of what it built, and qemu to run the arm64 bundle here
have aarch64-linux-gnu-gcc || need+=(gcc-aarch64-linux-gnu)
[ -d /usr/aarch64-linux-gnu/include ] || need+=(libc6-dev-arm64-cross)
have qemu-aarch64-static || need+=(qemu-user-static)
have file || need+=(file)
have tar || need+=(tar)
# `promtool check metrics` checks nvedge's /metrics (test/ops-cli.test.ts, test/ops-io.test.ts);
# systemd-analyze and systemd-notify (test/ops-units.test.ts), curl (test/ops-io.test.ts)
have promtool || need+=(prometheus)
have systemd-analyze || need+=(systemd)
have curl || need+=(curl)
# the encoder tests cross-check against Debian's scapy (the system python)
[ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import scapy' 2>/dev/null || need+=(python3-scapy)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "system-deps: missing ${need[*]}; run as root or: apt-get install ${need[*]}" >&2
  exit 0
fi
echo "system-deps: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# tshark asks whether non-root users may capture: answer no, non-interactively.
echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections 2>/dev/null || true
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
