"""tinyzoo: a worked example of a third-party omnizoo source (docs/adding-a-source.md)."""
