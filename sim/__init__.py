"""The peergrid simulator: virtual boards, profiles, grid models, scenarios and faults."""
