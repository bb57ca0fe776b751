#!/usr/bin/env bash
# Installs NSAT's build and test dependencies from Debian bookworm's packages.
# Skips apt entirely when everything is already installed.
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config
  libgdal-dev gdal-bin libproj-dev proj-bin
  nlohmann-json3-dev libzstd-dev libjpeg-dev zlib1g-dev libtiff-dev
  libgtest-dev googletest
  libtorch-dev libssl-dev time
  python3-gdal python3-numpy python3-pytest python3-rasterio python3-torch python3-matplotlib
  python3-distributed python3-zstandard
)
for option in "$@"; do
  case $option in
    --with-qgis) PACKAGES+=(python3-qgis qgis-providers) ;;
    --with-fuzz) PACKAGES+=(clang libclang-rt-dev) ;;  # libFuzzer (scripts/fuzz.sh)
    *) echo "install_deps: unknown option $option" >&2; exit 2 ;;
  esac
done

missing=()
for package in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
    || missing+=("$package")
done
if (( ${#missing[@]} == 0 )); then
  echo "install_deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi

SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
echo "install_deps: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
