"""Boot: read config.json, bring up the board, the radio and the LoRaWAN node, then run the app for the node kind.

A board with `lorawan_modem()` (a RAK3172 on a UART) gets the modem's node (drivers/rak3172.py: the module runs the
LoRaWAN MAC); every other board gets the firmware's own MAC on its radio() (lorawan/node.py). A missing or broken
config, an unknown board or app, or a radio or modem that fails to answer prints one line and stops.

Memory: the GC runs after every GC_THRESHOLD bytes allocated (gc.threshold), so short-lived objects are freed before
they scatter between the modules' code, which stays in the heap for good: less fragmentation, a smaller heap needed.
"""
import gc

from micropython import const

_GC_THRESHOLD = const(2048)
gc.threshold(_GC_THRESHOLD)


def read_config():
    """config.json, or None (one line printed) when it is missing or broken."""
    from config import ConfigError, load_config

    try:
        return load_config()
    except ConfigError as exc:
        print("config: %s; node stopped (install the device config with flash.sh)" % exc)
        return None


def main():
    config = read_config()  # a function of its own: main() runs for good, and its locals stay in the heap
    if config is None:
        return
    modules = []
    for package, name in (("boards", config["board"]), ("apps", config["kind"])):
        try:
            modules.append(__import__("%s.%s" % (package, name), None, None, ("run",)))
        except ImportError as exc:
            print("config: cannot load %s.%s (%s); node stopped" % (package, name, exc))
            return
    board, app = modules
    from store import Store

    store = Store()
    if store.problem:
        print("state: %s; starting from empty state" % store.problem)
    modem = hasattr(board, "lorawan_modem")
    try:
        if modem:
            from drivers.rak3172 import node_from_config

            node = node_from_config(config, board.lorawan_modem)
        else:
            from lorawan.node import node_from_config

            node = node_from_config(config, board.radio, store)
    except (OSError, ValueError) as exc:  # RadioError and ModemError are OSErrors, ConfigError a ValueError
        print("startup: %s; node stopped" % exc)
        return
    if modem:
        lorawan = "RAK3172 modem, %s DevEUI %s" % (config["activation"].upper(), config.get("dev_eui"))
    elif node.mac.activated:
        lorawan = "ABP DevAddr %s, FCntUp from %d" % (config.get("dev_addr"), node.mac.fcnt_up)
    else:
        lorawan = "OTAA DevEUI %s, joins with DevNonce %d" % (config.get("dev_eui"), node.mac.dev_nonce)
    print("DOS Edge %s %s on %s: %s" % (config["kind"], config["asset_id"], config["board"], lorawan))
    try:
        app.run(board, config, node, store)
    except ValueError as exc:  # a bad setting found when the app starts
        print("config: %s; node stopped" % exc)


main()
