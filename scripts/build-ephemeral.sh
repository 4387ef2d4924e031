#!/usr/bin/env bash
# Builds the maas-rs ephemeral environment for amd64: the Debian kernel and an initramfs that
# holds busybox, the NIC and disk drivers, and the commissioning agent (scripts/ephemeral/).
#
# Usage: scripts/build-ephemeral.sh [--cache DIR] [--force] OUT_DIR
#
# Writes OUT_DIR/vmlinuz, OUT_DIR/initrd.img and OUT_DIR/manifest.json:
#   {"name": "ephemeral", "arch": "amd64", "release": "bookworm",
#    "kernel": {"file": "vmlinuz", "sha256": "...", "size": N},
#    "initrd": {"file": "initrd.img", "sha256": "...", "size": N},
#    "kernel_version": "6.1.0-...-amd64"}
# Boot it with: console=ttyS0 maas_url=http://HOST:PORT/metadata/v1/ maas_token=TOKEN
# maas_action=commission|poweroff (the agent's header documents the protocol).
#
# Everything comes from Debian packages of this machine's release (Debian 12 here) through its
# configured apt sources: linux-image-amd64's kernel package and busybox-static, fetched with
# `apt-get download` into the cache (default /var/cache/maas-rs/ephemeral, or $HOME/.cache/...
# when that is not writable; --cache or MAAS_EPHEMERAL_CACHE overrides) and unpacked with
# dpkg-deb. Root is not needed: no chroot, no device nodes (the kernel's built-in initramfs
# provides /dev/console), file owners set to root by cpio. Only the host tools apt-get,
# dpkg-deb, cpio (GNU), zstd and coreutils are used; when the package lists are missing,
# `apt-get update` needs root (the script runs it itself when it is root).
#
# Why a hand-made initramfs rather than initramfs-tools or an mmdebstrap root image: the agent
# needs a shell, wget, udhcpc and the drivers, nothing else. busybox-static has all three tools
# in one 2 MB binary; the initramfs is a few MB, is built in seconds without root, is
# byte-for-byte reproducible (sorted cpio, fixed timestamps, root owners), and boots to the
# agent in seconds under TCG, where an mmdebstrap root with systemd is ~800 MB and boots for
# a minute. initramfs-tools would pull in the host's own configuration and hooks.
#
# Drivers: the virtio, e1000/e1000e, AHCI/ATA, SCSI disk and NVMe modules that QEMU and common
# machines need, plus common server NICs and storage controllers (MAAS_EPHEMERAL_MODULES adds
# more), each with its modules.dep dependencies; the init loads only those the hardware asks for
# (by modalias). Firmware from non-free packages is not included (some NICs, e.g. bnx2, need it).
#
# Reruns are fast: packages are reused from the cache when their SHA-256 matches the apt index,
# and OUT_DIR is left alone when its inputs have not changed (--force rebuilds).
#
# Exit status: 0 built or up to date, 1 the build failed, 2 usage, 3 something this machine
# lacks (a host tool, the package lists, the registry): tests skip on 3.
set -euo pipefail

usage() {
  sed -n 's/^# Usage: /usage: /p' "$0" >&2
  exit 2
}

repo=$(cd "$(dirname "$0")/.." && pwd)
agent_dir=$repo/scripts/ephemeral
cache=${MAAS_EPHEMERAL_CACHE:-}
force=
out=
while (($#)); do
  case "$1" in
    --cache) (($# >= 2)) || usage; cache=$2; shift 2 ;;
    --cache=*) cache=${1#--cache=}; shift ;;
    --force) force=1; shift ;;
    -h | --help) usage ;;
    -*) echo "build-ephemeral: unknown option $1" >&2; usage ;;
    *) [[ -z $out ]] || usage; out=$1; shift ;;
  esac
done
[[ -n $out ]] || usage
# One build at a time into OUT_DIR: a second caller waits (bounded), then finds it up to date.
mkdir -p "$(dirname "$out")"
exec 9>"$out.lock"
flock -w 1800 9 || { echo "$(basename "$0"): $out is being built by another process" >&2; exit 1; }

die() {
  echo "build-ephemeral: $*" >&2
  exit 1
}
# What this machine lacks rather than what went wrong.
lacking() {
  echo "build-ephemeral: $*" >&2
  exit 3
}
say() { echo "build-ephemeral: $*"; }

start=$(date +%s)
arch=amd64
[[ $(dpkg --print-architecture 2>/dev/null) == "$arch" ]] ||
  lacking "this machine's Debian architecture is $(dpkg --print-architecture 2>/dev/null || echo unknown); only $arch is built, on an $arch host"
release=$(sed -n 's/^VERSION_CODENAME=//p' /etc/os-release 2>/dev/null | tr -d '"')
[[ -n $release ]] || lacking "cannot tell the Debian release from /etc/os-release"

# --- host tools ----------------------------------------------------------------------------------
missing=()
for tool in apt-get apt-cache dpkg-deb cpio zstd sha256sum timeout find sort awk; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
((${#missing[@]} == 0)) || lacking "missing tools: ${missing[*]} (Debian packages: apt dpkg cpio zstd coreutils findutils; run scripts/setup.sh as root)"
cpio --version 2>/dev/null | grep -q 'GNU cpio' || lacking "cpio is not GNU cpio (Debian package cpio)"

# --- cache ---------------------------------------------------------------------------------------
if [[ -z $cache ]]; then
  cache=/var/cache/maas-rs/ephemeral
  if ! mkdir -p "$cache" 2>/dev/null || [[ ! -w $cache ]]; then
    cache=${XDG_CACHE_HOME:-$HOME/.cache}/maas-rs/ephemeral
    say "/var/cache/maas-rs/ephemeral is not writable; caching packages in $cache"
  fi
fi
mkdir -p "$cache" || lacking "cannot create the cache directory $cache"
[[ -w $cache ]] || lacking "the cache directory $cache is not writable (use --cache DIR)"
cache=$(cd "$cache" && pwd)

work=$(mktemp -d "${TMPDIR:-/tmp}/build-ephemeral.XXXXXX")
cleanup() { rm -rf "$work"; }
trap cleanup EXIT

apt_opts=(-q)
# As root apt drops to the _apt user for downloads, which cannot write a private cache.
[[ $(id -u) -eq 0 ]] && apt_opts+=(-o APT::Sandbox::User=root)

# The kernel package linux-image-amd64 depends on (linux-image-6.1.0-N-amd64), or the override.
kernel_package() {
  apt-cache depends linux-image-amd64 2>/dev/null |
    awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ { print $2; exit }'
}
kernel_pkg=${MAAS_EPHEMERAL_KERNEL_PACKAGE:-$(kernel_package)}
if [[ -z $kernel_pkg ]]; then
  if [[ $(id -u) -eq 0 ]]; then
    say "linux-image-amd64 is not in the package lists: running apt-get update"
    timeout 300 apt-get update -qq || lacking "apt-get update failed"
    kernel_pkg=$(kernel_package)
  fi
  [[ -n $kernel_pkg ]] || lacking "linux-image-amd64 is not in the apt package lists (run apt-get update as root)"
fi

# Puts PACKAGE's .deb (the candidate version) in the cache unless it is there with the right
# SHA-256, and prints its path.
fetch_deb() {
  local pkg=$1 line file sha dir
  dir=$(mktemp -d "$work/uris.XXXXXX")
  # --print-uris prints nothing for a file already in the current directory: ask from an empty one.
  line=$(cd "$dir" && apt-get "${apt_opts[@]}" download --print-uris "$pkg" 2>/dev/null | head -n 1) ||
    true
  [[ -n $line ]] || lacking "apt has no candidate for $pkg (run apt-get update as root)"
  read -r _ file _ sha <<<"$line"
  sha=${sha#SHA256:}
  [[ $file == *.deb && ${#sha} -eq 64 ]] || die "unexpected answer from apt-get --print-uris for $pkg: $line"
  if [[ -f $cache/$file ]] && echo "$sha  $cache/$file" | sha256sum --quiet -c - 2>/dev/null; then
    say "$pkg: cached $file" >&2
  else
    say "$pkg: downloading $file" >&2
    rm -f "$cache/$file"
    (cd "$cache" && timeout 900 apt-get "${apt_opts[@]}" download "$pkg" >&2) ||
      lacking "apt-get download $pkg failed (is the Debian mirror reachable?)"
    echo "$sha  $cache/$file" | sha256sum --quiet -c - ||
      die "$cache/$file does not match the SHA-256 of the apt index"
  fi
  echo "$cache/$file"
}

kernel_deb=$(fetch_deb "$kernel_pkg")
busybox_deb=$(fetch_deb busybox-static)

# Drivers. CORE must exist in the kernel package; HARDWARE is best effort.
CORE_MODULES=(
  virtio_pci virtio_net virtio_blk virtio_scsi # QEMU/KVM
  e1000 e1000e                                 # QEMU's default NICs, Intel desktops
  ahci ata_piix sd_mod nvme                    # SATA (q35's AHCI, pc's PIIX), SCSI disks, NVMe
  ext4 crc32c_generic                          # deployment: the image's root file system
)
HARDWARE_MODULES=(
  igb igc ixgbe i40e ice tg3 bnx2 bnxt_en r8169 mlx4_en mlx5_core be2net ena vmxnet3 # NICs
  megaraid_sas mpt3sas hpsa smartpqi vmw_pvscsi                                        # storage
)
read -r -a extra_modules <<<"${MAAS_EPHEMERAL_MODULES:-}"

# --- up to date? ---------------------------------------------------------------------------------
key=$(
  {
    sha256sum "$kernel_deb" "$busybox_deb" "$0" "$agent_dir"/init "$agent_dir"/maas-agent \
      "$agent_dir"/udhcpc.script | awk '{ print $1 }'
    echo "${CORE_MODULES[*]} ${HARDWARE_MODULES[*]} ${extra_modules[*]}"
  } | sha256sum | awk '{ print $1 }'
)
if [[ -z $force && -f $out/.build-key && $(cat "$out/.build-key") == "$key" ]] &&
  [[ -f $out/vmlinuz && -f $out/initrd.img && -f $out/manifest.json ]]; then
  say "$out is up to date ($(($(date +%s) - start)) s)"
  exit 0
fi

# --- unpack --------------------------------------------------------------------------------------
say "unpacking $(basename "$kernel_deb") and $(basename "$busybox_deb")"
timeout 300 dpkg-deb -x "$kernel_deb" "$work/kernel" || die "cannot unpack $kernel_deb"
timeout 60 dpkg-deb -x "$busybox_deb" "$work/busybox" || die "cannot unpack $busybox_deb"
busybox=$work/busybox/bin/busybox
[[ -x $busybox ]] || die "no bin/busybox in $busybox_deb"
versions=("$work"/kernel/lib/modules/*)
if ((${#versions[@]} != 1)) || [[ ! -d ${versions[0]} ]]; then
  die "expected one module tree in $kernel_deb, found: ${versions[*]##*/}"
fi
kver=${versions[0]##*/}
vmlinuz=$work/kernel/boot/vmlinuz-$kver
[[ -f $vmlinuz ]] || die "no boot/vmlinuz-$kver in $kernel_deb"
# Debian generates modules.dep at install time; busybox's depmod does it here.
timeout 120 "$busybox" depmod -b "$work/kernel" "$kver" || die "depmod over $kernel_pkg failed"

# The files of the modules named in $@ and of their dependencies, one per line (relative to
# lib/modules/KVER); the names not found go to $work/missing.
module_files() {
  awk -v want="$*" -v missing="$work/missing" '
    BEGIN { n = split(want, w, " "); for (i = 1; i <= n; i++) { m = w[i]; gsub("-", "_", m); wanted[m] = 1 } }
    {
      file = $1; sub(":$", "", file)
      name = file; sub(".*/", "", name); sub("[.]ko([.][a-z]+)?$", "", name); gsub("-", "_", name)
      if (name in wanted) { found[name] = 1; print file; for (i = 2; i <= NF; i++) print $i }
    }
    END { printf "" > missing; for (m in wanted) if (!(m in found)) print m > missing }
  ' "$work/kernel/lib/modules/$kver/modules.dep" | sort -u
}

# --- the root file system ------------------------------------------------------------------------
root=$work/root
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc/ephemeral,proc,sys,dev,run,tmp,root,lib/modules/"$kver"}
chmod 1777 "$root/tmp"
chmod 0700 "$root/root"
install -m 0755 "$busybox" "$root/bin/busybox"
while read -r applet; do
  [[ -e $root/$applet ]] || ln -s /bin/busybox "$root/$applet"
done < <("$busybox" --list-full)
install -m 0755 "$agent_dir/init" "$root/init"
install -m 0755 "$agent_dir/maas-agent" "$root/usr/sbin/maas-agent"
install -m 0755 "$agent_dir/udhcpc.script" "$root/etc/ephemeral/udhcpc.script"
printf '127.0.0.1\tlocalhost\n::1\tlocalhost\n' >"$root/etc/hosts"
: >"$root/etc/resolv.conf"
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$root/etc/passwd"
printf 'root:x:0:\n' >"$root/etc/group"

module_files "${CORE_MODULES[@]}" >"$work/core.list"
[[ ! -s $work/missing ]] || die "$kernel_pkg lacks the modules: $(tr '\n' ' ' <"$work/missing")"
module_files "${HARDWARE_MODULES[@]}" "${extra_modules[@]}" >"$work/hardware.list"
[[ ! -s $work/missing ]] || say "warning: $kernel_pkg lacks the modules: $(tr '\n' ' ' <"$work/missing")"
mods=$work/kernel/lib/modules/$kver
sort -u "$work/core.list" "$work/hardware.list" | while read -r file; do
  install -D -m 0644 "$mods/$file" "$root/lib/modules/$kver/$file"
done
cp "$mods/modules.builtin" "$mods/modules.order" "$root/lib/modules/$kver/"
timeout 60 "$busybox" depmod -b "$root" "$kver" || die "depmod over the initramfs modules failed"
# The NIC drivers, for the init's fallback when coldplug finds no interface.
sort -u "$work/core.list" "$work/hardware.list" | awk -F/ '/^kernel\/drivers\/net\// {
  name = $NF; sub("[.]ko([.][a-z]+)?$", "", name); print name }' >"$root/etc/ephemeral/nic-modules"

# --- pack ----------------------------------------------------------------------------------------
# Reproducible: every timestamp is the kernel's, entries sorted, owned by root.
epoch=$(stat -c %Y "$vmlinuz")
find "$root" -exec touch -h -d "@$epoch" {} +
mkdir -p "$out"
(cd "$root" && find . -mindepth 1 | LC_ALL=C sort |
  cpio --quiet -o -H newc -R 0:0 --reproducible) >"$work/initrd.cpio" || die "cpio failed"
# zstd -12: within 12 % of -19 in size, ten times faster to build; the kernel unpacks it.
timeout 600 zstd -q -12 -T0 -f "$work/initrd.cpio" -o "$work/initrd.img" || die "zstd failed"
cp "$vmlinuz" "$work/vmlinuz"

entry() {
  printf '{"file": "%s", "sha256": "%s", "size": %s}' "$1" \
    "$(sha256sum "$work/$1" | awk '{ print $1 }')" "$(stat -c %s "$work/$1")"
}
printf '{"name": "ephemeral", "arch": "%s", "release": "%s", "kernel": %s, "initrd": %s, "kernel_version": "%s"}\n' \
  "$arch" "$release" "$(entry vmlinuz)" "$(entry initrd.img)" "$kver" >"$work/manifest.json"

# Replace the outputs only once all three are ready; the manifest last, the key after it.
rm -f "$out/.build-key"
for file in vmlinuz initrd.img manifest.json; do
  cp "$work/$file" "$out/.$file.new"
  mv -f "$out/.$file.new" "$out/$file"
done
echo "$key" >"$out/.build-key"

say "kernel $kver ($(stat -c %s "$out/vmlinuz") bytes), initramfs $(stat -c %s "$out/initrd.img") bytes" \
  "($(stat -c %s "$work/initrd.cpio") uncompressed, $(wc -l <"$root/etc/ephemeral/nic-modules") NIC drivers," \
  "$(find "$root/lib/modules" -name '*.ko*' | wc -l) modules)"
say "wrote $out/manifest.json in $(($(date +%s) - start)) s"
