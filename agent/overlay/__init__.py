"""agent/overlay"""
