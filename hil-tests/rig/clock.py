"""The rig's virtual clock and scheduler (µs).

Timers fire in virtual time order. The clock advances to the next timer only when no participant blocks it (a board that is
awake and running) and no hold caps it: a participant reports until which wall-clock instant it blocks (`blocking_until`), so
a board at its REPL or hung stops blocking after a real-time stall limit. A hold (the packet forwarder waiting for the agent's
answer to an uplink) keeps the clock from passing `limit_us` until it is released or its real-time grace runs out.
`speed` (virtual seconds per wall second) paces the clock; None runs it as fast as the participants allow.

`step(wall_now)` is the whole decision (sans-IO: wall time in, timers fired and seconds-to-wait out); `run()` drives it on
asyncio, woken early by `notify()` whenever something the decision depends on changed.
"""
from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import time
from typing import Callable, Protocol


class Participant(Protocol):
    """Something that can hold the clock while it runs (a board)."""

    def blocking_until(self, wall_now: float) -> float | None:
        """The wall-clock instant until which it blocks the clock, or None when it does not block now."""


class Timer:
    """A callback scheduled at a virtual instant; `cancel()` it to drop it."""

    __slots__ = ("t_us", "seq", "callback", "args", "cancelled")

    def __init__(self, t_us: int, seq: int, callback: Callable, args: tuple):
        self.t_us, self.seq, self.callback, self.args, self.cancelled = t_us, seq, callback, args, False

    def cancel(self) -> None:
        self.cancelled = True

    def __lt__(self, other: "Timer") -> bool:
        return (self.t_us, self.seq) < (other.t_us, other.seq)


class Hold:
    """Keeps the clock at or before `limit_us` until released or until the wall-clock `deadline` passes."""

    __slots__ = ("limit_us", "deadline", "released", "reason", "clock")

    def __init__(self, clock: "VirtualClock", limit_us: int, deadline: float, reason: str):
        self.clock, self.limit_us, self.deadline, self.reason, self.released = clock, limit_us, deadline, reason, False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.clock.notify()


class VirtualClock:
    """Virtual µs clock with timers, participants that block it while awake, holds, and optional pacing."""

    def __init__(self, speed: float | None = None, wall: Callable[[], float] = time.monotonic, start_us: int = 0):
        if speed is not None and speed <= 0:
            raise ValueError("speed must be positive (virtual seconds per wall second) or None")
        self.speed = speed
        self.wall = wall
        self.now_us = start_us
        self._timers: list[Timer] = []
        self._seq = itertools.count()
        self._participants: list[Participant] = []
        self._holds: list[Hold] = []
        self._anchor: tuple[float, int] | None = None  # (wall, virtual) the pacing counts from
        self._wakeup: asyncio.Future | None = None
        self.holds_expired = 0  # holds whose real-time grace ran out before release

    # --- scheduling -------------------------------------------------------------------------------------------------
    def call_at(self, t_us: int, callback: Callable, *args) -> Timer:
        """Run callback(*args) when the clock reaches t_us (at once, at the current instant, if t_us is past)."""
        timer = Timer(max(int(t_us), self.now_us), next(self._seq), callback, args)
        heapq.heappush(self._timers, timer)
        self.notify()
        return timer

    def call_later(self, delay_us: int, callback: Callable, *args) -> Timer:
        return self.call_at(self.now_us + int(delay_us), callback, *args)

    def hold(self, limit_us: int, grace_s: float, reason: str = "") -> Hold:
        """Keep the clock from passing limit_us until the hold is released or grace_s of wall time passed."""
        hold = Hold(self, int(limit_us), self.wall() + grace_s, reason)
        self._holds.append(hold)
        self.notify()
        return hold

    def add_participant(self, participant: Participant) -> None:
        self._participants.append(participant)
        self.notify()

    def remove_participant(self, participant: Participant) -> None:
        if participant in self._participants:
            self._participants.remove(participant)
        self.notify()

    def notify(self) -> None:
        """Something the clock's decision depends on changed: decide again now."""
        wakeup = self._wakeup
        if wakeup is not None and not wakeup.done():
            wakeup.set_result(None)

    # --- the decision -----------------------------------------------------------------------------------------------
    def _next_timer_us(self) -> int | None:
        while self._timers and self._timers[0].cancelled:
            heapq.heappop(self._timers)
        return self._timers[0].t_us if self._timers else None

    def run_due(self) -> int:
        """Fire every timer due at the current instant (including ones those timers add). Returns how many fired."""
        fired = 0
        while True:
            t = self._next_timer_us()
            if t is None or t > self.now_us:
                return fired
            timer = heapq.heappop(self._timers)
            timer.callback(*timer.args)
            fired += 1

    def step(self, wall_now: float) -> float | None:
        """Fire due timers, advance the clock if allowed; return the wall seconds to wait before the next step
        (0: step again at once; None: nothing to do until notified)."""
        self.run_due()
        waits: list[float] = []
        blocked = False
        for participant in self._participants:
            until = participant.blocking_until(wall_now)
            if until is not None and until > wall_now:
                blocked = True
                waits.append(until - wall_now)
        cap = None
        active = []
        for hold in self._holds:
            if hold.released:
                continue
            if hold.deadline <= wall_now:
                self.holds_expired += 1
                continue
            active.append(hold)
            waits.append(hold.deadline - wall_now)
            cap = hold.limit_us if cap is None else min(cap, hold.limit_us)
        self._holds = active
        if blocked:
            self._anchor = None
            return min(waits)
        next_t = self._next_timer_us()
        goal = math.inf if next_t is None else next_t
        if cap is not None:
            goal = min(goal, cap)
        if goal <= self.now_us:  # held at the cap: time stands still until the hold goes
            self._anchor = None
            return min(waits) if waits else None
        if self.speed is None:
            if goal == math.inf:
                return min(waits) if waits else None
            self.now_us = int(goal)
            return 0.0
        if self._anchor is None:
            self._anchor = (wall_now, self.now_us)
        anchor_wall, anchor_virtual = self._anchor
        allowed = anchor_virtual + (wall_now - anchor_wall) * self.speed * 1e6
        new_now = int(min(goal, allowed))
        if new_now > self.now_us:
            self.now_us = new_now
        if self.now_us >= goal:
            return 0.0
        pace = 0.01 if goal == math.inf else min(0.01, (goal - self.now_us) / (self.speed * 1e6))
        return min([pace] + waits)

    async def run(self) -> None:
        """Drive step() forever on the running loop (cancel the task to stop)."""
        loop = asyncio.get_running_loop()
        while True:
            self._wakeup = loop.create_future()
            wait = self.step(self.wall())
            if wait == 0.0:
                self._wakeup = None
                await asyncio.sleep(0)
                continue
            handle = None if wait is None else loop.call_later(wait, self.notify)
            try:
                await self._wakeup
            finally:
                self._wakeup = None
                if handle is not None:
                    handle.cancel()
