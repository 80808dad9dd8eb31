"""Boot: read config.json, bring up the board, the radio and the LoRaWAN node, then run the app for the node kind.

A missing or broken config, an unknown board or app, or a radio that fails its self-test prints one line and stops.
"""


def main():
    from config import ConfigError, load_config

    try:
        config = load_config()
    except ConfigError as exc:
        print("config: %s; node stopped (install the device config with flash.sh)" % exc)
        return
    modules = []
    for package, name in (("boards", config["board"]), ("apps", config["kind"])):
        try:
            modules.append(__import__("%s.%s" % (package, name), None, None, ("run",)))
        except ImportError as exc:
            print("config: cannot load %s.%s (%s); node stopped" % (package, name, exc))
            return
    board, app = modules
    from lorawan.node import node_from_config
    from store import Store

    store = Store()
    if store.problem:
        print("state: %s; starting from empty state" % store.problem)
    try:
        node = node_from_config(config, board.radio, store)
    except (OSError, ValueError) as exc:  # RadioError is an OSError, ConfigError a ValueError
        print("startup: %s; node stopped" % exc)
        return
    if node.mac.activated:
        lorawan = "ABP DevAddr %s, FCntUp from %d" % (config.get("dev_addr"), node.mac.fcnt_up)
    else:
        lorawan = "OTAA DevEUI %s, joins with DevNonce %d" % (config.get("dev_eui"), node.mac.dev_nonce)
    print("DOS Edge %s %s on %s: %s" % (config["kind"], config["asset_id"], config["board"], lorawan))
    try:
        app.run(board, config, node, store)
    except ValueError as exc:  # a bad setting found when the app starts
        print("config: %s; node stopped" % exc)


main()
