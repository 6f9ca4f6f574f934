"""The methodology's noise levels of a timing (rule 5): warn above 10% relative spread, suspect above 25%.
Kept apart from the timing engine so that readers of results (the claims) get them without importing torch."""

NOISE_WARN, NOISE_SUSPECT = 0.10, 0.25
