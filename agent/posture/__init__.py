"""agent/posture"""
