"""The allocator settings: glibc is told once, other C libraries are left alone."""

from retrain.runtime import memory


class FakeLibc:
    def __init__(self):
        self.calls = []

    def mallopt(self, parameter, value):
        self.calls.append(("mallopt", parameter, value))
        return 1

    def malloc_trim(self, pad):
        self.calls.append(("malloc_trim", pad))
        return 1


def test_arenas_are_a_quarter_of_the_cores_and_at_least_two(monkeypatch):
    libc = FakeLibc()
    monkeypatch.setattr(memory, "_glibc", lambda: libc)
    for cores, arenas in ((1, 2), (2, 2), (8, 2), (16, 4), (64, 16)):
        memory.limit_allocator_arenas(cores)
        assert libc.calls[-1] == ("mallopt", -8, arenas)  # M_ARENA_MAX in glibc's malloc.h.
    memory.return_freed_memory()
    assert libc.calls[-1] == ("malloc_trim", 0)


def test_without_glibc_nothing_is_called(monkeypatch):
    monkeypatch.setattr(memory, "_glibc", lambda: None)
    memory.limit_allocator_arenas(16)
    memory.return_freed_memory()


def test_the_real_allocator_accepts_the_settings():
    memory.limit_allocator_arenas()
    memory.return_freed_memory()
