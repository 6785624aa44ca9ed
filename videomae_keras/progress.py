"""Progress display for long commands: numbered stages, and tqdm bars for countable work."""

import sys
import time

try:
    from tqdm.auto import tqdm
except ImportError:  # tqdm is a dependency; keep working without bars if it is missing
    tqdm = None


class Stages:
    """Prints `[i/n] name ... done (1.2s)` per stage on stderr; `bar()` gives a tqdm bar."""

    def __init__(self, total, enabled=True, stream=None):
        self.total = total
        self.index = 0
        self.enabled = enabled
        self.stream = stream or sys.stderr

    def run(self, name, function, *args, **kwargs):
        """Runs one stage and reports it."""
        self.index += 1
        start = time.time()
        if self.enabled:
            print(f"[{self.index}/{self.total}] {name} ...", file=self.stream, flush=True)
        result = function(*args, **kwargs)
        if self.enabled:
            print(
                f"[{self.index}/{self.total}] {name}: done in {time.time() - start:.1f}s",
                file=self.stream,
                flush=True,
            )
        return result

    def bar(self, total, description, unit="it", unit_scale=False):
        """A progress bar (or a silent stand-in when disabled or tqdm is missing)."""
        if not self.enabled or tqdm is None:
            return _Silent()
        return tqdm(total=total, desc=description, unit=unit, unit_scale=unit_scale,
                    file=self.stream, leave=False, dynamic_ncols=True)


class _Silent:
    def update(self, n=1):
        pass

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
