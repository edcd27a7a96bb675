#!/bin/sh
# Installs the Debian 12 packages kaprobe builds and tests with, when missing.
set -eu
PKGS="build-essential pkg-config libpcap-dev libnet1-dev libev-dev libinih-dev libcmocka-dev
libjansson-dev libmnl-dev libnftnl-dev libnftables-dev
nftables iproute2 python3 procps libsystemd-dev libcap-dev mandoc man-db logrotate prometheus
strace systemd systemd-container clang libclang-rt-dev tcpdump conntrack"
missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
	echo "missing packages:$missing (run as root, or: apt-get install$missing)" >&2
	exit 1
fi
echo "installing:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends $missing >/dev/null
