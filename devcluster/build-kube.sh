#!/usr/bin/env bash
# Build kube-apiserver, kube-scheduler, kube-controller-manager and kubectl v1.20.2 from Debian's
# `kubernetes` source package, once, into a cache outside the checkout (DESIGN.md §6).
# Idempotent: exits at once when the cached binaries are there. Prints the cache's bin directory last.
set -euo pipefail

CACHE="${RAYQUEUE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/rayqueue}"
VERSION=1.20.2
BIN="$CACHE/kube-v$VERSION/bin"
WANT=(kube-apiserver kube-scheduler kube-controller-manager kubectl)
DEBS=(golang-go etcd-server rsync jq golang-github-modern-go-reflect2-dev dpkg-dev openssl)

log() { printf '[build-kube] %s\n' "$*" >&2; }

have_all() {
  for b in "${WANT[@]}"; do [ -x "$BIN/$b" ] || return 1; done
  [ -f "$BIN/.complete" ]
}

ensure_debs() {
  local missing=()
  for p in "${DEBS[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing Debian packages: ${missing[*]}"
  local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
}

ensure_deb_src() {
  if apt-cache showsrc kubernetes 2>/dev/null | grep -q '^Package: kubernetes'; then return 0; fi
  log "adding a deb-src entry for 'apt-get source kubernetes'"
  local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources \
      | $sudo tee /etc/apt/sources.list.d/rayqueue-debian-src.sources >/dev/null
  else
    grep -h '^deb ' /etc/apt/sources.list | sed 's/^deb /deb-src /' \
      | $sudo tee /etc/apt/sources.list.d/rayqueue-debian-src.list >/dev/null
  fi
  $sudo apt-get update -q >/dev/null
}

ensure_debs
if [ "${1:-}" != "--force" ] && have_all; then
  echo "$BIN"; exit 0
fi
ensure_deb_src

WORK="$CACHE/kube-v$VERSION/src"
rm -rf "$WORK"; mkdir -p "$WORK"
cd "$WORK"
log "fetching Debian's kubernetes source package"
apt-get source -q kubernetes >/dev/null 2>&1 || { log "apt-get source kubernetes failed"; exit 1; }
SRC="$(find "$WORK" -mindepth 1 -maxdepth 1 -type d -name 'kubernetes-*' | head -n1)"
[ -n "$SRC" ] || { log "no source tree unpacked"; exit 1; }
cd "$SRC"

# reflect2 1.0.1 (vendored) segfaults under Go >= 1.18: use Debian's 1.0.2 sources.
R2=/usr/share/gocode/src/github.com/modern-go/reflect2
if [ -d vendor/github.com/modern-go/reflect2 ] && [ -d "$R2" ]; then
  log "replacing vendored modern-go/reflect2 with Debian's $(dpkg-query -W -f='${Version}' golang-github-modern-go-reflect2-dev)"
  rm -rf vendor/github.com/modern-go/reflect2
  cp -r "$R2" vendor/github.com/modern-go/reflect2
  sed -i 's#^\(github.com/modern-go/reflect2\) v1\.0\.1#\1 v1.0.2#' vendor/modules.txt go.mod 2>/dev/null || true
  sed -i '/^github.com\/modern-go\/reflect2 v1\.0\.1/d' go.sum 2>/dev/null || true
fi

log "building ${WANT[*]} (the first build takes several minutes on 2 cores)"
export GOFLAGS=-mod=vendor GO111MODULE=on GOCACHE="$CACHE/go-build" GOPATH="$CACHE/gopath"
export KUBE_GIT_VERSION="v$VERSION" KUBE_GIT_TREE_STATE=clean
start=$(date +%s)
( make WHAT="cmd/kube-apiserver cmd/kube-scheduler cmd/kube-controller-manager cmd/kubectl" 2>&1 \
    | while IFS= read -r line; do printf '[build-kube] make: %s\n' "$line" >&2; done ) &
mpid=$!
while kill -0 "$mpid" 2>/dev/null; do
  sleep 30; kill -0 "$mpid" 2>/dev/null && log "still building... $(( $(date +%s) - start ))s"
done
wait "$mpid"

mkdir -p "$BIN"
for b in "${WANT[@]}"; do
  f="$(find _output -type f -name "$b" -perm -u+x | head -n1)"
  [ -n "$f" ] || { log "build produced no $b"; exit 1; }
  cp "$f" "$BIN/$b"
done
"$BIN/kubectl" version --client --short >&2 || true
touch "$BIN/.complete"
cd "$CACHE"; rm -rf "$WORK"
log "done in $(( $(date +%s) - start ))s"
echo "$BIN"
