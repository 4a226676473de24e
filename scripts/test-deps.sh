#!/usr/bin/env bash
# Makes sure the real NBD clients the tests drive are installed. As root it
# installs what is missing from Debian's packages; otherwise it names the
# packages and leaves the choice to the user (the tests then skip, or fail
# under CI=true).
set -euo pipefail

# tool -> Debian package. fuse3 serves nbdfuse and the fault file system
# (lun/durable/faultfs), which mounts itself as root and through
# fusermount3 otherwise.
declare -A pkg=(
  [nbdinfo]=libnbd-bin [nbdcopy]=libnbd-bin [nbdfuse]=nbdfuse
  [qemu-img]=qemu-utils [qemu-io]=qemu-utils [qemu-nbd]=qemu-utils
  [fio]=fio [fusermount3]=fuse3 [nbdkit]=nbdkit [mkfs.ext4]=e2fsprogs
  [chromium]=chromium [jq]=jq [protoc]=protobuf-compiler [ip]=iproute2
)
# Python modules of the sample provider (examples/python-provider), which
# its test runs with Debian's python3 -> Debian package.
declare -A pymod=([grpc]=python3-grpcio [google.protobuf]=python3-protobuf)
missing=()
for tool in "${!pkg[@]}"; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("${pkg[$tool]}")
done
py=/usr/bin/python3
[ -x "$py" ] || py=$(command -v python3 || true)
for mod in "${!pymod[@]}"; do
  if [ -z "$py" ] || ! "$py" -c "import $mod" >/dev/null 2>&1; then
    missing+=("${pymod[$mod]}")
    [ -z "$py" ] && missing+=(python3)
  fi
done
[ -e /dev/fuse ] || echo "test-deps: /dev/fuse is missing (modprobe fuse, or give the container the device): the FUSE tests skip (and fail under CI=true)." >&2
[ ${#missing[@]} -eq 0 ] && exit 0
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)

if [ "$(id -u)" -ne 0 ]; then
  echo "test-deps: missing Debian packages: ${missing[*]}" >&2
  echo "test-deps: install them with: sudo apt-get install ${missing[*]}" >&2
  echo "test-deps: without them the real-client tests skip (and fail under CI=true)." >&2
  exit 0
fi
echo "test-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
