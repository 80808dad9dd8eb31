"""On-device self-test for the installer: `import selftest` prints one line, "selftest ok: ..." or "selftest FAILED:
...". It checks the radio (SX1276 RegVersion, LoRa mode; or a RAK3172 modem's AT+VER on a board with lorawan_modem())
and which devices answer on the sensor bus; it reads no sensor value."""
from config import ConfigError, load_config


def run():
    try:
        config = load_config()
        board = __import__("boards." + str(config["board"]), None, None, ("radio",))
        if hasattr(board, "lorawan_modem"):
            from drivers.rak3172 import Rak3172

            modem = Rak3172(board.lorawan_modem(config.get("modem") or {}))
            radio = "RAK3172 answered (%s)" % modem.at("VER", read=True)
        else:
            board.radio().sleep()
            radio = "SX1276 answered"
        found = board.i2c().scan()
    except (ConfigError, ImportError, OSError) as exc:
        print("selftest FAILED: %s" % exc)
        return False
    print("selftest ok: %s, I2C devices %s" % (radio, " ".join("0x%02x" % a for a in found)))
    return True


run()
