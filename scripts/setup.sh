#!/usr/bin/env bash
# Prepares a fresh machine to build, run and test maas-rs: checks the Rust toolchain and, when
# run as root, installs the system packages that the tests and their real peers need.
# Safe to run again; it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the test suite needs. Later crates add their peers here (TFTP clients, IPMI
# and Redfish simulators, squid...).
PACKAGES=(
  g++ iproute2 procps curl
  # DHCP peers (tests/dhcp_peers.rs, benches/dhcp-vs-peers.sh): clients, Kea (perfdhcp is in
  # kea-admin), dnsmasq (the -base package ships no service to start), captures.
  isc-dhcp-client busybox dhcpcd-base kea-dhcp4-server kea-admin dnsmasq-base tcpdump iputils-ping
  # PXE firmware under QEMU: iPXE for BIOS, edk2 (OVMF) for UEFI.
  qemu-system-x86 ipxe-qemu ovmf
  # Discovery peers (tests/discovery_peers.rs): arping (requests, -U gratuitous, -D probes),
  # avahi-daemon and python-zeroconf (mDNS host names), python3 (tagged frames where the
  # kernel has no 802.1Q support).
  iputils-arping avahi-daemon avahi-utils python3 python3-zeroconf
  # BMC peers (tests/power_peers.rs, benches/power-status.sh): OpenIPMI's ipmi_sim, ipmitool,
  # a virtualenv for sushy-emulator (below), curl to read Redfish resources back.
  openipmi ipmitool python3-venv
  # Proxy peers (tests/proxy_peers.rs, benches/proxy-vs-squid.sh): curl and openssl (TLS origin)
  # as clients, apt-get against a local repository built with dpkg-dev and apt-utils, squid and
  # wrk for the side-by-side bench.
  openssl apt-utils dpkg-dev squid wrk
  # TFTP peers (tests/tftp_peers.rs, benches/tftp-vs-peers.sh): tftpd-hpa and the tftp-hpa,
  # atftp, curl and busybox clients (atftpd conflicts with tftpd-hpa: the bench script unpacks
  # it on its own), iPXE's EFI build as the UEFI boot file, python3 for raw-datagram probes.
  tftpd-hpa tftp-hpa atftp ipxe
  # nftables: random loss and reordering on a test link where the kernel has no netem.
  nftables
  # The ephemeral environment (scripts/build-ephemeral.sh, tests/ephemeral_peers.rs): GNU cpio
  # and zstd pack its initramfs (the kernel and busybox-static are fetched with apt-get
  # download, not installed); QEMU, dnsmasq and python3 above boot and serve it.
  cpio zstd
  # Network configuration peers (tests/netplan_peers.rs): netplan generate checks the rendered
  # version-2 documents and writes systemd-networkd files from them; cloud-init parses both
  # forms. Installed without recommends and under policy-rc.d, so nothing runs: cloud-init only
  # acts at boot through its systemd units, and netplan only when asked to apply.
  netplan.io cloud-init
)

need=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if ((${#need[@]})); then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "setup: installing ${need[*]}"
    # Keep daemons from starting at install time; tests start the peers they need themselves.
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
      printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
      chmod +x /usr/sbin/policy-rc.d
    fi
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  else
    echo "setup: missing packages ${need[*]}; install them (as root: apt-get install ${need[*]})" >&2
    exit 1
  fi
fi

# --- pip: sushy-emulator (Redfish BMC emulator) in its own virtualenv -------------------------
# tests/support/power.rs looks for it in $MAAS_PEERS_VENV (default /opt/maas-rs-peers).
PEERS_VENV="${MAAS_PEERS_VENV:-/opt/maas-rs-peers}"
if [[ ! -x "$PEERS_VENV/bin/sushy-emulator" ]]; then
  if [[ $(id -u) -eq 0 ]] || [[ -w "$(dirname "$PEERS_VENV")" ]]; then
    echo "setup: installing sushy-tools in $PEERS_VENV"
    python3 -m venv "$PEERS_VENV"
    "$PEERS_VENV/bin/pip" install -q sushy-tools
  else
    echo "setup: sushy-emulator missing; run as root to install it in $PEERS_VENV" >&2
  fi
fi
# --- end pip ----------------------------------------------------------------------------------

command -v cargo >/dev/null || { echo "setup: cargo not found; install Rust from https://rustup.rs" >&2; exit 1; }
for tool in rustfmt clippy-driver; do
  command -v "$tool" >/dev/null || { echo "setup: $tool not found; run: rustup component add rustfmt clippy" >&2; exit 1; }
done
echo "setup: ready ($(rustc --version))"
