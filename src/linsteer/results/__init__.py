"""Stored rows -> statistics -> the dev-selected answer: the statistics, the results table
and the headline."""
