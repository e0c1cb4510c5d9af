from dataclasses import dataclass, field

import pytest

from jointseg._core.config import check_positive, config_dict, resolve_config


@dataclass(frozen=True)
class Inner:
    widths: tuple[int, ...] = (8, 16)


@dataclass(frozen=True)
class Demo:
    lr: float = 1e-3
    inner: Inner = field(default_factory=Inner)

    def __post_init__(self):
        check_positive(self, "lr")


def test_legacy_keywords_update_the_config_with_a_warning():
    with pytest.warns(FutureWarning, match=r"demo: pass \['lr'\] as config=Demo"):
        config = resolve_config(Demo, Demo(inner=Inner((4,))), {"lr": 0.5}, method="demo")
    assert config == Demo(lr=0.5, inner=Inner((4,)))


def test_no_legacy_keywords_no_warning(recwarn):
    assert resolve_config(Demo, None, {}, method="demo") == Demo()
    assert not recwarn.list


def test_unknown_keywords_and_wrong_config_types_are_refused():
    with pytest.raises(TypeError, match=r"demo\(\) got unexpected keyword arguments \['nope'\]"):
        resolve_config(Demo, None, {"nope": 1}, method="demo")
    with pytest.raises(TypeError, match="config must be a Demo, got Inner"):
        resolve_config(Demo, Inner(), {}, method="demo")


def test_values_are_checked_when_set_either_way():
    with pytest.raises(ValueError, match="lr must be > 0, got -1"):
        Demo(lr=-1)
    with pytest.raises(ValueError, match="lr must be > 0"), pytest.warns(FutureWarning):
        resolve_config(Demo, None, {"lr": 0}, method="demo")


def test_config_dict_is_plain_json():
    assert config_dict(Demo()) == {"lr": 1e-3, "inner": {"widths": [8, 16]}}
