#!/usr/bin/env bash
# tests/peers/addon_crds.sh — the REAL CustomResourceDefinitions of the add-ons the
# karpenter, keda and kyverno drivers manage, taken from the add-ons' own Go modules (the Go
# module proxy serves every tagged release as a zip that holds the CRD YAML the add-on's Helm
# chart installs), cached under
#   ${XDG_CACHE_HOME:-$HOME/.cache}/mlengine/crds/<pins>/
#
# Prints that directory and nothing else on stdout; on failure says what failed on stderr and
# exits non-zero. Idempotent: with every file present for the pinned versions it only checks
# them and prints the directory.
#
# Files (one CRD each, named <plural>.<group>.yaml):
#   nodepools.karpenter.sh.yaml, ec2nodeclasses.karpenter.k8s.aws.yaml
#       github.com/aws/karpenter-provider-aws  pkg/apis/crds/ — the AWS provider's copies,
#       which are what its Helm chart installs (the NodePool CRD there is sigs.k8s.io/karpenter's
#       with the AWS nodeClassRef rules)
#   scaledobjects.keda.sh.yaml        github.com/kedacore/keda/v2  config/crd/bases/
#   clusterpolicies.kyverno.io.yaml   github.com/kyverno/kyverno   config/crds/kyverno/
#
# Why `go mod download` and not a chart repository: only the Go module proxy is reachable from
# the test machines, and the module zip of a release tag holds exactly the CRDs of that release.
#
# Environment: MLE_KARPENTER_VERSION, MLE_KEDA_VERSION, MLE_KYVERNO_VERSION override the pins.
set -euo pipefail

KARPENTER_VERSION=${MLE_KARPENTER_VERSION:-1.15.1}
KEDA_VERSION=${MLE_KEDA_VERSION:-2.21.0}
KYVERNO_VERSION=${MLE_KYVERNO_VERSION:-1.19.1}

dir="${XDG_CACHE_HOME:-$HOME/.cache}/mlengine/crds/karpenter-$KARPENTER_VERSION.keda-$KEDA_VERSION.kyverno-$KYVERNO_VERSION"
files=(nodepools.karpenter.sh.yaml ec2nodeclasses.karpenter.k8s.aws.yaml
       scaledobjects.keda.sh.yaml clusterpolicies.kyverno.io.yaml)

die() { echo "addon_crds.sh: $*" >&2; exit 1; }

have_all() {
    for f in "${files[@]}"; do [[ -s "$dir/$f" ]] || return 1; done
}

if have_all; then
    echo "$dir"
    exit 0
fi

command -v go >/dev/null 2>&1 || die "go not found on PATH; the add-on CRDs come from the Go module proxy"
command -v unzip >/dev/null 2>&1 || die "unzip not found on PATH"
mkdir -p "$dir"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# `go mod download` of a module outside any module: a scratch module keeps the caller's
# go.mod (if any) out of it. GOTOOLCHAIN=local: the zip is all we need, and a module whose
# go.mod asks for a newer Go is still downloaded (the "requires go >=" complaint is about
# building it, which we do not do).
cd "$work"
export GOTOOLCHAIN=local GOFLAGS=-mod=mod

# module@version -> the path of its zip in the module cache.
module_zip() {
    local mv=$1 out zip
    out=$(go mod download -json "$mv" 2>"$work/err" || true)
    zip=$(printf '%s\n' "$out" | sed -n 's/^[[:space:]]*"Zip": "\(.*\)",\{0,1\}$/\1/p')
    [[ -n "$zip" && -s "$zip" ]] || die "could not download $mv from the Go module proxy: $(cat "$work/err") $out"
    printf '%s\n' "$zip"
}

# extract ZIP MODULE@VERSION PATH-IN-MODULE DEST
extract() {
    local zip=$1 prefix=$2 path=$3 dest=$4
    unzip -p "$zip" "$prefix/$path" >"$dir/.$dest.tmp" 2>"$work/err" ||
        die "$prefix has no $path: $(cat "$work/err")"
    [[ -s "$dir/.$dest.tmp" ]] || die "$prefix/$path is empty"
    grep -q '^kind: CustomResourceDefinition' "$dir/.$dest.tmp" ||
        die "$prefix/$path is not a CustomResourceDefinition"
    mv "$dir/.$dest.tmp" "$dir/$dest"
}

m="github.com/aws/karpenter-provider-aws@v$KARPENTER_VERSION"
z=$(module_zip "$m")
extract "$z" "$m" pkg/apis/crds/karpenter.sh_nodepools.yaml nodepools.karpenter.sh.yaml
extract "$z" "$m" pkg/apis/crds/karpenter.k8s.aws_ec2nodeclasses.yaml ec2nodeclasses.karpenter.k8s.aws.yaml

m="github.com/kedacore/keda/v2@v$KEDA_VERSION"
z=$(module_zip "$m")
extract "$z" "$m" config/crd/bases/keda.sh_scaledobjects.yaml scaledobjects.keda.sh.yaml

m="github.com/kyverno/kyverno@v$KYVERNO_VERSION"
z=$(module_zip "$m")
extract "$z" "$m" config/crds/kyverno/kyverno.io_clusterpolicies.yaml clusterpolicies.kyverno.io.yaml

have_all || die "some CRDs are missing from $dir"
echo "$dir"
