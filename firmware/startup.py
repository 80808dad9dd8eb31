"""What main.py does once at boot, loaded for that and unloaded after (code of a loaded module stays in the heap): read
config.json, import the board and the app for the node kind, open the store, bring up the radio and the LoRaWAN node.

A board with `lorawan_modem()` (a RAK3172 on a UART) gets the modem's node (drivers/rak3172.py: the module runs the
LoRaWAN MAC); every other board gets the firmware's own MAC on its radio() (lorawan/node.py). A missing or broken
config, an unknown board or app, or a radio or modem that fails to answer prints one line and stops the node.
"""


def start():
    """(app module, board module, config, node, store), the parts the app is set up with; None when the node cannot
    start (one line printed)."""
    from config import ConfigError, load_config

    try:
        config = load_config()
    except ConfigError as exc:
        print("config: %s; node stopped (install the device config with flash.sh)" % exc)
        return None
    modules = []
    for package, name in (("boards", config["board"]), ("apps", config["kind"])):
        try:
            modules.append(__import__("%s.%s" % (package, name), None, None, ("run",)))
        except ImportError as exc:
            print("config: cannot load %s.%s (%s); node stopped" % (package, name, exc))
            return None
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
        return None
    if modem:
        lorawan = "RAK3172 modem, %s DevEUI %s" % (config["activation"].upper(), config.get("dev_eui"))
    elif node.mac.activated:
        lorawan = "ABP DevAddr %s, FCntUp from %d" % (config.get("dev_addr"), node.mac.fcnt_up)
    else:
        lorawan = "OTAA DevEUI %s, joins with DevNonce %d" % (config.get("dev_eui"), node.mac.dev_nonce)
    print("DOS Edge %s %s on %s: %s" % (config["kind"], config["asset_id"], config["board"], lorawan))
    return app, board, config, node, store
