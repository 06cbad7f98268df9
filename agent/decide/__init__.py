"""agent/decide"""
