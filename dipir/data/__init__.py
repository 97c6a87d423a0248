"""Readers and writers for the datasets the bench runs on (Waymo Open Dataset v1/v2, Poly Haven
HDRIs) and synthetic generators that write the same real formats for tests and demos."""
