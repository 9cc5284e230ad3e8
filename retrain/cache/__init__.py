"""The bottleneck cache, retrain.py's files and what this version keeps beside them.

layout names everything under --bottleneck_dir; text_format reads and writes the
entries' text; records say what each entry was computed from; plan lists the entries
a run calls for (shared by retrain, retrain-cache and Beam); fill reads them and
computes the missing ones (read_only_sets reads without computing); sets holds them in
memory; beam fills the cache on Apache Beam.
"""
