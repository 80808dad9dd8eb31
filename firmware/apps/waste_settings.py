"""The waste app's settings as JSON text, [[name, default, low, high], ...] (settings.py): the ranges of the
schema's config message, low null for a bool. Loaded at boot (settings.start) and for a config downlink
(apps.runtime.apply_config), unloaded after: the text is not resident while the app runs."""

SETTINGS = ('[["interval_s", 900, 10, 86400], ["confirmed", false, null, null], ["battery_low_v", 3.4, 0, 5], '
            '["fire_temp_c", 70, 0, 125], ["fire_rise_c_per_min", 8.0, 0, 100]]')
