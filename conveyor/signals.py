"""Signal handlers through signal.set_wakeup_fd (filled in by the signals work)."""

from __future__ import annotations


def add_signal_handler(loop, sig, callback, *args):
    raise NotImplementedError("add_signal_handler is not implemented yet")


def remove_signal_handler(loop, sig):
    raise NotImplementedError("remove_signal_handler is not implemented yet")
