"""Simulated workshop attendees for load-testing an nbpool service."""
