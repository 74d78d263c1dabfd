"""Fixtures for the helm driver's tests and the policies/ checks: one real API server (etcd +
kube-apiserver, tests/peers/kube_cluster.py) for the session, the helm binary that
tests/peers/kube.sh builds beside it, and per test a folder with a stack and its state,
driven through the built mlengine binary (helmlib.Stack).

The cluster is shared, so every test names its releases and namespaces after itself (the
`names` fixture).
"""
import pathlib
import re
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "peers"))

from helmlib import Stack  # noqa: E402
from kube_cluster import kube_cluster  # noqa: E402,F401  (the session fixture)


@pytest.fixture
def stack(tmp_path, kube_cluster):
    return Stack(tmp_path, kube_cluster)


@pytest.fixture
def names(request):
    """A short, DNS-safe name unique to this test, for releases and namespaces."""
    n = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower().replace("test_", "")).strip("-")
    return ("h-" + n)[:40].strip("-")
