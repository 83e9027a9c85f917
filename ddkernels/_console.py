"""Console output: a progress line on stderr for long loops (redrawn in place on a terminal; elsewhere, in a log
or a pipe, one plain line every ``log_every`` seconds, LOG_EVERY by default) and plain-text tables.

tqdm is not used: off a terminal it still redraws its bar with carriage returns, which a log file shows as one
ever-growing line; a log here gets one plain, complete line every LOG_EVERY seconds.
"""
import sys
import time

LOG_EVERY = 10.0  # seconds between plain progress lines off a terminal


class Progress:
    """Wraps an iterable (or, with ``iterable=None``, counts ``update()`` calls up to ``total``);
    ``set(**values)`` adds values (e.g. the current loss) to the line, ``close()`` draws the final one."""

    def __init__(self, iterable, description, total=None, enabled=True, log_every=LOG_EVERY):
        self.iterable = iterable
        self.description = description
        self.total = len(iterable) if total is None and hasattr(iterable, "__len__") else total
        self.stream = sys.stderr
        terminal = self.stream.isatty()
        self.enabled = enabled and (terminal or log_every is not None)
        self.interval = 0.2 if terminal else log_every
        self.line_start, self.line_end = ("\r", "\033[K") if terminal else ("", "\n")
        self.values = {}
        self.count = 0
        self.start = time.perf_counter()
        self.last_draw = 0.0
        self.closed = False

    def set(self, **values):
        self.values.update(values)

    def _draw(self, final=False):
        now = time.perf_counter()
        if not final and now - self.last_draw < self.interval:
            return
        self.last_draw = now
        elapsed = now - self.start
        done = f"{self.count}/{self.total}" if self.total else f"{self.count}"
        eta = ""
        if self.total and self.count and not final:
            eta = f" eta {elapsed / self.count * (self.total - self.count):.0f}s"
        values = "".join(f" {k}={v:.4g}" if isinstance(v, float) else f" {k}={v}" for k, v in self.values.items())
        self.stream.write(f"{self.line_start}{self.description}: {done} {elapsed:.0f}s{eta}{values}{self.line_end}")
        if final and self.line_end != "\n":
            self.stream.write("\n")
        self.stream.flush()

    def update(self, count=1):
        self.count += count
        if self.enabled:
            self._draw()

    def close(self):
        if self.enabled and not self.closed:
            self._draw(final=True)
        self.closed = True

    def __iter__(self):
        try:
            for item in self.iterable:
                yield item
                self.update()
        finally:
            self.close()


def print_table(header, rows):
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    for r in [header, tuple("-" * w for w in widths)] + rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)))
