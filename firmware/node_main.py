"""The node's program, imported by main.py: main.py stays source on the board (the file a technician reads there) and
is compiled at every boot, with line numbers, into code that stays in the heap for the whole run; this module is
precompiled like the rest, so main.py is one import.

Boot: read config.json, bring up the board, the radio and the LoRaWAN node (startup.py, loaded for that and unloaded
after), set up the app for the node kind (its App takes what it needs from config.json: nothing keeps the config's
dict once the node runs), then run the app. What cannot start, or a bad setting the app finds when it starts, prints
one line and stops the node.

Memory: the GC runs after every GC_THRESHOLD bytes allocated (gc.threshold), so short-lived objects are freed before
they scatter between the modules' code, which stays in the heap for good: less fragmentation, a smaller heap needed
(256 bytes: ~1 KiB less heap than 2048 for the bridge with its radio driver, for ~50% more CPU time in the memory
test's run, small next to a node's sleep and receive windows).
"""
import gc

from micropython import const

from modules import unload

_GC_THRESHOLD = const(256)
gc.threshold(_GC_THRESHOLD)


def node_parts():
    """startup.start()'s (app module, board, config, node, store), or None; the startup code is unloaded after."""
    from startup import start

    try:
        return start()
    finally:
        unload("startup")


def started():
    """(app module, app, node), or None; the config goes with this frame."""
    parts = node_parts()
    if parts is None:
        return None
    app_module, board, config, node, store = parts
    gc.collect()  # boot's garbage freed first: the app's objects, kept for good, take the lowest free blocks
    try:
        return app_module, app_module.App(board, config, store), node
    except ValueError as exc:  # a bad setting found when the app starts
        print("config: %s; node stopped" % exc)
        return None


def main():
    running = started()
    if running is None:
        return
    app_module, app, node = running
    app_module.run(app, node)


main()
