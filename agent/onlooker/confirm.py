"""When face counts mean an onlooker (docs/onlooker.md). Pure: counts and monotonic times in, decisions out.

A detector misses a face now and then, and now and then sees one in a poster or a pattern; one frame must not
cover the worker's windows, and one missed frame must not uncover them. So:

- an onlooker is *confirmed* once more faces than allowed have been seen in every frame for ``confirm``
  seconds (the first such frame starts the window; any frame with no more than the allowed faces ends it);
- a confirmed onlooker is *cleared* once no more than the allowed faces have been seen in every frame for
  ``clear_after`` seconds.

While a change is being confirmed (either way) :attr:`Decision.pending` is True: the guard then looks at frames
faster (:data:`CONFIRM_RATE`), so that confirming costs a fraction of a second, not a few low-rate frames.
"""

from __future__ import annotations

from dataclasses import dataclass

# Frames per second while a change is being confirmed (the policy's frame_rate applies otherwise).
CONFIRM_RATE = 10


@dataclass(frozen=True)
class Decision:
    onlooker: bool  # an onlooker is confirmed right now
    changed: bool  # this frame confirmed or cleared one
    faces: int  # faces in this frame
    most: int  # most faces seen since the onlooker was first seen (the count events carry)
    pending: bool  # a change is being confirmed: look faster
    duration: float  # seconds the onlooker lasted, on the frame that cleared it; else 0


class OnlookerMachine:
    """Confirmation and clearing of an onlooker over a stream of face counts."""

    def __init__(self, allowed: int, confirm: float, clear_after: float) -> None:
        if allowed < 0 or confirm < 0 or clear_after < 0:
            raise ValueError("allowed, confirm and clear_after must not be negative")
        self.allowed = allowed
        self.confirm = confirm
        self.clear_after = clear_after
        self.onlooker = False
        self._since: float | None = None  # first frame of the change being confirmed
        self._confirmed_at = 0.0
        self._most = 0

    def update(self, faces: int, now: float) -> Decision:
        """One frame's face count at monotonic time ``now``."""
        over = faces > self.allowed
        changed = False
        duration = 0.0
        if over != self.onlooker:
            if self._since is None:
                self._since = now
                if not self.onlooker:
                    self._most = 0
            if over:
                self._most = max(self._most, faces)
            if now - self._since >= (self.confirm if over else self.clear_after):
                changed = True
                self.onlooker = over
                self._since = None
                if over:
                    self._confirmed_at = now
                else:
                    duration = now - self._confirmed_at
        else:
            self._since = None  # the frame agrees with the current state: any change being confirmed ends
            if over:
                self._most = max(self._most, faces)
        return Decision(
            onlooker=self.onlooker,
            changed=changed,
            faces=faces,
            most=self._most,
            pending=self._since is not None,
            duration=duration,
        )

    def reset(self) -> Decision | None:
        """The camera stopped: forget what was seen. Returns the clearing decision when an onlooker was
        confirmed (the caller lifts the cover and says why), else None."""
        was = self.onlooker
        self.onlooker = False
        self._since = None
        if not was:
            return None
        return Decision(False, True, 0, self._most, False, 0.0)
