"""messaging stage."""
