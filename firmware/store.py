"""Small persistent state for the node (one JSON file, written atomically: temp file + rename).

Frame counters use a flash-friendly lease: the file holds a limit above every FCntUp ever sent. At boot the node resumes at
that limit and moves it ahead by FCNT_STEP; while running it writes only when a counter reaches the limit, so the flash sees
one write per FCNT_STEP uplinks (plus one per boot) and a reboot never reuses a counter. An OTAA join starts the lease
again at 0 for the new session. The next DevNonce is written before each JoinRequest leaves (one write per join attempt),
so not even a crash between the write and the radio reuses one. App state (energy, remote settings) rides along.
"""
import json
import os

from micropython import const

from modules import unload

_FCNT_STEP = const(32)


class Store:
    """Key/value state kept in `path` (default state.json in the board's root)."""

    def __init__(self, path="state.json", fcnt_step=_FCNT_STEP):
        from store_read import read_state  # at boot only: unloaded after

        self.path = path
        self.fcnt_step = fcnt_step
        self.writes = 0
        try:  # `problem`: what went wrong reading the file, for one log line
            self.data, self.problem = read_state(path)
        finally:
            unload("store_read")
        # the state dict's own methods, bound (no methods of ours): get(key, default=None) a value; put(key, value)
        # changes one in memory, flush() writes it
        self.get, self.put = self.data.get, self.data.__setitem__

    def flush(self, **changes):
        """Write the whole state atomically, `changes` ({key: value}) put in first."""
        self.data.update(changes)
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.data, f)
        try:
            os.rename(tmp, self.path)
        except OSError:  # a filesystem that will not rename over an existing file
            os.remove(self.path)
            os.rename(tmp, self.path)
        self.writes += 1

    def boot_fcnt_up(self):
        """The FCntUp to resume from at boot (past any counter used before), with the lease moved ahead and saved."""
        start = self.data.get("fcnt_up_limit", 0)
        self.flush(fcnt_up_limit=start + self.fcnt_step)
        return start

    def reserve_fcnt_up(self, fcnt):
        """Call before sending a frame with counter `fcnt`: extends (and saves) the lease when `fcnt` reaches it."""
        if fcnt >= self.data.get("fcnt_up_limit", 0):
            self.flush(fcnt_up_limit=fcnt + self.fcnt_step)

    def start_session(self):
        """A new OTAA session begins at FCnt 0: lease its first counters and reset FCntDown, in one write."""
        self.flush(fcnt_up_limit=self.fcnt_step, fcnt_down=0)

    def use_dev_nonce(self, dev_nonce):
        """Call before a JoinRequest with `dev_nonce` leaves: saves dev_nonce + 1 as the next DevNonce."""
        self.flush(dev_nonce=dev_nonce + 1)
