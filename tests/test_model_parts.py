"""The float head (`quantize.ptq.head_modules`) and the sensitivity units (`quantize.ptq.units`)
come from timm's own description of a model (its feature_info), never from one model's names: checked
on families with different layouts. Random weights: only the structure matters here."""

from __future__ import annotations

import pytest

# model, timm kwargs, the head expected (top-level children after the last feature stage)
CASES = [
    ("fbnetv3_b", {}, ("global_pool", "conv_head", "norm_head", "act2", "flatten", "classifier")),
    ("resnet18", {}, ("global_pool", "fc")),
    ("regnety_004", {}, ("final_conv", "head")),  # stages s1..s4: no "blocks"/"stages" name to find
    ("convnext_atto", {}, ("norm_pre", "head")),
    ("mobilenetv3_small_100", {"num_classes": 0}, ("global_pool", "conv_head", "norm_head", "act2", "flatten",
                                                   "classifier")),
    ("ghostnetv2_100", {"features_only": True}, ()),  # feature maps out: no head
]


@pytest.mark.parametrize(("name", "kwargs", "head"), CASES, ids=[f"{c[0]}{'-' + next(iter(c[1]), '')}"
                                                                 for c in CASES])
def test_head_and_units_come_from_timm(name: str, kwargs: dict, head: tuple[str, ...]) -> None:
    import timm

    from quantize.ptq import head_modules, units

    model = timm.create_model(name, pretrained=False, **kwargs)
    assert head_modules(model) == head
    parts = units(model)
    assert len(parts) >= 4 and len(set(parts)) == len(parts)
    # the units partition the model: every parameter in exactly one unit
    owner: dict[str, str] = {}
    for unit in parts:
        for pname, _ in model.get_submodule(unit).named_parameters(prefix=unit):
            assert pname not in owner, f"{pname} in {owner.get(pname)} and {unit}"
            owner[pname] = unit
    assert set(owner) == {n for n, _ in model.named_parameters()}


# -- load_model on families whose layout differs from fbnetv3_b's -------------------------------------
@pytest.mark.parametrize("name", ["levit_128s", "efficientformerv2_s0"])
def test_a_size_dependent_model_is_built_for_the_input_size(name: str) -> None:
    """LeViT's attention biases and EfficientFormerV2's reshapes are built for one size: at 64 px the
    model is created for 64 px (timm's default 224 would not run), and says so."""
    import torch

    from edge.models import ModelSpec, load_model

    m = load_model(ModelSpec(name, weights="random", input_size=64))
    assert m.input_shape == (1, 3, 64, 64)
    assert any("built for 64 px" in n for n in m.notes)
    with torch.no_grad():
        assert m.module(m.example_input()).shape == (1, 1000)


def test_a_plain_cnn_is_not_rebuilt_for_another_size() -> None:
    from edge.models import ModelSpec, load_model

    m = load_model(ModelSpec("resnet18", weights="random", input_size=64))
    assert not any("built for" in n for n in m.notes)


@pytest.mark.parametrize("name", ["convnext_atto", "efficientvit_b0", "efficientformerv2_s0", "levit_128s"])
def test_feature_maps_carry_the_full_models_weights(name: str) -> None:
    """timm's features_only wrappers rename modules (stem.0 -> stem_0) or nest the model (model.): the
    feature maps must be the full model's own intermediates, with its weights."""
    import timm
    import torch

    from edge.models import ModelSpec, load_model

    feats = load_model(ModelSpec(name, weights="random", mode="features", input_size=64))
    torch.manual_seed(0)
    full = timm.create_model(name, pretrained=False, **({"img_size": 64} if name != "convnext_atto"
                                                        and name != "efficientvit_b0" else {})).eval()
    x = feats.example_input(2)
    with torch.no_grad():
        maps = feats.module(x)
        want = full.forward_intermediates(x, intermediates_only=True)
    got = {tuple(t.shape): t for t in maps}
    matched = [w for w in want if tuple(w.shape) in got]
    assert len(matched) >= 3
    for w in matched:
        torch.testing.assert_close(got[tuple(w.shape)], w, rtol=1e-4, atol=1e-4)


def test_a_reparameterizable_model_is_fused_for_inference_only() -> None:
    """MobileOne's train-time branches are fused before export (fewer parameters, the same function,
    recorded in the notes); training (QAT, fine-tuning) keeps the branches."""
    import torch

    from edge.models import ModelSpec, load_model

    spec = ModelSpec("mobileone_s0", weights="random", input_size=64)
    fused, train = load_model(spec), load_model(spec, train=True)
    n = [sum(p.numel() for p in m.module.parameters()) for m in (fused, train)]
    assert n[0] < n[1]
    assert any("re-parameterized" in note for note in fused.notes)
    assert not any("re-parameterized" in note for note in train.notes)
    x = fused.example_input(2)
    with torch.no_grad():
        a, b = fused.module(x), train.module.eval()(x)
    assert float((a - b).norm() / b.norm()) < 1e-4
