"""The bridge app's settings as JSON text, [[name, default, low, high], ...] (settings.py): the ranges of the
schema's config message, low null for a bool. Loaded at boot (settings.start) and for a config downlink
(apps.runtime.apply_config), unloaded after: the text is not resident while the app runs."""

SETTINGS = ('[["interval_s", 600, 10, 86400], ["confirmed", false, null, null], ["battery_low_v", 3.4, 0, 5], '
            '["strain_limit_ue", 500, 0, 5000], ["vibration_rms_limit", 0.1, 0, 16], '
            '["vibration_peak_limit", 0.3, 0, 16], ["tilt_limit", 1.0, 0, 90], ["crack_limit", 1.0, 0, 50], '
            '["hysteresis_pct", 10, 0, 90]]')
