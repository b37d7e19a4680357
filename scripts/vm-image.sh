#!/usr/bin/env bash
# Builds the microVM image under OUT (default out/vm):
#   vmlinux         the uncompressed kernel of Debian's cloud kernel package
#   initramfs.cpio  agentd as /init, the virtio modules, busybox
#   manifest        the exact package versions and the agentd build's hash
# from Debian packages fetched with `apt-get download` and unpacked with
# `dpkg-deb -x` (nothing is installed into the host). The kernel version is
# resolved through the linux-image-cloud-amd64 metapackage. When the
# manifest would not change, nothing is rebuilt.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out/vm}
GO=${GO:-go}
KMETA=${KMETA:-linux-image-cloud-amd64}
# In dependency order: agentd loads them as listed.
MODULES="virtio virtio_ring virtio_mmio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_console"
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1700000000}

need() { command -v "$1" >/dev/null || { echo "vm-image: $1 not found (apt-get install --no-install-recommends $2)" >&2; exit 1; }; }
need apt-get apt; need dpkg-deb dpkg; need lz4 lz4; need cpio cpio

# The package lists are missing on a fresh machine: apt-cache knows
# nothing until apt-get update has run.
version() { apt-cache show --no-all-versions "$1" 2>/dev/null | awk '/^Version:/ {print $2; exit}'; }
if [ -z "$(version "$KMETA")" ]; then
	echo "vm-image: package lists missing; apt-get update" >&2
	apt-get update -qq
fi
kpkg=$(apt-cache depends "$KMETA" | awk '/Depends: linux-image-/ {print $2; exit}')
[ -n "$kpkg" ] || { echo "vm-image: $KMETA depends on no linux-image package" >&2; exit 1; }
kver=$(version "$kpkg")
bbver=$(version busybox-static)
[ -n "$kver" ] && [ -n "$bbver" ] || { echo "vm-image: cannot resolve $kpkg or busybox-static" >&2; exit 1; }

mkdir -p "$OUT/cache"
agentd=$OUT/cache/agentd
CGO_ENABLED=0 $GO build -trimpath -ldflags='-s -w -buildid=' -o "$agentd.new" ./cmd/agentd
if [ -f "$agentd" ] && cmp -s "$agentd" "$agentd.new"; then rm "$agentd.new"; else mv "$agentd.new" "$agentd"; fi
asum=$(sha256sum "$agentd" | cut -d' ' -f1)
manifest=$(printf '%s\n' \
	"$KMETA -> $kpkg $kver" \
	"busybox-static $bbver" \
	"agentd sha256:$asum" \
	"vm-image.sh sha256:$(sha256sum "$0" | cut -d' ' -f1)" \
	"modules $MODULES")
if [ -f "$OUT/manifest" ] && [ -f "$OUT/vmlinux" ] && [ -f "$OUT/initramfs.cpio" ] &&
	[ "$(cat "$OUT/manifest")" = "$manifest" ]; then
	echo "vm-image: $OUT is up to date" >&2
	exit 0
fi

cached() { # package version -> the .deb in the cache, if there
	local deb
	for deb in "$OUT/cache/$1"_*.deb; do
		[ -f "$deb" ] && [ "$(dpkg-deb -f "$deb" Version)" = "$2" ] && { echo "$deb"; return; }
	done
	true
}
fetch() { # package version -> path of the .deb in the cache
	local deb
	deb=$(cached "$1" "$2")
	if [ -z "$deb" ]; then
		(cd "$OUT/cache" && apt-get download -q "$1=$2" 2>&1 | grep -v 'unsandboxed' >&2 || true)
		deb=$(cached "$1" "$2")
		[ -n "$deb" ] || { echo "vm-image: apt-get download $1=$2 failed" >&2; exit 1; }
	fi
	echo "$deb"
}
kdeb=$(fetch "$kpkg" "$kver")
bbdeb=$(fetch busybox-static "$bbver")

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
dpkg-deb -x "$kdeb" "$work/k"
dpkg-deb -x "$bbdeb" "$work/bb"

# The bzImage's payload is LZ4 (the "legacy" frame, magic 02 21 4c 18):
# like the kernel's extract-vmlinux, try each place the magic occurs until
# one decompresses to an ELF file.
vmlinuz=$(ls "$work"/k/boot/vmlinuz-*)
found=
for off in $(grep -aboP '\x02\x21\x4c\x18' "$vmlinuz" | cut -d: -f1); do
	tail -c +$((off + 1)) "$vmlinuz" | lz4 -dc >"$work/vmlinux" 2>/dev/null || true
	if [ "$(head -c 4 "$work/vmlinux" | od -An -tx1 | tr -d ' ')" = 7f454c46 ]; then found=1; break; fi
done
[ -n "$found" ] || { echo "vm-image: no LZ4-compressed ELF kernel in $vmlinuz" >&2; exit 1; }

root=$work/root
mkdir -p "$root"/{bin,dev,etc,lib/modules,proc,sys,tmp,run,root,usr}
ln -s bin "$root/sbin"; ln -s ../bin "$root/usr/bin"; ln -s ../bin "$root/usr/sbin"
cp "$agentd" "$root/init"
cp "$work/bb/bin/busybox" "$root/bin/busybox"
for applet in $("$root/bin/busybox" --list | sort); do
	[ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"
done
kdir=$(ls -d "$work"/k/lib/modules/*)
for m in $MODULES; do
	ko=$(find "$kdir" -name "$m.ko" | head -1)
	[ -n "$ko" ] || { echo "vm-image: module $m.ko not in $kpkg" >&2; exit 1; }
	cp "$ko" "$root/lib/modules/"
done
echo "$MODULES" | tr ' ' '\n' >"$root/lib/modules/modules.order"
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
printf 'root:x:0:\ntty:x:5:\nnogroup:x:65534:\n' >"$root/etc/group"
# The kernel opens /dev/console for init's stdio before devtmpfs exists.
mknod -m 600 "$root/dev/console" c 5 1
chmod 700 "$root/root"; chmod 1777 "$root/tmp"
find "$root" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
(cd "$root" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --reproducible --quiet) >"$work/initramfs.cpio"

mv "$work/vmlinux" "$OUT/vmlinux"
mv "$work/initramfs.cpio" "$OUT/initramfs.cpio"
echo "$manifest" >"$OUT/manifest"
echo "vm-image: $OUT: vmlinux $(du -h "$OUT/vmlinux" | cut -f1), initramfs.cpio $(du -h "$OUT/initramfs.cpio" | cut -f1)" >&2
cat "$OUT/manifest" >&2
