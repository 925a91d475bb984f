#!/usr/bin/env bash
# A minimal OCI bundle for runc: busybox-static as the rootfs, a counter as the container's
# process (writes /data/count and prints "tick N" each second). Usage: make-bundle.sh DIR
# (DIR/rootfs and DIR/config.json are created; nothing else on the host is touched).
# INTERVAL (seconds, may be fractional; default 1) sets the pace of the counter.
set -euo pipefail
dir=${1:?usage: make-bundle.sh DIR}
rootfs=$dir/rootfs
mkdir -p "$rootfs"/{bin,etc,data,tmp,proc,sys,dev}
cp /bin/busybox "$rootfs/bin/busybox"
for applet in $("$rootfs/bin/busybox" --list); do
  [ -e "$rootfs/bin/$applet" ] || ln -s busybox "$rootfs/bin/$applet"
done
echo 'root:x:0:0:root:/:/bin/sh' > "$rootfs/etc/passwd"
echo 'root:x:0:' > "$rootfs/etc/group"
cd "$dir"
rm -f config.json
runc spec
INTERVAL=${INTERVAL:-1} python3 - <<'PY'
import json, os
interval = os.environ['INTERVAL']
c = json.load(open('config.json'))
c['process']['terminal'] = False
c['process']['args'] = ['sh', '-c', 'i=0; while true; do i=$((i+1)); echo $i > /data/count; echo tick $i; sleep %s; done' % interval]
c['root']['readonly'] = False
json.dump(c, open('config.json', 'w'), indent=2)
PY
