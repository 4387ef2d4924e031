#!/usr/bin/env bash
# Builds the OS image that maas-rs writes to a machine's disk when it deploys it: Debian 12
# (bookworm) for amd64 as a raw disk image, booted by BIOS (SeaBIOS and real PCs) and by UEFI.
#
# Usage: scripts/build-deploy-image.sh [--cache DIR] [--force] OUT_DIR
#
# Writes OUT_DIR/disk.img.gz (gzip: the ephemeral environment's busybox has gunzip, not zstd)
# and OUT_DIR/manifest.json:
#   {"name": "debian/bookworm", "arch": "amd64", "format": "raw.gz",
#    "image": {"file": "disk.img.gz", "sha256": "<of the .gz>", "size": N},
#    "raw_size": BYTES, "root_partition": 2, "root_label": "maas-root",
#    "root_uuid": "...", "firmware": ["bios", "uefi"], "kernel_version": "6.1.0-...-cloud-amd64"}
#
# The disk (MBR partition table):
#   1  FAT, type 0xEF, active, 1 MiB..: the kernel and initramfs, syslinux (BIOS: Debian's
#      mbr.bin in the first 440 bytes boots the active partition, whose boot sector loads
#      syslinux) and systemd-boot as EFI/BOOT/BOOTX64.EFI (UEFI firmware finds it on an MBR
#      disk too). The running system mounts it on /boot, so a kernel upgrade lands on it, and
#      /etc/kernel/postinst.d/zz-maas-rs-boot points both loaders at the newest kernel.
#   2  ext4 labelled maas-root, the last partition: the root file system. cloud-init's growpart
#      and resizefs grow it to the disk at first boot. Kernel command line: root=UUID=...
#      ro console=tty0 console=ttyS0,115200n8.
#
# What the deploying agent does with it: gunzip it onto the disk, find partition
# root_partition (or the file system labelled root_label), and drop two files into its
# /etc/cloud/cloud.cfg.d/ (debugfs -w works without mounting):
#   90-maas-rs-datasource.cfg  datasource_list: [ NoCloud, None ] (one line: ds-identify reads
#                              it with grep) and datasource: {NoCloud: {seedfrom: http://.../}}
#   50-maas-rs-networking.cfg  a network: version-2 document
# Checked against the source of Debian 12's cloud-init (22.4): DataSourceNoCloudNet takes
# `seedfrom` from its datasource config (ds_cfg) and reads SEED/meta-data, user-data and
# vendor-data over http(s); ds-identify enables cloud-init when datasource_list names one
# datasource besides None; Init._find_networking_config takes the `network` key of the system
# configuration (/etc/cloud/cloud.cfg.d) before the datasource's network-config and the
# fallback DHCP configuration (NoCloud keeps the default order cmdline, initramfs,
# system_cfg, ds), also in the local stage where no datasource was found yet (the machine
# gets its static addresses before it fetches the seed); with no ifupdown installed the
# netplan renderer is chosen (and pinned in 10_maas_rs_image.cfg), and netplan renders for
# systemd-networkd (enabled). With that renderer cloud-init passes a version-2 document
# through to /etc/netplan/50-cloud-init.yaml untouched, so netplan's own forms (`to:
# default`) work; cloud-init 22.4's own version-2 parser, used by its other renderers, would
# refuse `to: default`.
# So the image has no datasource of its own: Debian's debconf-made 90_dpkg.cfg (which would
# sort after 90-maas-rs-datasource.cfg and win) is removed; without the agent's files cloud-init
# searches every datasource as upstream does.
#
# Contents: mmdebstrap --variant=apt plus systemd, udev, linux-image-cloud-amd64 (virtio and
# the common cloud drivers, about a third of linux-image-amd64's modules), initramfs-tools,
# cloud-init, netplan.io, systemd-networkd and systemd-resolved, openssh-server (host keys
# made at first boot), iproute2, iputils-ping, python3, sudo, cloud-guest-utils; no ifupdown,
# no Recommends, no documentation, man pages or translations (dpkg path-excludes, kept in the
# image so later installs stay small), locale C.UTF-8 (cloud-init need not run locale-gen).
# No passwords: root is locked, cloud-init makes the default user (debian, locked password)
# with the keys the metadata gives. The image is not meant for real hardware that needs
# non-free firmware or drivers the cloud kernel lacks; a deployed machine may install
# linux-image-amd64.
#
# Why this way: no loop devices and no mounts, so it builds as root in a container where
# losetup does not work. mmdebstrap (root mode) makes the tree; mkfs.ext4 -d and mkfs.vfat
# plus mtools fill the two file systems as files; sfdisk partitions the image file; syslinux's
# mtools installer (syslinux --install) writes its boot sector and ldlinux.sys into the FAT
# image. GRUB would need grub-install against a block device (or its core.img patched by hand)
# and a grub.cfg that update-grub cannot make without one; syslinux and systemd-boot read a
# three-line configuration from the FAT, which the kernel hook rewrites.
#
# Packages come only from the Debian entries (origin Debian, bookworm, bookworm-updates,
# bookworm-security) of this machine's apt sources, or from MAAS_DEBIAN_MIRROR (its
# bookworm and bookworm-updates, plus MAAS_DEBIAN_SECURITY_MIRROR when set); the image's
# /etc/apt/sources.list names the same mirrors. Downloaded packages are kept in the cache
# (default /var/cache/maas-rs/deploy-image, or $HOME/.cache/maas-rs/deploy-image when that is
# not writable; --cache or MAAS_DEPLOY_IMAGE_CACHE overrides) and reused by the next build.
# Needs root (mmdebstrap's root mode: chroot and file owners) and the host tools scripts/setup.sh
# installs: mmdebstrap, e2fsprogs, dosfstools, mtools, syslinux, syslinux-common, fdisk, gzip.
#
# Measured on a 2-core machine: about 85 s with an empty package cache (about 100 MB of
# packages), a 566 MiB raw image (a 332 MB tree) and 130 MB gzipped; under QEMU TCG it boots
# to cloud-init's final stage in about 100 s (BIOS) and to the login prompt in about 40 s
# (UEFI, without cloud-init's datasource files).
#
# Reruns are fast: OUT_DIR is left alone when the script and the Debian package lists of the
# apt sources have not changed (--force rebuilds; `apt-get update` brings new lists). Builds
# are reproducible in layout and UUIDs (derived from those inputs) and timestamps
# (SOURCE_DATE_EPOCH from the newest package list), not byte for byte.
#
# Exit status: 0 built or up to date, 1 the build failed, 2 usage, 3 something this machine
# lacks (root, a host tool, the package lists, the mirror): tests skip on 3.
set -euo pipefail

usage() {
  sed -n 's/^# Usage: /usage: /p' "$0" >&2
  exit 2
}

cache=${MAAS_DEPLOY_IMAGE_CACHE:-}
force=
out=
while (($#)); do
  case "$1" in
    --cache) (($# >= 2)) || usage; cache=$2; shift 2 ;;
    --cache=*) cache=${1#--cache=}; shift ;;
    --force) force=1; shift ;;
    -h | --help) usage ;;
    -*) echo "build-deploy-image: unknown option $1" >&2; usage ;;
    *) [[ -z $out ]] || usage; out=$1; shift ;;
  esac
done
[[ -n $out ]] || usage
# One build at a time into OUT_DIR: a second caller waits (bounded), then finds it up to date.
mkdir -p "$(dirname "$out")"
exec 9>"$out.lock"
flock -w 1800 9 || { echo "$(basename "$0"): $out is being built by another process" >&2; exit 1; }

die() {
  echo "build-deploy-image: $*" >&2
  exit 1
}
# What this machine lacks rather than what went wrong.
lacking() {
  echo "build-deploy-image: $*" >&2
  exit 3
}
say() { echo "build-deploy-image: $*"; }

start=$(date +%s)
arch=amd64
suite=bookworm
name=debian/$suite
root_label=maas-root
boot_label=MAAS-BOOT
root_partition=2
# The packages on top of mmdebstrap's apt variant (Essential: yes, and apt).
PACKAGES=(
  systemd systemd-sysv udev dbus systemd-resolved systemd-timesyncd
  linux-image-cloud-amd64 initramfs-tools systemd-boot-efi
  cloud-init cloud-guest-utils e2fsprogs netplan.io iproute2 iputils-ping
  openssh-server sudo passwd python3
  # Asserts the merged /usr that mmdebstrap makes, so that usrmerge (which the essential set
  # brings in, with 50 MB of perl) can go.
  usr-is-merged
)

[[ $(dpkg --print-architecture 2>/dev/null) == "$arch" ]] ||
  lacking "this machine's Debian architecture is $(dpkg --print-architecture 2>/dev/null || echo unknown); only $arch is built, on an $arch host"
[[ $(id -u) -eq 0 ]] || lacking "needs root (mmdebstrap builds the tree in root mode: chroot, file owners)"

# --- host tools ----------------------------------------------------------------------------------
missing=()
for tool in mmdebstrap apt-get mkfs.ext4 e2fsck mkfs.vfat mcopy mmd syslinux sfdisk gzip \
  sha256sum timeout chroot du find awk; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
((${#missing[@]} == 0)) || lacking "missing tools: ${missing[*]} (Debian packages: mmdebstrap e2fsprogs dosfstools mtools syslinux fdisk; run scripts/setup.sh as root)"
mbr_bin=/usr/lib/syslinux/mbr/mbr.bin
[[ -f $mbr_bin ]] || lacking "no $mbr_bin (Debian package syslinux-common)"

# --- cache ---------------------------------------------------------------------------------------
if [[ -z $cache ]]; then
  cache=/var/cache/maas-rs/deploy-image
  if ! mkdir -p "$cache" 2>/dev/null || [[ ! -w $cache ]]; then
    cache=${XDG_CACHE_HOME:-$HOME/.cache}/maas-rs/deploy-image
    say "/var/cache/maas-rs/deploy-image is not writable; caching packages in $cache"
  fi
fi
mkdir -p "$cache/debs" || lacking "cannot create the cache directory $cache"
[[ -w $cache ]] || lacking "the cache directory $cache is not writable (use --cache DIR)"
cache=$(cd "$cache" && pwd)

# --- the Debian sources --------------------------------------------------------------------------
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
[[ -f $keyring ]] || lacking "no $keyring (Debian package debian-archive-keyring)"
# "URI RELEASE COMPONENT LISTFILE" of the Debian package indexes apt knows for this suite.
debian_indexes() {
  # shellcheck disable=SC2016 # apt's own format fields.
  apt-get indextargets --format '$(REPO_URI) $(RELEASE) $(COMPONENT) $(FILENAME) $(ORIGIN) $(IDENTIFIER) $(ARCHITECTURE)' 2>/dev/null |
    awk -v suite="$suite" -v arch="$arch" '$5 == "Debian" && $6 == "Packages" && $7 == arch &&
      ($2 == suite || $2 == suite "-updates" || $2 == suite "-security") { print $1, $2, $3, $4 }' |
    sort -u
}
indexes=$(debian_indexes)
if [[ -z $indexes ]]; then
  say "no Debian $suite package lists: running apt-get update"
  timeout 300 apt-get update -qq || lacking "apt-get update failed"
  indexes=$(debian_indexes)
fi
[[ -n $indexes ]] || lacking "the apt sources have no Debian $suite entries with package lists (run apt-get update)"
sources=()
if [[ -n ${MAAS_DEBIAN_MIRROR:-} ]]; then
  sources+=("deb [signed-by=$keyring] $MAAS_DEBIAN_MIRROR $suite main"
    "deb [signed-by=$keyring] $MAAS_DEBIAN_MIRROR $suite-updates main")
  [[ -z ${MAAS_DEBIAN_SECURITY_MIRROR:-} ]] ||
    sources+=("deb [signed-by=$keyring] $MAAS_DEBIAN_SECURITY_MIRROR $suite-security main")
else
  while read -r uri release components; do
    sources+=("deb [signed-by=$keyring] $uri $release $components")
  done < <(awk '{ c[$1 " " $2] = c[$1 " " $2] (c[$1 " " $2] == "" ? "" : " ") $3 }
    END { for (k in c) print k, c[k] }' <<<"$indexes" | sort)
fi

# --- up to date? ---------------------------------------------------------------------------------
lists=()
while read -r _ _ _ file; do
  for f in "$file" "$file".*; do [[ -f $f ]] && lists+=("$f"); done
done <<<"$indexes"
((${#lists[@]})) || lacking "the Debian package lists named by apt are missing (run apt-get update)"
key=$(
  {
    sha256sum "$0" "${lists[@]}" | awk '{ print $1 }'
    printf '%s\n' "${sources[@]}" "${PACKAGES[@]}"
  } | sha256sum | awk '{ print $1 }'
)
if [[ -z $force && -f $out/.build-key && $(cat "$out/.build-key") == "$key" ]] &&
  [[ -f $out/disk.img.gz && -f $out/manifest.json ]]; then
  say "$out is up to date ($(($(date +%s) - start)) s)"
  exit 0
fi

# Identifiers and times follow the inputs, so a rebuild of the same inputs lays out the same disk.
root_uuid=${key:0:8}-${key:8:4}-4${key:13:3}-a${key:17:3}-${key:20:12}
boot_id=${key:32:8}
boot_id=${boot_id^^}
seed=$(echo "$key hash seed" | sha256sum)
hash_seed=${seed:0:8}-${seed:8:4}-4${seed:13:3}-a${seed:17:3}-${seed:20:12}
epoch=$(stat -c %Y "${lists[@]}" | sort -n | tail -n 1)
export SOURCE_DATE_EPOCH=$epoch

work=$(mktemp -d "${TMPDIR:-/var/tmp}/build-deploy-image.XXXXXX")
cleanup() { rm -rf "$work"; }
trap cleanup EXIT
tree=$work/tree

# --- the tree ------------------------------------------------------------------------------------
say "mmdebstrap $suite ($arch) from: ${sources[*]}"
include=$(
  IFS=,
  echo "${PACKAGES[*]}"
)
# A customize hook (mmdebstrap runs it with the tree as $1): only what PACKAGES need stays.
# mmdebstrap's first phase marks everything it installs as installed by hand, usrmerge and
# perl included; perl is only suggested by adduser and debconf.
cat >"$work/prune" <<EOF
#!/bin/sh
set -e
chroot "\$1" dpkg-query -W -f '\${binary:Package}\n' | xargs chroot "\$1" apt-mark auto >/dev/null
chroot "\$1" apt-mark manual apt ${PACKAGES[*]} >/dev/null
chroot "\$1" apt-get purge -y -q --autoremove -o APT::AutoRemove::SuggestsImportant=false usrmerge >/dev/null
EOF
chmod +x "$work/prune"
# shellcheck disable=SC2016 # "$1" is the hooks' argument, expanded by mmdebstrap's shell.
mm_opts=(
  --mode=root --variant=apt --arch="$arch" --include="$include"
  --aptopt='Acquire::Languages "none"'
  # No docs, man pages or translations; copyright files stay.
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright'
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*'
  --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/locale/locale.alias'
  --dpkgopt='path-exclude=/usr/share/lintian/*'
  # The package cache: in before the download, out (only this build's packages) after it.
  --skip=essential/unlink
  --setup-hook='mkdir -p "$1"/var/cache/apt/archives/'
  --setup-hook="sync-in $cache/debs /var/cache/apt/archives/"
  --customize-hook="$work/prune"
  --customize-hook="rm -rf $work/debs && mkdir -p $work/debs"
  --customize-hook="sync-out /var/cache/apt/archives $work/debs"
  --customize-hook='rm -f "$1"/var/cache/apt/archives/*.deb'
)
if ! timeout 1800 mmdebstrap "${mm_opts[@]}" "$suite" "$tree" "${sources[@]}" >"$work/mmdebstrap.log" 2>&1; then
  tail -n 40 "$work/mmdebstrap.log" >&2
  if grep -qiE 'Temporary failure resolving|Could not (connect|resolve)|Failed to fetch|Unable to connect' "$work/mmdebstrap.log"; then
    lacking "mmdebstrap could not reach the Debian mirror"
  fi
  die "mmdebstrap failed"
fi
rm -rf "$cache/debs.old"
mv "$cache/debs" "$cache/debs.old" && mv "$work/debs" "$cache/debs" && rm -rf "$cache/debs.old"

kernels=("$tree"/boot/vmlinuz-*)
if ((${#kernels[@]} != 1)) || [[ ! -f ${kernels[0]} ]]; then
  die "expected one kernel in the tree's /boot, found: ${kernels[*]##*/}"
fi
kver=${kernels[0]##*/vmlinuz-}
[[ -f $tree/boot/initrd.img-$kver ]] || die "no initramfs for $kver in the tree's /boot"
[[ ! -e $tree/sbin/ifup && ! -e $tree/etc/network/interfaces ]] || die "ifupdown was installed (cloud-init would render for it)"
efi=$tree/usr/lib/systemd/boot/efi/systemd-bootx64.efi
[[ -f $efi ]] || die "no $efi in the tree (systemd-boot-efi)"

# --- configuration -------------------------------------------------------------------------------
cmdline="root=UUID=$root_uuid ro console=tty0 console=ttyS0,115200n8"
cat >"$tree/etc/fstab" <<EOF
# <file system> <mount point> <type> <options> <dump> <pass>
UUID=$root_uuid / ext4 defaults,errors=remount-ro 0 1
UUID=${boot_id:0:4}-${boot_id:4:4} /boot vfat defaults,umask=0077,shortname=mixed 0 0
EOF
printf 'debian\n' >"$tree/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tdebian\n::1\tlocalhost ip6-localhost ip6-loopback\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n' >"$tree/etc/hosts"
printf 'LANG=C.UTF-8\n' >"$tree/etc/default/locale"
# Each machine makes its own machine ID and SSH host keys at first boot.
: >"$tree/etc/machine-id"
rm -f "$tree/var/lib/dbus/machine-id" "$tree"/etc/ssh/ssh_host_*
mkdir -p "$tree/etc/systemd/system/ssh.service.d"
cat >"$tree/etc/systemd/system/ssh.service.d/maas-rs-host-keys.conf" <<'EOF'
# cloud-init makes the host keys; this makes them when cloud-init did not run, before the
# unit's own configuration check (which fails without keys).
[Service]
ExecStartPre=
ExecStartPre=/usr/bin/ssh-keygen -A
ExecStartPre=/usr/sbin/sshd -t
EOF
ln -sf ../run/systemd/resolve/stub-resolv.conf "$tree/etc/resolv.conf"
chroot "$tree" systemctl enable systemd-networkd.service systemd-resolved.service >/dev/null 2>&1 ||
  die "cannot enable systemd-networkd"

# cloud-init: generic. No datasource of its own (see the header), netplan as the renderer.
rm -f "$tree/etc/cloud/cloud.cfg.d/90_dpkg.cfg"
cat >"$tree/etc/cloud/cloud.cfg.d/10_maas_rs_image.cfg" <<'EOF'
# maas-rs deploy image: netplan renders the network configuration (for systemd-networkd).
# The deploying agent adds 50-maas-rs-networking.cfg and 90-maas-rs-datasource.cfg.
system_info:
  network:
    renderers: [netplan]
EOF

# The boot loaders' configuration, made now and after every kernel change.
cat >"$tree/etc/default/maas-rs-boot" <<EOF
# The kernel command line of /etc/kernel/postinst.d/zz-maas-rs-boot.
CMDLINE="$cmdline"
EOF
cat >"$tree/etc/kernel/postinst.d/zz-maas-rs-boot" <<'EOF'
#!/bin/sh
# Points syslinux (BIOS) and systemd-boot (UEFI) on the /boot FAT partition at the newest
# kernel that has an initramfs. Installed by maas-rs' deploy image.
set -e
. /etc/default/maas-rs-boot
boot=${MAAS_RS_BOOT:-/boot}
newest=$(ls "$boot" | sed -n 's/^vmlinuz-//p' | sort -V | while read -r v; do
  [ -f "$boot/initrd.img-$v" ] && echo "$v"; done | tail -n 1)
[ -n "$newest" ] || { echo "zz-maas-rs-boot: no kernel with an initramfs in $boot" >&2; exit 0; }
mkdir -p "$boot/syslinux" "$boot/loader/entries"
cat >"$boot/syslinux/syslinux.cfg.new" <<END
SERIAL 0 115200
PROMPT 0
TIMEOUT 0
DEFAULT debian
LABEL debian
  LINUX /vmlinuz-$newest
  INITRD /initrd.img-$newest
  APPEND $CMDLINE
END
mv "$boot/syslinux/syslinux.cfg.new" "$boot/syslinux/syslinux.cfg"
cat >"$boot/loader/entries/debian.conf.new" <<END
title Debian
linux /vmlinuz-$newest
initrd /initrd.img-$newest
options $CMDLINE
END
mv "$boot/loader/entries/debian.conf.new" "$boot/loader/entries/debian.conf"
printf 'default debian.conf\ntimeout 0\n' >"$boot/loader/loader.conf"
EOF
chmod 0755 "$tree/etc/kernel/postinst.d/zz-maas-rs-boot"
mkdir -p "$tree/etc/kernel/postrm.d"
ln -sf ../postinst.d/zz-maas-rs-boot "$tree/etc/kernel/postrm.d/zz-maas-rs-boot"
chroot "$tree" /etc/kernel/postinst.d/zz-maas-rs-boot || die "the boot configuration hook failed"
install -D -m 0644 "$efi" "$tree/boot/EFI/BOOT/BOOTX64.EFI"
rm -rf "$tree"/var/lib/apt/lists/* "$tree"/var/cache/apt/*.bin "$tree"/var/log/*.log \
  "$tree"/var/log/apt/* "$tree"/tmp/* "$tree"/var/tmp/*

# --- file systems --------------------------------------------------------------------------------
mib=$((1024 * 1024))
# /boot: the FAT partition, room for two kernels and initramfs (an upgrade).
boot_bytes=$(du -sb "$tree/boot" | awk '{ print $1 }')
boot_mib=$(((boot_bytes * 2 + 16 * mib) / mib + 1))
((boot_mib >= 64)) || boot_mib=64
mv "$tree/boot" "$work/boot"
mkdir -m 0755 "$tree/boot"
# Hidden sectors: the partition starts at sector 2048.
mkfs.vfat -C -n "$boot_label" -i "$boot_id" -h 2048 "$work/boot.img" $((boot_mib * 1024)) >/dev/null ||
  die "mkfs.vfat failed"
export MTOOLS_SKIP_CHECK=1
(cd "$work/boot" && find . -mindepth 1 -type d | LC_ALL=C sort | while read -r d; do
  mmd -i "$work/boot.img" "::${d#./}"
done && find . -type f | LC_ALL=C sort | while read -r f; do
  mcopy -i "$work/boot.img" -m "$f" "::${f#./}"
done) || die "copying /boot into the FAT image failed"
syslinux --install --directory /syslinux "$work/boot.img" || die "syslinux --install failed"

# /: ext4 with a quarter of free space (growpart enlarges it at first boot) and inodes for the
# files plus half again.
tree_bytes=$(du -sb "$tree" | awk '{ print $1 }')
files=$(find "$tree" | wc -l)
root_mib=$(((tree_bytes * 5 / 4 + 96 * mib) / mib))
inodes=$((files * 3 / 2 + 8192))
E2FSPROGS_FAKE_TIME=$epoch mkfs.ext4 -q -F -L "$root_label" -U "$root_uuid" -N "$inodes" \
  -E "hash_seed=$hash_seed,root_owner=0:0" -d "$tree" "$work/root.img" "${root_mib}M" >/dev/null ||
  die "mkfs.ext4 failed"
e2fsck -f -n "$work/root.img" >/dev/null 2>&1 || die "the root file system does not check clean"

# --- the disk ------------------------------------------------------------------------------------
boot_start=2048
root_start=$((boot_start + boot_mib * 2048))
total_sectors=$((root_start + root_mib * 2048))
disk=$work/disk.img
truncate -s $((total_sectors * 512)) "$disk"
sfdisk -q --label dos "$disk" <<EOF || die "sfdisk failed"
label-id: 0x${key:0:8}
start=$boot_start, size=$((boot_mib * 2048)), type=ef, bootable
start=$root_start, size=$((root_mib * 2048)), type=83
EOF
dd if="$mbr_bin" of="$disk" bs=440 count=1 conv=notrunc status=none
dd if="$work/boot.img" of="$disk" bs=1M seek=$((boot_start / 2048)) conv=notrunc,sparse status=none
dd if="$work/root.img" of="$disk" bs=1M seek=$((root_start / 2048)) conv=notrunc,sparse status=none
raw_size=$(stat -c %s "$disk")
timeout 1200 gzip -6 -n -c "$disk" >"$work/disk.img.gz" || die "gzip failed"

printf '{"name": "%s", "arch": "%s", "format": "raw.gz", "image": {"file": "disk.img.gz", "sha256": "%s", "size": %s}, "raw_size": %s, "root_partition": %s, "root_label": "%s", "root_uuid": "%s", "firmware": ["bios", "uefi"], "kernel_version": "%s"}\n' \
  "$name" "$arch" "$(sha256sum "$work/disk.img.gz" | awk '{ print $1 }')" \
  "$(stat -c %s "$work/disk.img.gz")" "$raw_size" "$root_partition" "$root_label" "$root_uuid" \
  "$kver" >"$work/manifest.json"

# Replace the outputs only once both are ready; the manifest last, the key after it.
mkdir -p "$out"
rm -f "$out/.build-key"
for file in disk.img.gz manifest.json; do
  mv -f "$work/$file" "$out/.$file.new" 2>/dev/null || cp "$work/$file" "$out/.$file.new"
  mv -f "$out/.$file.new" "$out/$file"
done
echo "$key" >"$out/.build-key"

say "kernel $kver; disk $raw_size bytes (/boot $boot_mib MiB, / $root_mib MiB, tree $tree_bytes bytes," \
  "$files files), gzip $(stat -c %s "$out/disk.img.gz") bytes"
say "wrote $out/manifest.json in $(($(date +%s) - start)) s"
