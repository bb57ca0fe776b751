#!/usr/bin/env bash
# Builds and tests NSAT on Debian 13 (trixie: GDAL 3.10, LibTorch 2.6, QGIS 3.40) from this
# Debian 12 machine: a trixie root made with Debian's debootstrap from the mirror this
# machine's apt already uses, the project's own install script run inside it, then the
# whole test suite (scripts/test.sh) with build trees inside the root, so the host's build/
# is left alone. The root is kept between runs (set NSAT_DEBIAN13_FRESH=1 to start over).
# Measured here: about 17 minutes from scratch (most of it downloading packages), 4
# minutes when the root exists.
#
#   bash scripts/test_debian13.sh [ROOT]      (default ROOT: /var/tmp/nsat-debian13)
#
# Exit status: that of the test suite, or 3 if the Debian 13 root could not be made or
# its packages not installed (no test ran).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
ROOT=${1:-/var/tmp/nsat-debian13}
SUITE=trixie

if [[ $(id -u) -ne 0 ]]; then
  echo "test_debian13: needs root (debootstrap, chroot, mounts)" >&2
  exit 1
fi

# The Debian archive this machine's apt is configured with (deb822 or one-line format).
mirror() {
  local uri
  uri=$(grep -hsE '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' |
        grep -vE 'security|updates' | head -n1 || true)
  if [[ -z $uri ]]; then
    uri=$(grep -hsE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list |
          awk '{print $2}' | grep -vE 'security' | grep -E '/debian/?$' | head -n1 || true)
  fi
  [[ -n $uri ]] || { echo "test_debian13: no Debian mirror in /etc/apt" >&2; exit 1; }
  echo "$uri"
}

command -v debootstrap >/dev/null || {
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap
}

if [[ ${NSAT_DEBIAN13_FRESH:-0} == 1 && -d $ROOT ]]; then
  umount -R "$ROOT/src/nsat" "$ROOT/proc" "$ROOT/sys" "$ROOT/dev" 2>/dev/null || true
  rm -rf --one-file-system "$ROOT"
fi
MIRROR=$(mirror)
if [[ ! -x $ROOT/usr/bin/apt-get ]]; then
  echo "== debootstrap $SUITE into $ROOT"
  if ! debootstrap --variant=minbase --include=ca-certificates,git "$SUITE" "$ROOT" "$MIRROR"; then
    rm -rf --one-file-system "$ROOT"
    echo "test_debian13: could not make the Debian $SUITE root" >&2
    exit 3
  fi
fi
cat > "$ROOT/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
EOF
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"

# The repository (and ../shared, which some tests read) appear inside the root; mounts
# are undone on exit, whatever happens.
mkdir -p "$ROOT/src/nsat" "$ROOT/src/shared"
cleanup() {
  for mount in src/shared src/nsat dev/pts dev sys proc; do
    mountpoint -q "$ROOT/$mount" && umount -l "$ROOT/$mount"
  done
  return 0
}
trap cleanup EXIT
mount -t proc proc "$ROOT/proc"
mount --rbind /sys "$ROOT/sys"
mount --rbind /dev "$ROOT/dev"
mount --bind "$REPO" "$ROOT/src/nsat"
if [[ -d $REPO/../shared ]]; then mount --bind "$REPO/../shared" "$ROOT/src/shared"; fi

in_root() {
  chroot "$ROOT" /usr/bin/env -i HOME=/root PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
    CI="${CI:-}" NSAT_BUILD_ROOT=/var/tmp/nsat-build bash -c "set -euo pipefail; cd /src/nsat; $1"
}
echo "== inside Debian $SUITE: the project's dependencies"
if ! in_root "bash scripts/install_deps.sh --with-qgis"; then
  echo "test_debian13: could not install the dependencies in Debian $SUITE" >&2
  exit 3
fi
echo "== inside Debian $SUITE (GDAL $(in_root 'gdal-config --version')): build and test"
in_root "git config --global --add safe.directory /src/nsat; bash scripts/test.sh"
