"""Performance benchmark: the tutorial's reference recipe against the project's training path."""
