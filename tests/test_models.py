"""Model loading: modes, weights files (safetensors, weights_only torch files), head inference."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from edge.errors import EdgeError
from edge.models import ModelSpec, load_model

SPEC = ModelSpec(weights="random", input_size=64)


@pytest.fixture(scope="module")
def ten_class_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from safetensors.torch import save_file

    m = load_model(ModelSpec(weights="random", num_classes=10, seed=5))
    path = tmp_path_factory.mktemp("w") / "ten.safetensors"
    save_file({k: v.contiguous() for k, v in m.module.state_dict().items()}, str(path))
    return path


def test_three_modes_have_the_right_outputs() -> None:
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        clf = load_model(SPEC)
        assert clf.module(x).shape == (2, 1000) and clf.labels is not None and len(clf.labels) == 1000
        emb = load_model(ModelSpec(weights="random", input_size=64, mode="embeddings"))
        assert emb.module(x).shape == (2, 1984) and emb.num_classes is None
        feat = load_model(ModelSpec(weights="random", input_size=64, mode="features"))
        outs = feat.module(x)
        assert [o.shape[-1] for o in outs] == [32, 16, 8, 4, 2]
        assert feat.output_names == ["features_s2", "features_s4", "features_s8", "features_s16", "features_s32"]
    assert clf.data_config["input_size"] == (3, 64, 64)
    assert clf.data_config["mean"] == pytest.approx((0.485, 0.456, 0.406))


def test_same_seed_same_weights_and_digest() -> None:
    a, b = load_model(SPEC), load_model(SPEC)
    c = load_model(ModelSpec(weights="random", input_size=64, seed=1))
    assert a.weights_sha256 == b.weights_sha256 != c.weights_sha256


def test_safetensors_head_size_is_inferred(ten_class_file: Path) -> None:
    m = load_model(ModelSpec(weights=str(ten_class_file)))
    assert m.num_classes == 10 and m.labels is None
    assert m.weights_source == f"file:{ten_class_file}" and len(m.weights_sha256) == 64
    ref = load_model(ModelSpec(weights="random", num_classes=10, seed=5))
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(m.module(x), ref.module(x))
    feats = load_model(ModelSpec(weights=str(ten_class_file), mode="features"))
    with torch.no_grad():
        assert len(feats.module(x)) == 5


def test_head_size_mismatch_is_refused(ten_class_file: Path) -> None:
    with pytest.raises(EdgeError, match="does not match the weights file"):
        load_model(ModelSpec(weights=str(ten_class_file), num_classes=100))


def test_torch_state_dict_loads_weights_only(tmp_path: Path, ten_class_file: Path) -> None:
    from safetensors.torch import load_file

    sd = load_file(str(ten_class_file))
    torch.save({"state_dict": {f"module.{k}": v for k, v in sd.items()}}, tmp_path / "ck.pth")
    m = load_model(ModelSpec(weights=str(tmp_path / "ck.pth")))
    assert m.num_classes == 10


class _Evil:
    def __reduce__(self):  # noqa: D105 - a pickle that would run code if loaded without weights_only
        return (print, ("pwned",))


def test_arbitrary_pickle_and_corrupt_files_are_refused(tmp_path: Path) -> None:
    evil = tmp_path / "evil.pth"
    evil.write_bytes(pickle.dumps({"w": _Evil()}))
    with pytest.raises(EdgeError, match="not a plain state dict|not a readable state dict"):
        load_model(ModelSpec(weights=str(evil)))
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(EdgeError, match="not a valid safetensors"):
        load_model(ModelSpec(weights=str(bad)))
    with pytest.raises(EdgeError, match="does not exist"):
        load_model(ModelSpec(weights=str(tmp_path / "missing.pth")))
    wrong = tmp_path / "wrong.safetensors"
    from safetensors.torch import save_file

    save_file({"foo": torch.zeros(3)}, str(wrong))
    with pytest.raises(EdgeError, match="does not fit"):
        load_model(ModelSpec(weights=str(wrong)))


def test_unknown_model_is_a_clear_error() -> None:
    with pytest.raises(EdgeError, match="unknown timm model"):
        load_model(ModelSpec(name="no_such_net_v9", weights="random"))


def test_model_names_read_from_timm_sources_are_timms_registry() -> None:
    """The names checked before timm is imported are exactly the ones timm registers (a timm
    upgrade that registers models another way fails here, not on a user's valid name)."""
    import timm
    from timm.models import _registry

    from edge.models import timm_model_names

    assert timm_model_names() == frozenset(_registry._model_entrypoints)
    assert set(timm.list_models()) <= timm_model_names()


def test_hub_weights_offline_fail_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """No cached file and no hub: one clear error, without the client's retry loop."""
    import time

    from edge.models import hub_reachable

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert not hub_reachable()
    t0 = time.perf_counter()
    with pytest.raises(EdgeError, match="not in the local cache and the hub is unreachable; give a weights file"):
        load_model(ModelSpec(name="test_efficientnet", weights="hub"))
    assert time.perf_counter() - t0 < 10
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HF_ENDPOINT", "https://127.0.0.1:9")  # a closed port: refused at once
    monkeypatch.delenv("HTTPS_PROXY", raising=False)
    monkeypatch.delenv("https_proxy", raising=False)
    assert not hub_reachable()


def test_auto_weights_use_the_local_hub_cache_without_network(tmp_path: Path, ten_class_file: Path) -> None:
    """A real Hugging Face cache layout: `auto` loads from it; an empty cache falls back to random."""
    from safetensors.torch import load_file, save_file

    full = load_model(ModelSpec(weights="random", seed=9))
    snap = tmp_path / "hub" / "models--timm--fbnetv3_b.ra2_in1k" / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in full.module.state_dict().items()}, str(snap / "model.safetensors"))
    (tmp_path / "hub" / "models--timm--fbnetv3_b.ra2_in1k" / "refs").mkdir()
    (tmp_path / "hub" / "models--timm--fbnetv3_b.ra2_in1k" / "refs" / "main").write_text("abc123")
    code = (
        "from edge.models import ModelSpec, load_model; m = load_model(ModelSpec(weights='auto'));"
        "print(m.weights_source, m.weights_sha256, len(m.notes))"
    )
    env = {"HF_HUB_CACHE": str(tmp_path / "hub"), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    src, sha, notes = out.stdout.split()
    assert src == "hub:fbnetv3_b.ra2_in1k" and sha == full.weights_sha256 and notes == "0"
    env["HF_HUB_CACHE"] = str(tmp_path / "empty")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split()[0] == "random:seed=0" and out.stdout.split()[2] == "1"
    del load_file
