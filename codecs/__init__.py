"""DOS Edge codecs: every byte on the wire, defined once (LoRaWAN frames and crypto, Semtech GWMP, payload schemas).

Import the submodules: `dos_codecs.lorawan`, `.crypto`, `.gwmp`, `.schema`, `.firmware_table`, `.errors`.
"""
