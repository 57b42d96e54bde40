"""A progress bar on the terminal for the import/export commands, drawn from the job's
own progress row (the same numbers the API and admin show)."""

from __future__ import annotations

import time
from typing import TextIO

from jobs.models import TransferJob

WIDTH = 30
REDRAW_SECS = 0.2


class ProgressBar:
    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._drawn = 0.0
        self._phase = ""

    def __call__(self, job: TransferJob) -> None:
        now = time.monotonic()
        if job.phase == self._phase and now - self._drawn < REDRAW_SECS and job.done < job.total:
            return
        if self._phase and job.phase != self._phase:
            self.stream.write("\n")
        self._drawn, self._phase = now, job.phase
        share = min(job.done / job.total, 1.0) if job.total else 0.0
        bar = "#" * int(share * WIDTH)
        self.stream.write(f"\r{job.phase:<14} [{bar:<{WIDTH}}] {job.done}/{job.total} {share:6.1%}")
        self.stream.flush()

    def finish(self) -> None:
        if self._phase:
            self.stream.write("\n")
            self.stream.flush()
