import gc

from jointseg._core import memory


def test_only_large_steps_pay_for_a_full_collection(monkeypatch):
    collections = []
    monkeypatch.setattr(gc, "collect", lambda *a: collections.append(a) or 0)
    memory.release_memory(step_bytes=memory.COLLECT_ABOVE_BYTES - 1)
    assert collections == []
    memory.release_memory(step_bytes=memory.COLLECT_ABOVE_BYTES)
    memory.release_memory()  # size unknown: always
    assert len(collections) == 2


def test_malloc_arenas_are_limited_where_glibc_is():
    import sys

    assert memory.limit_malloc_arenas(8) is sys.platform.startswith("linux")  # 8: glibc's own per-core default
