"""Scoring an insertion: render what an estimator produced, image metrics, sphere metrics."""
