"""Configuration, database access, errors, ids and clock shared by every domain."""
