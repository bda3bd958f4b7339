"""Process-wide compute settings applied by the flows that train (train, tune, replay).

OpenBLAS starts one busy-waiting thread per core for every matrix product. The
products in coincast are small (tens of thousands of rows x tens of features), so
the threads buy nothing and, beside LightGBM's own threads on a small machine, cost a
lot: the multinomial triple-barrier fit took 3x longer with 2 BLAS threads than with
one (``benchmarks/bench_blas.py`` measures it in one run).
"""

from __future__ import annotations

import logging

from threadpoolctl import threadpool_limits

log = logging.getLogger(__name__)


def limit_blas_threads(n: int | None) -> None:
    """Set the BLAS thread count of this process to ``n`` (None: leave it), for the rest of
    the process: a flow process trains, and nothing else in it needs more."""
    if n is None:
        return
    threadpool_limits(limits=n, user_api="blas")
    log.debug("BLAS threads limited to %d", n)
