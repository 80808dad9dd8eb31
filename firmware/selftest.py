"""On-device self-test for the installer: `import selftest` prints one line, "selftest ok: ..." or "selftest FAILED: ...".
It checks the radio (SX1276 RegVersion, LoRa mode) and which devices answer on the sensor bus; it reads no sensor value."""
from config import ConfigError, load_config


def run():
    try:
        board = __import__("boards." + str(load_config()["board"]), None, None, ("radio",))
        board.radio().sleep()
        found = board.i2c().scan()
    except (ConfigError, ImportError, OSError) as exc:
        print("selftest FAILED: %s" % exc)
        return False
    print("selftest ok: SX1276 answered, I2C devices %s" % " ".join("0x%02x" % a for a in found))
    return True


run()
