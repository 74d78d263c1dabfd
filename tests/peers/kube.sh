#!/usr/bin/env bash
# tests/peers/kube.sh — installs the Kubernetes peer of the tests: kube-apiserver, kubectl,
# etcd, kube-controller-manager and helm, built from the Go module proxy and cached under
#   ${XDG_CACHE_HOME:-$HOME/.cache}/mlengine/kube/<kubernetes version>/bin
#
# Prints the bin directory and nothing else on stdout; on failure says what failed (with the
# Go build log) on stderr and exits non-zero. Idempotent: a run with every binary present for
# the pinned versions only checks four files and prints the directory.
#
# Why a wrapper module: `go install k8s.io/kubernetes/cmd/kube-apiserver@vX` fails because
# k8s.io/kubernetes's go.mod replaces each k8s.io/* staging module with a local path
# (./staging/src/...), and `go install pkg@version` refuses a module with replace directives.
# A module of our own that requires k8s.io/kubernetes vX and replaces each staging module with
# its published v0.X.Y builds the same code. etcd is built from that same module graph at the
# version kubernetes itself requires (go.etcd.io/etcd/server/v3 has a `package main` at its
# root, and its go.mod has local replaces too, so it cannot be go-installed either); helm has
# no replaces and is go-installed on its own so its k8s.io/* versions stay its own.
#
# kube-controller-manager is built too (it shares nearly every package with the apiserver, so
# it costs little): the tests run its namespace and garbage-collector controllers, without
# which a deleted Namespace stays Terminating forever and `destroy` could not be proven.
#
# Cost: a cold build downloads ~1.2 GiB of modules (Go's module cache) and compiles into
# ~3.5 GiB of Go build cache: about 7.5 minutes on an idle 2-core machine, ~17 minutes when
# the machine is busy; builds run with -p 2 so 2 cores / 24 GiB are not oversubscribed.
#
# Environment: MLE_KUBE_VERSION, MLE_HELM_VERSION override the pins (tests pin them here).
set -euo pipefail

KUBE_VERSION=${MLE_KUBE_VERSION:-1.37.2}
HELM_VERSION=${MLE_HELM_VERSION:-3.22.0}

cache="${XDG_CACHE_HOME:-$HOME/.cache}/mlengine/kube/$KUBE_VERSION"
bin="$cache/bin"
stamp="$bin/.mlengine-pins"
want="kubernetes=$KUBE_VERSION helm=$HELM_VERSION"

have_all() {
    [[ -x "$bin/kube-apiserver" && -x "$bin/kubectl" && -x "$bin/etcd" && -x "$bin/helm" \
       && -x "$bin/kube-controller-manager" \
       && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]
}

if have_all; then
    echo "$bin"
    exit 0
fi

die() {
    echo "kube.sh: $*" >&2
    exit 1
}

command -v go >/dev/null 2>&1 ||
    die "go not found on PATH; the Kubernetes peer is built from the Go module proxy (install Go >= 1.26)"

mkdir -p "$bin" "$cache/src"
log="$cache/build.log"
: >"$log"

# Everything is built the same way: reproducible paths, stripped, two compile jobs at most,
# and no silent toolchain download (the machine's own Go must do).
export GOFLAGS="-trimpath -buildvcs=false"
export GOTOOLCHAIN=local
export CGO_ENABLED=0
ldflags_base="-s -w"

run() {
    # Runs a build step with its output in the log; on failure shows the log's tail.
    echo "+ $*" >>"$log"
    if ! "$@" >>"$log" 2>&1; then
        echo "kube.sh: failed: $*" >&2
        tail -n 60 "$log" >&2
        die "full log: $log"
    fi
}

# --- the wrapper module for kube-apiserver, kubectl and etcd ---------------------------------
src="$cache/src/kubernetes"
mkdir -p "$src"
# The module is made again when what it must build changes (the stamp names it).
module_want="k8s.io/kubernetes@v$KUBE_VERSION: kube-apiserver kubectl kube-controller-manager etcd"
if [[ "$(cat "$src/.ready" 2>/dev/null)" != "$module_want" ]]; then
    rm -f "$src/go.mod" "$src/go.sum" "$src/tools.go"
    (
        cd "$src"
        run go mod init mlengine.test/kube-peer
        run go mod edit -require="k8s.io/kubernetes@v$KUBE_VERSION"
        # The staging modules are whatever k8s.io/kubernetes's go.mod requires as v0.0.0; its
        # go.mod is fetched through the proxy (no source download needed for this step).
        gomod=$(go mod download -json "k8s.io/kubernetes@v$KUBE_VERSION" 2>>"$log" |
                sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
        [[ -f "$gomod" ]] || die "could not fetch the go.mod of k8s.io/kubernetes@v$KUBE_VERSION (see $log)"
        staging_version="v0.${KUBE_VERSION#1.}"
        mods=$(awk '/=> \.\/staging\/src\// {print $1}' "$gomod")
        [[ -n "$mods" ]] || die "no staging replaces found in $gomod: has k8s.io/kubernetes changed its layout?"
        required=$(awk '$2 == "v0.0.0" && $1 ~ /^k8s\.io\// {print $1}' "$gomod")
        for m in $mods; do
            # Only the staging modules kubernetes requires are in the graph; the samples are
            # not published for every release and need no pin.
            if grep -qx "$m" <<<"$required"; then
                run go mod edit -replace="$m=$m@$staging_version"
            fi
        done
        # `tool` directives (Go 1.24+) pin the programs this module exists to build.
        run go get -tool k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl \
            k8s.io/kubernetes/cmd/kube-controller-manager
        etcd_version=$(awk '$1 == "go.etcd.io/etcd/server/v3" {print $2}' "$gomod")
        [[ -n "$etcd_version" ]] || die "k8s.io/kubernetes@v$KUBE_VERSION does not name an etcd server version"
        run go get -tool "go.etcd.io/etcd/server/v3@$etcd_version"
        run go mod tidy
    )
    printf '%s' "$module_want" >"$src/.ready"
fi

kver="v$KUBE_VERSION"
kminor=${KUBE_VERSION#1.}
kminor=${kminor%%.*}
# Version stamps so kubectl and the apiserver report the real version (instead of
# v0.0.0-master), which keeps kubectl's version-skew checks quiet.
vflags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    vflags+=" -X $pkg.gitVersion=$kver -X $pkg.gitMajor=1 -X $pkg.gitMinor=$kminor"
    vflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done

build_into_bin() { # name package [ldflags...]
    local name=$1 pkg=$2
    shift 2
    if [[ -x "$bin/$name" ]]; then return 0; fi
    (cd "$src" && run go build -p 2 -ldflags="$ldflags_base $*" -o "$bin/.$name.tmp" "$pkg")
    mv -f "$bin/.$name.tmp" "$bin/$name"
}

build_into_bin etcd go.etcd.io/etcd/server/v3
build_into_bin kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver "$vflags"
build_into_bin kubectl k8s.io/kubernetes/cmd/kubectl "$vflags"
build_into_bin kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager "$vflags"

# --- helm: its own module graph, go-installed directly ----------------------------------------
if [[ ! -x "$bin/helm" ]]; then
    tmpbin="$cache/src/helm-bin"
    rm -rf "$tmpbin" && mkdir -p "$tmpbin"
    hflags="-X helm.sh/helm/v3/internal/version.version=v$HELM_VERSION"
    (cd "$cache/src" && run env GOBIN="$tmpbin" go install -p 2 -ldflags="$ldflags_base $hflags" \
        "helm.sh/helm/v3/cmd/helm@v$HELM_VERSION")
    mv -f "$tmpbin/helm" "$bin/helm"
    rm -rf "$tmpbin"
fi

# A binary that does not run is not installed.
"$bin/etcd" --version >>"$log" 2>&1 || die "etcd was built but does not run (see $log)"
"$bin/kube-apiserver" --version >>"$log" 2>&1 || die "kube-apiserver was built but does not run (see $log)"
"$bin/kubectl" version --client >>"$log" 2>&1 || die "kubectl was built but does not run (see $log)"
"$bin/kube-controller-manager" --version >>"$log" 2>&1 ||
    die "kube-controller-manager was built but does not run (see $log)"
"$bin/helm" version --short >>"$log" 2>&1 || die "helm was built but does not run (see $log)"

printf '%s' "$want" >"$stamp"
echo "$bin"
