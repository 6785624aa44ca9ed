"""Handing memory back to the system while large models are built and loaded.

Two things make a load cost more than its weights even when no copy is kept: pages of a
memory-mapped checkpoint stay resident (and counted in the process' memory) while the file
stays mapped, and glibc keeps freed blocks in its heap instead of returning them. Both are
Linux matters; elsewhere these helpers do nothing.
"""

import ctypes
import mmap
import sys


class FreedMemory:
    """Hands memory that `free` kept back to the system every `every` bytes counted.

    Building a model with placeholders and then assigning its weights one tensor at a time
    frees a buffer per tensor while new ones of other sizes arrive, and glibc keeps such
    freed blocks in its heap, where they still count in the process' memory (on JAX a ViT-B
    load peaked at 1.9x its weights, 1.4x with this). `malloc_trim` returns them; elsewhere
    (not Linux, or not glibc) nothing happens.
    """

    def __init__(self, every=64 * 2**20):
        self.every, self.pending = every, 0

    def count(self, nbytes):
        self.pending += nbytes
        if self.pending >= self.every:
            self.trim()

    def trim(self):
        self.pending = 0
        trim = _malloc_trim()
        if trim is not None:
            trim(0)


def _malloc_trim():
    global _trim
    if _trim is False:
        try:
            _trim = ctypes.CDLL(None).malloc_trim if sys.platform.startswith("linux") else None
        except AttributeError:  # not glibc (e.g. musl)
            _trim = None
    return _trim


_trim = False

_MADV_DONTNEED = 4  # Linux
_libc = None


def release_pages(address, nbytes):
    """Drops the resident pages wholly inside [address, address + nbytes) of a private,
    read-only file mapping from this process (Linux; elsewhere nothing happens). Only for
    memory that maps a file and was never written: anonymous memory would read back as zeros.
    """
    global _libc
    if not sys.platform.startswith("linux") or nbytes <= 0:
        return
    page = mmap.PAGESIZE
    start = -(-address // page) * page
    end = (address + nbytes) // page * page
    if end <= start:
        return
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    _libc.madvise(start, end - start, _MADV_DONTNEED)  # advisory: a failure only costs memory
