#!/usr/bin/env bash
# Builds etcd, kube-apiserver and kube-controller-manager for the Kubernetes tests, once per machine.
#
# The binaries go to a cache outside the repository, keyed by the go.mod/go.sum files:
#   ${XDG_CACHE_HOME:-$HOME/.cache}/meshplane/kube/<key>/bin
# A second run with the same modules does nothing. `build.sh --bin-dir` prints the directory and exits;
# `build.sh --check` exits 0 when the binaries are there, 1 when not.
# The Python side (meshplane.shared.testing.kubeenv) computes the same key; keep the two in step.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
KUBE_VERSION=v1.36.3
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	ldflags+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=36"
	ldflags+=" -X $pkg.gitTreeState=clean"
done

key=$(cat "$here/apiserver/go.mod" "$here/apiserver/go.sum" "$here/etcd/go.mod" "$here/etcd/go.sum" |
	sha256sum | cut -c1-16)
cache_root=${XDG_CACHE_HOME:-$HOME/.cache}/meshplane/kube
bin="$cache_root/$key/bin"
binaries=(etcd kube-apiserver kube-controller-manager)

have_all() {
	local b
	for b in "${binaries[@]}"; do
		[[ -x "$bin/$b" ]] || return 1
	done
}

case "${1:-}" in
--bin-dir)
	echo "$bin"
	exit 0
	;;
--check)
	have_all
	exit
	;;
"") ;;
*)
	echo "usage: $0 [--bin-dir|--check]" >&2
	exit 2
	;;
esac

if have_all; then
	echo "kube binaries present in $bin"
	exit 0
fi
if ! command -v go >/dev/null; then
	echo "go is not installed: cannot build the kube test binaries (tests that need them will skip)" >&2
	exit 3
fi

mkdir -p "$cache_root"
# One build at a time per machine: a second caller waits for the first, then finds the binaries.
exec 9>"$cache_root/.build.lock"
flock 9
if have_all; then
	echo "kube binaries present in $bin (built by a concurrent run)"
	exit 0
fi

start=$(date +%s)
staging=$(mktemp -d "$cache_root/.staging.XXXXXX")
trap 'rm -rf "$staging"' EXIT
echo "building etcd, kube-apiserver, kube-controller-manager ($KUBE_VERSION) into $bin"
echo "(a cold build takes tens of minutes on 2 cores; later runs reuse the binaries)"
export CGO_ENABLED=0
(cd "$here/etcd" && go build -trimpath -ldflags "-s -w" -o "$staging/etcd" go.etcd.io/etcd/server/v3)
echo "etcd built after $(($(date +%s) - start)) s"
(cd "$here/apiserver" && go build -trimpath -ldflags "$ldflags" -o "$staging/" \
	k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager)
mkdir -p "$(dirname "$bin")"
rm -rf "$bin"
chmod 755 "$staging"
mv "$staging" "$bin"
trap - EXIT
echo "kube binaries built in $(($(date +%s) - start)) s into $bin"
