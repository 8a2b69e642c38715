"""omnizoo.cli (internal; the public API is omnizoo.__all__)."""
