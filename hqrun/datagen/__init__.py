"""Jet-data generator (``hqrun datagen jets``): Pythia 8 events, FastJet jets, hls4ml features.

Needs the optional extra ``hqrun[physics]`` (pythia8mc, fastjet) and a C++ compiler; nothing is
imported here so that ``hqrun`` works without them.
"""
