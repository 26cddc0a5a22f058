import os

# Two cores are shared by the test workers; one BLAS/torch thread each keeps runs predictable.
os.environ.setdefault("OMP_NUM_THREADS", "1")
