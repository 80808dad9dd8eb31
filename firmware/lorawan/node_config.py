"""Building the Node a config.json describes, with the MAC's activation (ABP personalisation, OTAA credentials):
lorawan/node.py's node_from_config loads this module for it and forgets it after, as the node starts once per boot."""
import os

from config import ConfigError, hex_bytes, lorawan_options
from lorawan.mac import Mac
from lorawan.node import Node
from lorawan.region import EU868


def node_from_config(config, make_radio, store):
    """The Node a config.json describes: ABP resumes its frame counters from the store, OTAA gets its credentials and
    the next DevNonce (it joins in its first send). The config is checked (ConfigError) before make_radio() brings the
    radio up. Keys: activation, data_rate (0..5, default 5), adr (default true); ABP dev_addr, nwk_s_key, app_s_key;
    OTAA dev_eui, join_eui, app_key."""
    activation, data_rate, adr = lorawan_options(config)
    if activation == "abp":
        dev_addr = int.from_bytes(hex_bytes(config, "dev_addr", 4), "big")
        nwk_s_key, app_s_key = hex_bytes(config, "nwk_s_key", 16), hex_bytes(config, "app_s_key", 16)
        seed = dev_addr
    else:
        dev_eui, join_eui = hex_bytes(config, "dev_eui", 8), hex_bytes(config, "join_eui", 8)
        app_key = hex_bytes(config, "app_key", 16)
        dev_nonce = store.get("dev_nonce", 0)
        if type(dev_nonce) is not int or dev_nonce < 0:
            raise ConfigError("state.json holds a damaged dev_nonce; a DevNonce must never be reused")
        seed = int.from_bytes(dev_eui[4:], "big")
    radio = make_radio()
    mac = Mac(EU868(seed=int.from_bytes(os.urandom(4), "big") ^ seed), data_rate=data_rate, adr=adr)
    if activation == "abp":
        fcnt_up, fcnt_down = store.boot_fcnt_up(), store.get("fcnt_down", 0)
        activate_abp(mac, dev_addr, nwk_s_key, app_s_key, fcnt_up=fcnt_up, fcnt_down=fcnt_down)
    else:
        set_otaa(mac, dev_eui, join_eui, app_key, dev_nonce)
    return Node(radio, mac, store)


def activate_abp(mac, dev_addr, nwk_s_key, app_s_key, fcnt_up=0, fcnt_down=0):
    """Personalise `mac`: dev_addr as an int (as printed, MSB first), 16-byte session keys, counters to resume from."""
    mac._dev_addr = dev_addr.to_bytes(4, "little")
    mac._nwk_s_key = bytes(nwk_s_key)
    mac._app_s_key = bytes(app_s_key)
    mac.fcnt_up, mac.fcnt_down = fcnt_up, fcnt_down


def set_otaa(mac, dev_eui, join_eui, app_key, dev_nonce):
    """OTAA credentials of `mac`: 8-byte EUIs as printed (MSB first), the 16-byte AppKey, the next DevNonce to use."""
    mac._otaa = (bytes(reversed(join_eui)) + bytes(reversed(dev_eui)), bytes(app_key))
    mac.dev_nonce = dev_nonce

