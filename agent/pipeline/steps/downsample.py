"""`downsample`: one event per key and interval, the first or the last.

Semantics (docs/pipelines.md), per key (the `key` expression, else the event key):
  * Intervals of length `interval` are aligned to the Unix epoch on the step's clock
    (event or ingest time): an event at time t is in interval t // interval.
  * keep first: the first event of each interval passes at once; the others are
    dropped, counted `downsampled`.
  * keep last: every event is held, replacing (and dropping, `downsampled`) the one
    held before; the held event passes, with its own time, just before the key's
    first event of a later interval, or from `idle` once the key had no event for
    `idle` seconds of processing time (after which a further event of the same
    interval is held again, so that interval can send a second event).
  * An event of an interval before the key's current one (out of order) is dropped,
    counted `out_of_order`, in both modes.
  * An event whose interval is not finite (time NaN or infinite) passes, `bad_time`.
This is the throttle engine with one event per interval: keep first is rate 1 with
the excess dropped, keep last is rate 0 with the newest event held.
"""

from __future__ import annotations

from agent.config.steps import DownsampleStep
from agent.pipeline.expr import compile_expression
from agent.pipeline.steps.throttle import IntervalLimiter, Limits


class Downsample(IntervalLimiter):
    """The `downsample` step; see the module docstring."""

    def __init__(self, step: DownsampleStep) -> None:
        keep_last = step.keep == "last"
        super().__init__(
            Limits(
                per=step.interval,
                rate=0 if keep_last else 1,
                hold=keep_last,
                key=None if step.key is None else compile_expression(step.key),
                use_ingest_time=step.time == "ingest",
                idle=step.idle,
                limited="downsampled",
            )
        )
