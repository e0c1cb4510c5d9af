from jointseg._core.utils import select_device


def test_select_device():
    assert select_device("cpu") == "cpu"
    assert select_device(None) in {"cpu", "cuda", "mps"}
