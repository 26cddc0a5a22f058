"""Data layer: embedded solvers, PDEBench download, conversion to netCDF, splits and statistics."""
