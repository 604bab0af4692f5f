"""The float head (`quantize.ptq.head_modules`) and the sensitivity units (`edge.report.sensitivity.units`)
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

    from edge.report.sensitivity import units
    from quantize.ptq import head_modules

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
