"""The streetlight app's settings as JSON text, [[name, default, low, high], ...] (settings.py): the ranges of the
schema's config message, low null for a bool. Loaded at boot (settings.start) and for a config downlink
(apps.runtime.apply_config), unloaded after: the text is not resident while the app runs."""

SETTINGS = ('[["interval_s", 60, 10, 86400], ["confirmed", false, null, null], ["dusk_lux", 50, 0, 1000], '
            '["dim_level", 100, 0, 100], ["battery_low_v", 3.4, 0, 5], ["presence_level", 100, 0, 100], '
            '["presence_hold_s", 60, 0, 3600], ["night_dim_after_min", 300, 0, 1440], '
            '["night_dim_level", 50, 0, 100], ["night_dim_for_min", 0, 0, 1440]]')
