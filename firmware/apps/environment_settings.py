"""The environment app's settings as JSON text, [[name, default, low, high], ...] (settings.py): the ranges of the
schema's config message, low null for a bool. Loaded at boot (settings.start) and for a config downlink
(apps.runtime.apply_config), unloaded after: the text is not resident while the app runs."""

SETTINGS = ('[["interval_s", 300, 10, 86400], ["confirmed", false, null, null], ["battery_low_v", 3.4, 0, 5], '
            '["co2_limit_ppm", 1000, 400, 5000], ["co2_hysteresis_ppm", 200, 0, 1000]]')
