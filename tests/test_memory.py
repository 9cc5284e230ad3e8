"""The allocator settings: glibc is told once, other C libraries are left alone."""

import types

import pytest

from retrain.runtime import memory


class FakeLibc:
    def __init__(self):
        self.calls = []

    def mallopt(self, parameter, value):
        self.calls.append(("mallopt", parameter, value))
        return 1  # glibc's success.

    def malloc_trim(self, pad):
        self.calls.append(("malloc_trim", pad))
        return 1


def test_arenas_are_a_quarter_of_the_cores_and_at_least_two(monkeypatch):
    libc = FakeLibc()
    monkeypatch.setattr(memory, "_glibc", lambda: libc)
    for cores, arenas in ((1, 2), (2, 2), (8, 2), (16, 4), (64, 16)):
        assert memory.limit_allocator_arenas(cores) is True
        assert libc.calls[-1] == ("mallopt", -8, arenas)  # M_ARENA_MAX in glibc's malloc.h.
    memory.return_freed_memory()
    assert libc.calls[-1] == ("malloc_trim", 0)


def test_without_glibc_the_library_is_asked_for_and_nothing_called(monkeypatch):
    asked = []
    monkeypatch.setattr(memory, "_glibc", lambda: asked.append("libc"))  # Found none (macOS, musl).
    assert memory.limit_allocator_arenas(16) is False
    memory.return_freed_memory()
    assert asked == ["libc", "libc"]
    monkeypatch.setattr(memory, "_glibc", lambda: types.SimpleNamespace())  # A C library without them.
    assert memory.limit_allocator_arenas(16) is False
    memory.return_freed_memory()


def test_the_real_allocator_accepts_the_settings():
    if memory._glibc() is None:
        pytest.skip("not glibc: nothing to set")
    assert memory.limit_allocator_arenas() is True
    memory.return_freed_memory()
