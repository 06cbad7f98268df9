"""agent/platform"""
