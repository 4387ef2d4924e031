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
  # DHCP peers (tests/dhcp_peers.rs, benches/dhcp-vs-peers.sh, dhcp6-vs-kea.sh): clients, Kea (perfdhcp is in
  # kea-admin), dnsmasq (the -base package ships no service to start), captures.
  isc-dhcp-client busybox dhcpcd-base kea-dhcp4-server kea-dhcp6-server kea-admin dnsmasq-base
  tcpdump iputils-ping
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
  # Debian's archive keys (already there on Debian; a package on Ubuntu): apt checks Debian 13's
  # release file with them when setup fetches its cloud-init for the schema check (below).
  debian-archive-keyring
  # The deploy image (scripts/build-deploy-image.sh, tests/deploy_image_peers.rs): mmdebstrap
  # makes the Debian tree; mkfs.ext4 -d (e2fsprogs), mkfs.vfat (dosfstools) and mtools fill the
  # file systems as files, sfdisk (fdisk) partitions the image, syslinux's mtools installer and
  # syslinux-common's mbr.bin make it boot under BIOS, without loop devices or mounts; debugfs
  # (e2fsprogs) writes the test's cloud-init files into it as the deploying agent does.
  mmdebstrap e2fsprogs dosfstools mtools syslinux syslinux-common fdisk
  # maas-ipam's PostgreSQL store (maas-ipam/tests/integration/store): each test run starts
  # its own server with initdb and pg_ctl in a temporary directory, as an unprivileged user,
  # on a Unix socket only (policy-rc.d keeps the packaged cluster from starting).
  postgresql
  # DNS peers (examples/controller/tests/peers/dns.rs, benches/dns-vs-bind.sh): dig (forward,
  # reverse, AXFR, TCP fallback), BIND 9 as the reference server and dnsperf as the load.
  bind9-dnsutils bind9 dnsperf
  # The web dashboard's browser tests (examples/controller/tests/peers/web.rs): headless
  # Chromium driven through its WebDriver server.
  chromium chromium-driver
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

# --- cloud-init's network-config schema (tests/netplan_peers.rs) ------------------------------
# Debian 12's cloud-init has no schema for network-config; Debian 13's has one for both
# versions. Its package (architecture "all", pure Python) is fetched from the Debian archive,
# checked against the signed release file by apt, and unpacked (not installed) under
# $MAAS_CLOUD_INIT_SCHEMA_ROOT; the test runs its schema check with Debian 12's Python
# libraries, which the installed cloud-init brought in.
CI_SCHEMA_ROOT="${MAAS_CLOUD_INIT_SCHEMA_ROOT:-/var/cache/maas-rs/cloud-init-schema}"
if [[ ! -d "$CI_SCHEMA_ROOT/usr/lib/python3/dist-packages/cloudinit/config/schemas" ]]; then
  if [[ $(id -u) -eq 0 ]] || [[ -w "$(dirname "$CI_SCHEMA_ROOT")" ]]; then
    echo "setup: unpacking Debian 13's cloud-init (network-config schema) in $CI_SCHEMA_ROOT"
    # apt with a private list directory and a trixie-only source: it checks the release
    # signature and every hash; the host's apt configuration is untouched.
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
    mkdir -p "$work/lists/partial" "$work/cache/archives/partial"
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] ${MAAS_DEBIAN_MIRROR:-http://deb.debian.org/debian} trixie main" >"$work/sources.list"
    apt_private=(-qq -o Dir::Etc::SourceList="$work/sources.list" -o Dir::Etc::SourceParts=/dev/null
      -o Dir::State::Lists="$work/lists" -o Dir::Cache="$work/cache" -o Acquire::Languages=none
      -o APT::Sandbox::User=root)
    if timeout 600 apt-get "${apt_private[@]}" update &&
      (cd "$work" && timeout 600 apt-get "${apt_private[@]}" download cloud-init); then
      rm -rf "$CI_SCHEMA_ROOT.new"
      mkdir -p "$CI_SCHEMA_ROOT.new"
      dpkg-deb -x "$work"/cloud-init_*_all.deb "$CI_SCHEMA_ROOT.new"
      rm -rf "$CI_SCHEMA_ROOT"
      mv "$CI_SCHEMA_ROOT.new" "$CI_SCHEMA_ROOT"
    else
      # Not fatal: only the schema check needs it (it fails under CI, is skipped elsewhere).
      echo "setup: could not fetch Debian 13's cloud-init; the network-config schema check will not run" >&2
    fi
    rm -rf "$work"
    trap - EXIT
  else
    echo "setup: cloud-init schema missing; run as root to unpack it in $CI_SCHEMA_ROOT" >&2
  fi
fi
# --- end cloud-init schema --------------------------------------------------------------------

command -v cargo >/dev/null || { echo "setup: cargo not found; install Rust from https://rustup.rs" >&2; exit 1; }
for tool in rustfmt clippy-driver; do
  command -v "$tool" >/dev/null || { echo "setup: $tool not found; run: rustup component add rustfmt clippy" >&2; exit 1; }
done
echo "setup: ready ($(rustc --version))"
