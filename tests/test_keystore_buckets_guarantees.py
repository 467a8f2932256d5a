"""The guarantees' end-to-end tests again, on a bucketed store.

A gateway's store holds a handful of SIMs in these tests, which keeps it a
single file (keystore_buckets.INLINE_MAX).  Here the threshold is 0 in this
process and, through a sitecustomize on the commands' PYTHONPATH, in every
`mtcd` and `mtcctl` the tests run: every store they write is bucketed.  The
teardown checks that the store each test left is a bucketed one.
"""

from __future__ import annotations

import json
import os

import pytest

import conftest
import test_keystore_rollback
import test_lifecycle
import test_review_forget_mid_pairing
import test_review_stage_during_rotation
from mtcd import keystore_buckets


class BucketedGateway(conftest.Gateway):
    @property
    def env(self) -> dict[str, str]:
        env = super().env
        site = self.root / "bucketed-site"
        if not site.exists():
            site.mkdir()
            (site / "sitecustomize.py").write_text(
                "import mtcd.keystore_buckets\nmtcd.keystore_buckets.INLINE_MAX = 0\n")
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(site), env.get("PYTHONPATH")) if p)
        return env


@pytest.fixture
def gateway(tmp_path, monkeypatch):
    monkeypatch.setattr(keystore_buckets, "INLINE_MAX", 0)
    gw = BucketedGateway(tmp_path)
    yield gw
    store = gw.state_dir / "keystore.json"
    if store.exists():
        doc = json.loads(store.read_text())
        assert doc["format"] == "mtcd-keystore/3" and (gw.state_dir / "keystore.d").is_dir()


# The store's own logic (latches, unsettled candidates) does not depend on the
# layout and is tested once; these are the ones whose processes race or are
# cut around the store's writes (about 50 s of the suite).
for _module in (test_lifecycle, test_review_forget_mid_pairing, test_review_stage_during_rotation):
    for _name, _test in vars(_module).items():
        if _name.startswith("test_") and callable(_test):
            globals()[f"test_{_module.__name__[5:]}__{_name[5:]}"] = _test
test_keystore_rollback__restored_store_never_re_presents_a_rejected_pin = \
    test_keystore_rollback.test_restored_store_never_re_presents_a_rejected_pin
