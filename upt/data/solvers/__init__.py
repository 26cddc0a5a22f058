"""Numerical solvers that generate the embedded datasets in PDEBench's own HDF5 layouts."""
