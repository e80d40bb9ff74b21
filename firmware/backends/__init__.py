"""Firmware backends: each turns the one fixed-point IR into a buildable project (hls4ml, rtl)."""
