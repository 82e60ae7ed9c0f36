"""The graph's boundary: sources (boards, LSL, files, cameras, generators) and sinks."""
