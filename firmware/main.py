"""Boot: read config.json, bring up the board, the radio and the LoRaWAN node (startup.py, loaded for that and
unloaded after), then run the app for the node kind. What cannot start, or a bad setting the app finds when it starts,
prints one line and stops the node.

Memory: the GC runs after every GC_THRESHOLD bytes allocated (gc.threshold), so short-lived objects are freed before
they scatter between the modules' code, which stays in the heap for good: less fragmentation, a smaller heap needed.
"""
import gc

from micropython import const

from modules import unload

_GC_THRESHOLD = const(2048)
gc.threshold(_GC_THRESHOLD)


def started():
    """startup.start()'s (app, board, config, node, store), or None; the startup code is unloaded after."""
    from startup import start

    try:
        return start()
    finally:
        unload("startup")


def main():
    node_parts = started()
    if node_parts is None:
        return
    app, board, config, node, store = node_parts
    try:
        app.run(board, config, node, store)
    except ValueError as exc:  # a bad setting found when the app starts
        print("config: %s; node stopped" % exc)


main()
