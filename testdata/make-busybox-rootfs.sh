#!/bin/sh
# Makes a minimal root filesystem tarball from the host's busybox-static (or BUSYBOX), offline:
# /bin/busybox with its applets as symlinks, /etc/passwd and /etc/group with root and
# nobody, and the usual empty directories. Usage: make-busybox-rootfs.sh OUT.tar
set -eu
out=${1:?usage: make-busybox-rootfs.sh OUT.tar}
# busybox-static installs a statically linked /bin/busybox: no libc needed in the image.
busybox=${BUSYBOX:-/bin/busybox}
# Another architecture's busybox (BUSYBOX=...) may not run here: its applets are
# listed by this machine's busybox of the same Debian release.
lister=${BUSYBOX_LIST:-$busybox}
[ -x "$busybox" ] || { echo "$busybox not found: apt-get install -y busybox-static" >&2; exit 1; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
mkdir -p "$dir/bin" "$dir/etc" "$dir/tmp" "$dir/root" "$dir/home" "$dir/proc" "$dir/sys" "$dir/dev" "$dir/var" "$dir/usr/bin" "$dir/usr/sbin" "$dir/sbin"
chmod 1777 "$dir/tmp"
cp "$busybox" "$dir/bin/busybox"
for applet in $("$lister" --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$dir/bin/$applet"
done
cat > "$dir/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
app:x:1000:1000:app:/home/app:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PASSWD
cat > "$dir/etc/group" <<'GROUP'
root:x:0:
daemon:x:1:
users:x:100:app
app:x:1000:
nogroup:x:65534:
GROUP
tar --numeric-owner --owner=0 --group=0 -C "$dir" -cf "$out" .
