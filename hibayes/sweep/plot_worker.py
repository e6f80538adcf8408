"""A fit's plots drawn in a worker process while the sweep's next fit runs.

Drawing and saving a fit's four figures costs about 1.5 s of one core, over
half of what a fit in a warm sweep costs besides sampling. Matplotlib holds the
GIL while it draws, so a thread would not overlap it with anything; a spawned
process does, on the machine's other core. The worker imports ArviZ and
matplotlib while the sweep's first fit compiles, ignores Ctrl-C (its parent
decides what an interrupt means), exits as soon as its parent is gone (even after
a SIGKILL), and draws whatever it is sent, one fit at a time. A worker that dies
costs nothing but time: the plots are then drawn here.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
import warnings
from collections import deque
from concurrent.futures import CancelledError, Future, ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any

from hibayes.system.processes import die_with_parent

__all__ = ["PlotWorker", "draw_fit_plots", "plot_inputs", "wait_for_plots"]

log = logging.getLogger(__name__)

# What the fit plots read; the log-likelihood and prior draws are left behind.
_PLOTTED_GROUPS = (
    "posterior",
    "sample_stats",
    "posterior_predictive",
    "observed_data",
    "constant_data",
    "cross_validation",
)  # the last: the LOO-PIT plot


def plot_inputs(idata: Any) -> Any:
    """The part of a fit's InferenceData the fit plots read (sent to the worker)."""
    import arviz as az

    with warnings.catch_warnings():
        warnings.simplefilter(
            "ignore", UserWarning
        )  # cross_validation: not ArviZ's name
        return az.InferenceData(
            **{g: idata[g] for g in _PLOTTED_GROUPS if g in idata.groups()}
        )


def draw_fit_plots(idata: Any, plots_dir: Path, loo: Any) -> tuple[list[Path], float]:
    """Save the fit's plots; return the files written and the seconds it took."""
    from hibayes.plots import save_fit_plots

    start = time.perf_counter()
    written = save_fit_plots(idata, plots_dir, loo=loo)
    return written, time.perf_counter() - start


def _start_worker(parent_pid: int) -> None:
    # A sweep killed hard (SIGKILL, OOM killer) cannot stop its worker: it goes too,
    # and with it the last holder of multiprocessing's resource tracker pipe.
    die_with_parent(parent_pid)
    # Ctrl-C reaches the whole process group: the parent ends the runs, the worker
    # finishes the plot in hand.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import hibayes.plots  # noqa: F401 - ArviZ and matplotlib, before the first plot


class PlotWorker:
    """One spawned process that draws fit plots in the order they are sent.

    Only one fit at a time is in the process's hands; the rest wait here, so a
    caller can still take one back (``future.cancel()``) and draw it itself.
    """

    def __init__(self) -> None:
        # spawn, not fork: the parent runs JAX's threads, which a fork would copy mid-work.
        self._pool = ProcessPoolExecutor(
            max_workers=1,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_worker,
            initargs=(os.getpid(),),
        )
        self._waiting: deque[tuple[Future, tuple]] = deque()
        self._busy = False
        self._lock = threading.Lock()

    def submit(self, idata: Any, plots_dir: Path, loo: Any) -> Future:
        """Queue a fit's plots for the worker; the future gives ``(files, seconds)``.

        A worker that has died fails the future (``BrokenProcessPool``) instead of
        raising here: :func:`wait_for_plots` then draws the plots in this process.
        """
        future: Future = Future()
        with self._lock:
            self._waiting.append((future, (plot_inputs(idata), Path(plots_dir), loo)))
        self._next()
        return future

    def _next(self) -> None:
        """Hand the worker the next fit still wanted, if it is idle."""
        with self._lock:
            if self._busy:
                return
            while self._waiting:
                future, args = self._waiting.popleft()
                if future.set_running_or_notify_cancel():  # False: taken back
                    break
            else:
                return
            self._busy = True
        try:
            drawing = self._pool.submit(draw_fit_plots, *args)
        except BaseException as exc:  # a broken pool: the caller draws them itself
            self._done(future, None, exc)
            return
        drawing.add_done_callback(lambda done: self._done(future, done, None))

    def _done(
        self, future: Future, drawing: Future | None, error: BaseException | None
    ) -> None:
        if drawing is not None:
            error = drawing.exception()
        if error is None:
            future.set_result(drawing.result())
        else:
            future.set_exception(error)
        with self._lock:
            self._busy = False
        self._next()

    def close(self, wait: bool = True) -> None:
        """Stop the worker once it has drawn the fit in hand (waiting for it if ``wait``)."""
        with self._lock:
            for future, _ in self._waiting:
                future.cancel()
            self._waiting.clear()
        self._pool.shutdown(wait=wait)


def wait_for_plots(
    plots: Future,
    idata: Any,
    loo: Any,
    plots_dir: Path,
    timeout: float | None = None,
    prefix: str = "",
) -> float | None:
    """Wait for plots sent to the worker, drawing them here if it failed or never
    started them; the seconds they took, or ``None`` past ``timeout``."""
    try:
        return plots.result(timeout=timeout)[1]
    except FutureTimeout:
        log.warning(
            "%splots for %s not drawn within %.0f s: the run closes without them",
            prefix,
            plots_dir,
            timeout,
        )
        return None
    except CancelledError:  # taken back from the worker's queue by the sweep
        pass
    except Exception as exc:  # noqa: BLE001 - the worker died: draw them here
        log.warning(
            "%splot worker failed (%s: %s); drawing the plots here",
            prefix,
            type(exc).__name__,
            exc,
        )
    return draw_fit_plots(idata, plots_dir, loo)[1]
